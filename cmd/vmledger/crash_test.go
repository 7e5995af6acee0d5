package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/store"
)

type ack struct {
	domain  uuid.UUID
	version uint64
}

// Acceptance b: SIGKILL the agent at random moments during a storm of
// appends, 20 times. After each kill the log opens and checks out, its
// sequences are gap-free, every acknowledged append is there, and a full
// replay equals what the restarted agent serves.
func TestCrashSafetySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash rounds take ~20 s")
	}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, agent.DBFile)
	acked := map[uint64]ack{}
	var mu sync.Mutex
	const rounds = 20
	for round := 0; round < rounds; round++ {
		a := startAgent(t, dir, "--snapshot-every", "50")
		if round > 0 {
			compareLiveWithReplay(t, a, dbPath, round)
		}
		nc, err := nats.Connect(a.natsURL, nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				storm(nc, round, g, func(seqs []uint64, id uuid.UUID, firstVersion uint64) {
					mu.Lock()
					for i, s := range seqs {
						acked[s] = ack{domain: id, version: firstVersion + uint64(i)}
					}
					mu.Unlock()
				})
			}()
		}
		time.Sleep(time.Duration(20+rand.IntN(280)) * time.Millisecond)
		a.kill()
		wg.Wait()
		nc.Close()

		mu.Lock()
		verifyAfterCrash(t, dbPath, acked, round)
		mu.Unlock()
	}
	if len(acked) < rounds*10 {
		t.Fatalf("only %d appends acknowledged over %d rounds: the storm did not storm", len(acked), rounds)
	}
	a := startAgent(t, dir)
	compareLiveWithReplay(t, a, dbPath, rounds)
}

// storm defines domains and redefines them with new memory sizes (a
// config-updated each), until the connection dies.
func storm(nc *nats.Conn, round, g int, onAck func([]uint64, uuid.UUID, uint64)) {
	for n := 0; ; n++ {
		id := uuid.New()
		cfg := domains.Config{Name: fmt.Sprintf("r%d-g%d-n%d", round, g, n), UUID: id, MemoryMiB: 64, VCPUs: 1,
			Clock: domains.Clock{Offset: "utc"}}
		for v := uint64(1); v <= 3; v++ {
			cfg.MemoryMiB = 64 * v
			body, _ := json.Marshal(api.DefineRequest{CommandID: uuid.NewString(), Config: cfg})
			msg, err := nc.Request("vmledger.cmd.testhost.define", body, 2*time.Second)
			if err != nil {
				return
			}
			var r struct {
				Result *domains.Result `json:"result"`
			}
			if json.Unmarshal(msg.Data, &r) != nil || r.Result == nil {
				return
			}
			onAck(r.Result.Seqs, id, v)
		}
	}
}

func verifyAfterCrash(t *testing.T, dbPath string, acked map[uint64]ack, round int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatalf("round %d: open after SIGKILL: %v", round, err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("round %d: check after SIGKILL: %v", round, err)
	}
	want := uint64(1)
	full := domains.NewProjection()
	err = s.Replay(ctx, 0, func(e domains.Event) error {
		if e.Seq != want {
			return fmt.Errorf("sequence gap: got %d, want %d", e.Seq, want)
		}
		want++
		if a, ok := acked[e.Seq]; ok && (a.domain != e.Domain || a.version != e.Version) {
			return fmt.Errorf("seq %d holds %s v%d, acknowledged as %s v%d", e.Seq, e.Domain, e.Version, a.domain, a.version)
		}
		return full.Apply(e)
	})
	if err != nil {
		t.Fatalf("round %d: replay: %v", round, err)
	}
	for seq := range acked {
		if seq >= want {
			t.Fatalf("round %d: acknowledged seq %d missing (log ends at %d)", round, seq, want-1)
		}
	}
	loaded, err := store.LoadProjection(ctx, s)
	if err != nil {
		t.Fatalf("round %d: load projection: %v", round, err)
	}
	if ok, diff := full.Equal(loaded); !ok {
		t.Fatalf("round %d: snapshot+tail differs from full replay: %s", round, diff)
	}
}

// compareLiveWithReplay checks that the agent serves exactly what a full
// replay of its log gives. The agent holds the file, so the replay reads a
// copy made through the history API instead: same events, same fold.
func compareLiveWithReplay(t *testing.T, a *agentProc, dbPath string, round int) {
	t.Helper()
	var lr api.ListReply
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &lr); err != nil {
		t.Fatal(err)
	}
	out := a.mustCLI("events", "--json")
	full := domains.NewProjection()
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e domains.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("round %d: events --json: %v", round, err)
		}
		if err := full.Apply(e); err != nil {
			t.Fatalf("round %d: replay: %v", round, err)
		}
	}
	if full.LastSeq() != lr.LastSeq || full.Len() != len(lr.Domains) {
		t.Fatalf("round %d: live has %d domains at seq %d, replay %d at %d", round, len(lr.Domains), lr.LastSeq, full.Len(), full.LastSeq())
	}
	for _, d := range lr.Domains {
		r, ok := full.Lookup(d.Name)
		if !ok || r.Version != d.Version || r.State != d.State || r.Config.UUID.String() != d.UUID {
			t.Fatalf("round %d: live %+v, replay %+v", round, d, r)
		}
	}
}
