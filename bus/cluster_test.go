package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/bus/bustest"
)

// TestClusterDiscovery: two agents' command services, each on its own
// node of a three-node cluster of Debian's nats-server, are found by a
// client on the third node and answer their own host's verbs through the
// routes; when an agent's node is killed, its connection fails over to a
// node it learnt from the cluster and the agent is found and answers again.
func TestClusterDiscovery(t *testing.T) {
	cl := bustest.StartCluster(t, 3)
	serve := func(host string, node int) *nats.Conn {
		nc := connect(t, cl.Nodes[node].URL())
		h := bus.HandlerFunc(func(_ context.Context, verb string, _ []byte) (any, error) {
			return map[string]string{"host": host, "verb": verb}, nil
		})
		s, err := bus.StartCommands(context.Background(), nc, h, bus.CommandOptions{Host: host, Verbs: []string{"whoami"}, Version: "1.2.3"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Stop(ctx)
		})
		return nc
	}
	alpha := serve("alpha", 0)
	serve("beta", 1)
	cli := connect(t, cl.Nodes[2].URL())

	discover := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		peers, err := bus.DiscoverHosts(ctx, cli, 2*time.Second)
		if err != nil {
			return nil
		}
		var hosts []string
		for _, p := range peers {
			if p.Version != "1.2.3" || p.ID == "" {
				t.Errorf("peer %+v: want version 1.2.3 and an instance ID", p)
			}
			hosts = append(hosts, p.Host)
		}
		return hosts
	}
	// Routes come up asynchronously after the nodes listen.
	waitHosts := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var got []string
		for time.Now().Before(deadline) {
			if got = discover(); strings.Join(got, ",") == want {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("discovered %v, want %s", got, want)
	}
	waitHosts("alpha,beta")
	whoami := func() {
		t.Helper()
		for _, host := range []string{"alpha", "beta"} {
			var rep map[string]string
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := bus.NewClient(cli, host).Call(ctx, "whoami", nil, &rep)
			cancel()
			if err != nil || rep["host"] != host {
				t.Fatalf("%s whoami across the cluster: %v %v", host, rep, err)
			}
		}
	}
	whoami()

	// Wait until alpha knows the other nodes (INFO's connect_urls), or it
	// has nowhere to fail over to.
	waitFor(t, 30*time.Second, "alpha to learn the cluster", func() bool { return len(alpha.DiscoveredServers()) >= 2 })
	cl.Nodes[0].Kill()
	waitFor(t, 30*time.Second, "alpha to fail over", func() bool {
		return alpha.IsConnected() && alpha.ConnectedUrl() != cl.Nodes[0].URL()
	})
	waitHosts("alpha,beta")
	whoami()

	// Nothing listening for discovery is an error, not an empty fleet.
	lone := bustest.StartExternal(t)
	nc, err := nats.Connect(lone.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := bus.DiscoverHosts(context.Background(), nc, 300*time.Millisecond); err == nil {
		t.Fatal("discovery on an empty server found agents")
	}
}
