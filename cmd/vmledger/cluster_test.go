package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vmledger/vmledger/bus/bustest"
)

// startClusterAgent starts an agent named host on an external NATS URL.
func startClusterAgent(t *testing.T, host, url string) *agentProc {
	t.Helper()
	a := startAgent(t, t.TempDir(), "--host", host, "--nats-url", url)
	a.host = host
	return a
}

// TestAllHostsOnCluster: two agents with their own state directories and
// host names, each on its own node of a three-node cluster of Debian's
// nats-server; a CLI on the third node finds both (hosts), lists both
// hosts' domains (list --all-hosts) and reads both logs (events
// --all-hosts), each line saying which host it came from.
func TestAllHostsOnCluster(t *testing.T) {
	cl := bustest.StartCluster(t, 3)
	alpha := startClusterAgent(t, "alpha", cl.Nodes[0].URL())
	beta := startClusterAgent(t, "beta", cl.Nodes[1].URL())
	dir := t.TempDir()
	alpha.mustCLI("define", writeFile(t, dir, "a.json", `{"name":"web-a","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
	beta.mustCLI("define", writeFile(t, dir, "b.json", `{"name":"db-b","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))

	third := []string{"--nats-url", cl.Nodes[2].URL(), "--timeout", "20s"}
	// The routes come up asynchronously: wait until both agents answer.
	var out, errs string
	var code int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, errs, code = runCLI(t, append(third, "hosts")...)
		if code == 0 && strings.Contains(out, "alpha") && strings.Contains(out, "beta") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") {
		t.Fatalf("hosts: exit %d\n%s\n%s", code, out, errs)
	}

	out, errs, code = runCLI(t, append(third, "list", "--all-hosts")...)
	if code != 0 {
		t.Fatalf("list --all-hosts: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "alpha") || !strings.Contains(lines[1], "web-a") ||
		!strings.HasPrefix(lines[2], "beta") || !strings.Contains(lines[2], "db-b") {
		t.Fatalf("list --all-hosts:\n%s", out)
	}

	out, errs, code = runCLI(t, append(third, "events", "--all-hosts", "--json")...)
	if code != 0 {
		t.Fatalf("events --all-hosts: exit %d: %s", code, errs)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Host string `json:"host"`
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("events --all-hosts --json line %q: %v", l, err)
		}
		seen[e.Host+"/"+e.Type] = true
	}
	if !seen["alpha/defined"] || !seen["beta/defined"] {
		t.Fatalf("events --all-hosts saw %v:\n%s", seen, out)
	}
	out, _, code = runCLI(t, append(third, "events", "--all-hosts", "--domain", "db-b")...)
	if code != 0 || !strings.HasPrefix(out, "beta\t") || strings.Contains(out, "alpha") {
		t.Fatalf("events --all-hosts --domain db-b: exit %d\n%s", code, out)
	}
	if _, errs, code = runCLI(t, append(third, "events", "--all-hosts", "--domain", "nowhere")...); code == 0 || !strings.Contains(errs, "not found on any") {
		t.Fatalf("unknown domain on all hosts: exit %d %s", code, errs)
	}

	// An agent that stops answering is reported, the other still listed.
	beta.stop()
	out, errs, code = runCLI(t, append(third, "list", "--all-hosts")...)
	if code != 0 || !strings.Contains(out, "web-a") || strings.Contains(out, "db-b") {
		t.Fatalf("list --all-hosts after beta stopped: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestEmbeddedRoutes: two agents' embedded servers joined by routes
// (--nats-cluster-listen, --nats-routes), sharing one token: a CLI on
// the first agent's server finds both hosts and lists both hosts'
// domains; a third agent with another token cannot join the routes.
func TestEmbeddedRoutes(t *testing.T) {
	token := strings.Repeat("ab", 32)
	state := func() string {
		dir := t.TempDir()
		writeFile(t, dir, "nats.token", token+"\n")
		return dir
	}
	p1 := freeLoopbackPort(t)
	alpha := startAgent(t, state(), "--host", "alpha", "--nats-cluster-listen", "127.0.0.1:"+p1)
	alpha.host = "alpha"
	beta := startAgent(t, state(), "--host", "beta", "--nats-cluster-listen", "127.0.0.1:0", "--nats-routes", "nats-route://127.0.0.1:"+p1)
	beta.host = "beta"
	dir := t.TempDir()
	beta.mustCLI("define", writeFile(t, dir, "b.json", `{"name":"db-b","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))

	stranger := t.TempDir()
	writeFile(t, stranger, "nats.token", strings.Repeat("cd", 32)+"\n")
	gamma := startAgent(t, stranger, "--host", "gamma", "--nats-cluster-listen", "127.0.0.1:0", "--nats-routes", "nats-route://127.0.0.1:"+p1)
	gamma.host = "gamma"

	var out string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, _, _ = alpha.cli("hosts")
		if strings.Contains(out, "beta") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") {
		t.Fatalf("hosts through alpha's server:\n%s", out)
	}
	// gamma's route is refused (gamma logs the violation) and gamma stays apart.
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(gamma.stderr.String(), "Authorization Violation") {
		if time.Now().After(deadline) {
			t.Fatal("alpha never refused gamma's route")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, _, _ = alpha.cli("hosts"); strings.Contains(out, "gamma") {
		t.Fatalf("an agent with another token joined the routes:\n%s", out)
	}
	out = alpha.mustCLI("list", "--all-hosts")
	if !strings.Contains(out, "beta") || !strings.Contains(out, "db-b") {
		t.Fatalf("list --all-hosts through alpha's server:\n%s", out)
	}
	// Refused at start: routes without a route listener, or for an
	// external server.
	for _, args := range [][]string{
		{"--nats-routes", "nats-route://127.0.0.1:" + p1},
		{"--nats-url", "nats://127.0.0.1:1", "--nats-cluster-listen", "127.0.0.1:0"},
		{"--nats-cluster-listen", "127.0.0.1:0", "--nats-routes", "nats-route://u:pw@127.0.0.1:" + p1},
	} {
		_, errs, code := runCLI(t, append([]string{"agent", "--state-dir", t.TempDir(), "--accel", "none", "--nats-listen", "127.0.0.1:0"}, args...)...)
		if code == 0 || strings.Contains(errs, "pw@") {
			t.Errorf("agent %v: exit %d\n%s", args, code, errs)
		}
	}
}

// TestFleetJetStream: a JetStream stream on Debian's nats-server captures
// the event subjects of two agents (own hosts and state directories) on
// it; a durable consumer sees every event of both hosts once and resumes
// where it acknowledged after its client went away; a re-published event
// (what a relay does after an outage) is dropped as a duplicate by its
// Nats-Msg-Id (<host>-<seq>).
func TestFleetJetStream(t *testing.T) {
	srv := bustest.StartExternalJetStream(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLEET", Subjects: []string{"vmledger.evt.>"}, Duplicates: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	alpha := startClusterAgent(t, "alpha", srv.URL())
	beta := startClusterAgent(t, "beta", srv.URL())
	dir := t.TempDir()
	alpha.mustCLI("define", writeFile(t, dir, "a.json", `{"name":"web-a","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
	alpha.mustCLI("undefine", "web-a")
	beta.mustCLI("define", writeFile(t, dir, "b.json", `{"name":"db-b","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}`))
	const want = 3

	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "fleet", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // Nats-Msg-Id → host/type
	var first jetstream.Msg
	take := func(c jetstream.Consumer, n int) {
		t.Helper()
		for got := 0; got < n; {
			batch, err := c.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				id := m.Headers().Get("Nats-Msg-Id")
				var e struct {
					Host string `json:"host"`
					Type string `json:"type"`
				}
				if err := json.Unmarshal(m.Data(), &e); err != nil || !strings.HasPrefix(id, e.Host+"-") {
					t.Fatalf("message %q: %v %+v", id, err, e)
				}
				if _, dup := ids[id]; dup {
					t.Fatalf("message %s twice", id)
				}
				ids[id] = e.Host + "/" + e.Type
				if first == nil {
					first = m
				}
				if err := m.Ack(); err != nil {
					t.Fatal(err)
				}
				got++
			}
			if ctx.Err() != nil {
				t.Fatalf("only %d of %d events: %v", len(ids), want, ids)
			}
		}
	}
	take(cons, 2)
	// The consumer's client goes away; the durable remembers the acks.
	again, err := js.Consumer(ctx, "FLEET", "fleet")
	if err != nil {
		t.Fatal(err)
	}
	take(again, want-2)
	seen := map[string]bool{}
	for _, v := range ids {
		seen[v] = true
	}
	if !seen["alpha/defined"] || !seen["alpha/undefined"] || !seen["beta/defined"] {
		t.Fatalf("fleet consumer saw %v", ids)
	}
	// A relay's re-publish after an outage: same subject, same ID.
	dup := nats.NewMsg(first.Subject())
	dup.Header = nats.Header(first.Headers())
	dup.Data = first.Data()
	ack, err := js.PublishMsg(ctx, dup)
	if err != nil || !ack.Duplicate {
		t.Fatalf("re-published event: %+v %v; want a duplicate", ack, err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != want {
		t.Fatalf("stream holds %+v %v; want %d messages", info, err, want)
	}
}
