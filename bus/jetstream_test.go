package bus_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
	"github.com/vmledger/vmledger/domains"
)

// jsServer is a NATS server with JetStream for the relay's JetStream mode.
type jsServer struct {
	name     string
	replicas int
	start    func(t *testing.T) string // client URL(s)
}

func jsServers() []jsServer {
	return []jsServer{
		{"embedded", 1, func(t *testing.T) string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1, JetStream: &bus.EmbeddedJetStream{StoreDir: t.TempDir()}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
			return e.ClientURL()
		}},
		{"debian", 1, func(t *testing.T) string { return bustest.StartExternalJetStream(t).URL() }},
		{"debian-cluster-R3", 3, func(t *testing.T) string { return bustest.StartClusterJetStream(t, 3).URLs() }},
	}
}

// newJS is a JetStream client on nc and a context for the test's calls.
func newJS(t *testing.T, nc *nats.Conn) (jetstream.JetStream, context.Context) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return js, ctx
}

// relayRun runs a relay until stop is called; stop returns Run's error.
func relayRun(nc *nats.Conn, st bus.RelayStore, o bus.RelayOptions) (*bus.Relay, func() error) {
	if o.Host == "" {
		o.Host = host
	}
	r := bus.NewRelay(nc, st, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() error { cancel(); return <-done }
}

// fetchAll reads everything a durable pull consumer has, acking each, and
// returns the Vmledger-Seq of each message in delivery order.
func fetchAll(t *testing.T, c jetstream.Consumer, want int) []uint64 {
	t.Helper()
	var seqs []uint64
	deadline := time.Now().Add(60 * time.Second)
	for len(seqs) < want && time.Now().Before(deadline) {
		batch, err := c.Fetch(want-len(seqs), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			seq, err := strconv.ParseUint(m.Headers().Get(bus.HeaderSeq), 10, 64)
			if err != nil {
				t.Fatalf("message %s without %s: %v", m.Subject(), bus.HeaderSeq, err)
			}
			seqs = append(seqs, seq)
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Nothing beyond want: a duplicate stored by the stream would be here.
	extra, err := c.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for m := range extra.Messages() {
		seqs = append(seqs, 0)
		_ = m.Ack()
	}
	return seqs
}

func checkOnceInOrder(t *testing.T, seqs []uint64, total int) {
	t.Helper()
	if len(seqs) != total {
		t.Fatalf("consumer got %d messages, want %d: %v", len(seqs), total, seqs)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("message %d is seq %d, want %d (%v)", i, s, i+1, seqs)
		}
	}
}

// TestRelayJetStreamDedup: a relay in JetStream mode creates the stream,
// and a second relay that resumes from a position never saved (the first
// one's position writes failed: as after a SIGKILL) republishes every
// event, which the stream drops by Nats-Msg-Id: it holds each event once,
// the relay counts the duplicates, and a durable consumer sees every
// event exactly once, in order. Without Nats-Msg-Id the stream would hold
// the first 40 events twice. On the embedded server, Debian's nats-server
// and a three-node cluster of it with the stream at three replicas.
func TestRelayJetStreamDedup(t *testing.T) {
	for _, srv := range jsServers() {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.start(t)
			nc := connect(t, url)
			st := bustest.NewStore()
			st.FailPositionWrites(errors.New("position not saved"))
			log := fakeLog{st}
			o := bus.RelayOptions{Stream: "FLEET", StreamReplicas: srv.replicas}
			r1, stop1 := relayRun(nc, st, o)
			if err := appendConcurrently(context.Background(), log, 4, 40); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := r1.WaitPublished(ctx, 40); err != nil {
				t.Fatal(err)
			}
			if err := stop1(); err != nil {
				t.Fatal(err)
			}
			r2, stop2 := relayRun(nc, st, o)
			defer func() {
				if err := stop2(); err != nil {
					t.Error(err)
				}
			}()
			for i := 40; i < 50; i++ {
				if _, err := log.appendEvent(ctx, bustest.Event(domainsN(1)[0], host, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := r2.WaitPublished(ctx, 50); err != nil {
				t.Fatal(err)
			}
			if d := r2.Duplicates(); d != 40 {
				t.Errorf("second relay: %d duplicates reported, want 40 (all it republished)", d)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			s, err := js.Stream(ctx, "FLEET")
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 50 || info.Config.Replicas != srv.replicas {
				t.Fatalf("stream holds %d messages at %d replicas, want 50 at %d", info.State.Msgs, info.Config.Replicas, srv.replicas)
			}
			c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "fleet", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			checkOnceInOrder(t, fetchAll(t, c, 50), 50)
		})
	}
}

// TestRelayJetStreamSkipsAfterWindow: once the stream's duplicate window
// has passed since the host's last stored event, a relay resuming from an
// older position cannot rely on de-duplication; it resumes after what the
// stream holds instead, so the stream still has each event once.
func TestRelayJetStreamSkipsAfterWindow(t *testing.T) {
	url := jsServers()[0].start(t)
	nc := connect(t, url)
	js, ctx := newJS(t, nc)
	const window = 400 * time.Millisecond
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLEET", Subjects: bus.EventStreamSubjects, Duplicates: window})
	if err != nil {
		t.Fatal(err)
	}
	st := bustest.NewStore()
	st.FailPositionWrites(errors.New("position not saved"))
	log := fakeLog{st}
	r1, stop1 := relayRun(nc, st, bus.RelayOptions{Stream: "FLEET"})
	if err := appendConcurrently(ctx, log, 2, 20); err != nil {
		t.Fatal(err)
	}
	if err := r1.WaitPublished(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * window)
	r2, stop2 := relayRun(nc, st, bus.RelayOptions{Stream: "FLEET"})
	defer func() { _ = stop2() }()
	if _, err := log.appendEvent(ctx, bustest.Event(domainsN(1)[0], host, 99)); err != nil {
		t.Fatal(err)
	}
	if err := r2.WaitPublished(ctx, 21); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 21 || r2.Duplicates() != 0 {
		t.Fatalf("stream holds %d messages (want 21), relay saw %d duplicates (want 0)", info.State.Msgs, r2.Duplicates())
	}
}

// TestRelayJetStreamRefuses: a stream that does not capture this host's
// events, a stream holding this host's events beyond the local log's end
// (another log used the host name), and a bad stream name stop the relay
// with an invalid error that says what is wrong; nothing is published.
func TestRelayJetStreamRefuses(t *testing.T) {
	url := jsServers()[0].start(t)
	nc := connect(t, url)
	js, ctx := newJS(t, nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"vmledger.evt.elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AHEAD", Subjects: []string{bus.EventFilter(host, uuid.Nil, "")}}); err != nil {
		t.Fatal(err)
	}
	// Another log's event 7 of this host.
	m := nats.NewMsg(bus.EventSubject(host, domainsN(1)[0], domains.TypeRTCChanged))
	m.Header.Set(bus.HeaderSeq, "7")
	m.Data = []byte("{}")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ stream, want string }{
		{"OTHER", "not this host's events"},
		{"AHEAD", "another log published under this host name"},
		{"bad.name", "must be 1-64 letters"},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			st := bustest.NewStore()
			if _, err := st.Append(ctx, bustest.Event(domainsN(1)[0], host, 1)); err != nil {
				t.Fatal(err)
			}
			r := bus.NewRelay(nc, st, bus.RelayOptions{Host: host, Stream: tc.stream})
			rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err := r.Run(rctx)
			if err == nil || domains.CodeOf(err) != domains.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v; want an invalid error saying %q", err, tc.want)
			}
			if r.Published() != 0 {
				t.Fatalf("published up to %d after refusing", r.Published())
			}
		})
	}
}

// TestEmbeddedJetStreamIdentities: on the embedded server with JetStream
// and identities, the agent's relay stores events in the stream; a
// read-only identity consumes them with a durable pull consumer but may
// neither delete the stream nor publish into it (the server refuses).
// JetStream is refused with a cluster.
func TestEmbeddedJetStreamIdentities(t *testing.T) {
	ids, files := identities(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1, Identities: ids, ReadVerbs: testReadVerbs,
		JetStream: &bus.EmbeddedJetStream{StoreDir: t.TempDir(), Stream: "FLEET"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	dial := dialer(t, e.ClientURL(), files)
	st := bustest.NewStore()
	r, stop := relayRun(dial(bus.RoleAgent), st, bus.RelayOptions{Stream: "FLEET"})
	defer func() { _ = stop() }()
	if err := appendConcurrently(ctx, fakeLog{st}, 2, 6); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitPublished(ctx, 6); err != nil {
		t.Fatal(err)
	}
	ro := dial(bus.RoleReadOnly)
	js, err := jetstream.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, "FLEET", jetstream.ConsumerConfig{Durable: "ro", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("read-only durable consumer: %v", err)
	}
	checkOnceInOrder(t, fetchAll(t, c, 6), 6)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if err := js.DeleteStream(short, "FLEET"); err == nil {
		t.Fatal("read-only identity deleted the stream")
	}
	if _, err := js.Publish(short, bus.EventSubject(host, domainsN(1)[0], domains.TypeRTCChanged), []byte("{}")); err == nil {
		t.Fatal("read-only identity published into the stream")
	}
	_, err = bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: -1, Cluster: &bus.ClusterOptions{Port: -1},
		JetStream: &bus.EmbeddedJetStream{StoreDir: t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "single host") {
		t.Fatalf("embedded JetStream with a cluster: %v; want refused", err)
	}
}
