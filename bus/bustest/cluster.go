package bustest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
