package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// crashChildEnv selects the child role of TestCrashSafety: its value is the
// path of the log to append to until killed.
const crashChildEnv = "VMLEDGER_STORE_CRASH_CHILD"

// ack is one acknowledged append, as the child printed it.
type ack struct {
	domain  uuid.UUID
	version uint64 // of the last event
	seq     uint64 // of the first event
	n       int
	cmd     string
}

// TestCrashSafety re-executes the test binary as a child that runs 32
// concurrent appenders and prints every acknowledged append, SIGKILLs it at
// a random moment, and checks the file: it opens, Check passes, every
// acknowledged append is there with its sequence, and replay (full, and
// from a snapshot taken in an earlier round) gives the same projection.
func TestCrashSafety(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path, Options{Timeout: 5 * time.Second}, false)
		return
	}
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VMLEDGER_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (VMLEDGER_CRASH_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "crash.db")
	var acks []ack
	for round := range rounds {
		delay := time.Duration(20+rng.IntN(281)) * time.Millisecond
		got, stderr := runChild(t, path, delay)
		acks = append(acks, got...)
		t.Logf("round %d: killed after %v, %d acks (%d in all)", round, delay, len(got), len(acks))
		if stderr != "" {
			t.Logf("child stderr: %s", stderr)
		}
		verifyAfterCrash(t, path, acks, rng)
		if t.Failed() {
			return
		}
	}
}

// runChild starts the child, kills it with SIGKILL after delay and returns
// the acknowledgements it printed.
func runChild(t *testing.T, path string, delay time.Duration) ([]ack, string) {
	t.Helper()
	return runChildUntil(t, "TestCrashSafety", crashChildEnv+"="+path, func(*childLog) { time.Sleep(delay) })
}

// childLog is what a running child said so far: its stderr, and how many
// acknowledgements it printed.
type childLog struct {
	mu     sync.Mutex
	stderr bytes.Buffer
	acks   atomic.Int64
}

func (c *childLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.Write(p)
}

func (c *childLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// waitFor waits until the child's stderr holds n copies of s (false after
// a minute: a slow machine, not a failure in itself).
func (c *childLog) waitFor(s string, n int) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if strings.Count(c.String(), s) >= n {
			return true
		}
	}
	return false
}

// runChildUntil runs test as a child with env set, kills it with SIGKILL
// when until returns, and returns the acknowledgements it printed and its
// stderr.
func runChildUntil(t *testing.T, test, env string, until func(*childLog)) ([]ack, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	c := &childLog{}
	cmd.Stderr = c
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acks []ack
	parsed := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a, err := parseAck(sc.Text())
			if err != nil {
				parsed <- err
				return
			}
			acks = append(acks, a)
			c.acks.Add(1)
		}
		parsed <- sc.Err()
	}()
	until(c)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := <-parsed; err != nil {
		t.Fatalf("child output: %v", err)
	}
	err = cmd.Wait()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("child ended by itself (%v) before the kill: %s", err, c.String())
	}
	return acks, c.String()
}

func parseAck(line string) (ack, error) {
	var a ack
	var id string
	if _, err := fmt.Sscanf(line, "ack %s %d %d %d %s", &id, &a.version, &a.seq, &a.n, &a.cmd); err != nil {
		return a, fmt.Errorf("line %q: %w", line, err)
	}
	var err error
	a.domain, err = uuid.Parse(id)
	return a, err
}

func verifyAfterCrash(t *testing.T, path string, acks []ack, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after kill: %v", err)
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check after kill: %v", err)
	}
	var log []domains.Event
	full := domains.NewProjection()
	if err := s.Replay(ctx, 0, func(e domains.Event) error {
		log = append(log, e)
		return full.Apply(e)
	}); err != nil {
		t.Fatalf("replay after kill: %v", err)
	}
	if uint64(len(log)) != s.LastSeq() {
		t.Fatalf("replayed %d events, LastSeq %d", len(log), s.LastSeq())
	}
	for _, a := range acks {
		if a.seq == 0 || a.seq+uint64(a.n)-1 > uint64(len(log)) {
			t.Fatalf("acknowledged %+v is beyond the log (%d)", a, len(log))
		}
		for i := range a.n {
			e := log[a.seq-1+uint64(i)]
			if e.Domain != a.domain || e.Version != a.version-uint64(a.n-1-i) || e.CommandID != a.cmd {
				t.Fatalf("acknowledged %+v: event %d is %s v%d cmd %s", a, e.Seq, e.Domain, e.Version, e.CommandID)
			}
		}
		if res, found, err := s.Command(ctx, a.cmd); err != nil || !found || string(res) != a.cmd {
			t.Fatalf("command %s of an acknowledged append: %q %v %v", a.cmd, res, found, err)
		}
	}
	// The per-domain view (index bucket plus the lag rebuilt at Open) agrees
	// with the log.
	versions := map[uuid.UUID]uint64{}
	for _, e := range log {
		versions[e.Domain] = e.Version
	}
	for id, want := range versions {
		if v, err := s.DomainVersion(ctx, id); err != nil || v != want {
			t.Fatalf("DomainVersion(%s) = %d, %v; log says %d", id, v, err, want)
		}
		if evs, err := s.ReadDomain(ctx, id, want-1, 1); err != nil || len(evs) != 1 || evs[0].Version != want {
			t.Fatalf("ReadDomain(%s) after %d: %v %v", id, want-1, evs, err)
		}
	}
	// The snapshot saved by the previous round plus the tail must give the
	// same projection as the full replay.
	loaded, err := LoadProjection(ctx, s)
	if err != nil {
		t.Fatalf("LoadProjection: %v", err)
	}
	if ok, diff := full.Equal(loaded); !ok {
		t.Fatalf("snapshot+tail differs from full replay: %s", diff)
	}
	// Save a snapshot at a random point for the next round.
	if len(log) > 0 {
		at := 1 + rng.Uint64N(uint64(len(log)))
		p := domains.NewProjection()
		for _, e := range log[:at] {
			if err := p.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		data, err := p.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveSnapshot(ctx, at, data); err != nil {
			t.Fatal(err)
		}
	}
}

// crashChild appends from 32 goroutines until killed. Each goroutine owns
// two domains, so its expected versions are always right; every fifth
// append uses AnyVersion. An acknowledgement is printed with one write
// (atomic on a pipe) as soon as Append returns. With retry, a failed append
// (a broken store, or a conflict after an append that landed anyway) is
// not fatal: the goroutine re-reads its domain's version and goes on.
func crashChild(path string, opts Options, retry bool) {
	s, err := Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := []*gen{newGen(w), newGen(w + 32)}
			for _, g := range own {
				v, err := s.DomainVersion(ctx, g.id)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(4)
				}
				g.n = int(v)
			}
			for i := 0; ; i++ {
				g := own[i%2]
				expected := uint64(g.n)
				if i%5 == 4 {
					expected = AnyVersion
				}
				cmd := uuid.NewString()
				evs := g.batch(1+i%3, cmd)
				seqs, err := s.Append(ctx, AppendRequest{Domain: g.id, ExpectedVersion: expected, Events: evs, CommandID: cmd, Result: []byte(cmd)})
				if err != nil && retry && (errors.Is(err, ErrBroken) || errors.Is(err, ErrVersionConflict)) {
					time.Sleep(time.Millisecond)
					if v, err := s.DomainVersion(ctx, g.id); err == nil {
						g.n = int(v)
					}
					continue
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(5)
				}
				last := evs[len(evs)-1]
				fmt.Fprintf(os.Stdout, "ack %s %d %d %d %s\n", g.id, last.Version, seqs[0], len(evs), strings.TrimSpace(cmd))
			}
		}()
	}
	wg.Wait()
}
