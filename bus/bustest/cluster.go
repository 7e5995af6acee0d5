package bustest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is n Debian nats-server processes joined by routes on loopback,
// for tests of several agents on one NATS cluster: each node can be
// killed and restarted on its own ports.
type Cluster struct {
	Nodes []*External
}

// StartCluster starts n nodes named node0..node<n-1> in cluster
// "vmledger", each routing to all the others, and waits until each
// accepts clients. Route establishment is asynchronous: WaitRoutes (or a
// test's own retry) covers the moment after start.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return startCluster(tb, n, false)
}

// StartClusterJetStream is StartCluster with JetStream on every node (each
// its own store directory), and returns only once the cluster has a
// JetStream meta leader: until then a clustered server drops JetStream API
// requests without an answer (docs/bus.md, JetStream on a cluster).
func StartClusterJetStream(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := startCluster(tb, n, true)
	c.WaitJetStream(tb)
	return c
}

func startCluster(tb testing.TB, n int, jetstream bool) *Cluster {
	tb.Helper()
	bin := NATSServerBinary(tb)
	client := make([]int, n)
	route := make([]int, n)
	for i := range client {
		client[i], route[i] = freePort(tb), freePort(tb)
	}
	c := &Cluster{}
	for i := 0; i < n; i++ {
		var routes []string
		for j := 0; j < n; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("\"nats-route://127.0.0.1:%d\"", route[j]))
			}
		}
		dir := tb.TempDir()
		conf := filepath.Join(dir, "nats.conf")
		body := fmt.Sprintf("server_name: node%d\nlisten: \"127.0.0.1:%d\"\nmax_payload: 1048576\n"+
			"cluster {\n  name: vmledger\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			i, client[i], route[i], strings.Join(routes, ", "))
		if jetstream {
			// server_name (above) must be unique per node: it names the
			// node's peer in the meta group. Each node its own store.
			body += fmt.Sprintf("jetstream {\n  store_dir: %q\n}\n", filepath.Join(dir, "js"))
		}
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
		x := &External{tb: tb, bin: bin, conf: conf, Port: client[i]}
		x.Start()
		tb.Cleanup(x.Stop)
		c.Nodes = append(c.Nodes, x)
	}
	return c
}

// URLs is every node's client URL, comma-separated, as --nats-url takes it.
func (c *Cluster) URLs() string {
	var u []string
	for _, x := range c.Nodes {
		u = append(u, x.URL())
	}
	return strings.Join(u, ",")
}

// WaitJetStream waits until every node answers a JetStream request
// ($JS.API.INFO) and a stream of n replicas can be placed (a probe stream,
// deleted at once): the meta leader is elected and knows every peer. Each
// request is short and retried, since one sent before there is a leader
// is never answered.
func (c *Cluster) WaitJetStream(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for _, x := range c.Nodes {
		nc, err := nats.Connect(x.URL())
		if err != nil {
			tb.Fatalf("connect %s: %v", x.URL(), err)
		}
		js, _ := jetstream.New(nc)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, last = js.AccountInfo(ctx)
			if last == nil {
				name := fmt.Sprintf("probe_%d", x.Port)
				if _, last = js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"bustest.probe." + name}, Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage}); last == nil {
					last = js.DeleteStream(ctx, name)
				}
			}
			cancel()
			if last == nil {
				break
			}
			if time.Now().After(deadline) {
				nc.Close()
				tb.Fatalf("JetStream on %s not ready after 60s: %v", x.URL(), last)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
}
