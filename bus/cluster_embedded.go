package bus

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vmledger/vmledger/domains"
)

// ClusterOptions joins the embedded server to other agents' embedded
// servers by routes (one NATS cluster on which several hosts' agents
// discover and command each other).
type ClusterOptions struct {
	Name string // cluster name; default "vmledger"
	Host string // route listen address; default 127.0.0.1
	Port int    // route listen port; -1 a free one
	// Routes are the other servers' route URLs (nats-route://host:port).
	Routes []string
}

// RouteUser is the user name routes authenticate with; the password is
// the embedded server's token, so a cluster shares one token.
const RouteUser = "vmledger-route"

// clusterOpts sets the route listener and routes. With a token, routes
// must present it (RouteUser, token) and it is put into each route URL:
// without that, anyone who reaches the route port would bypass the
// clients' token.
func clusterOpts(opts *server.Options, c *ClusterOptions, token string) error {
	if c.Name == "" {
		c.Name = "vmledger"
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
	if token != "" {
		opts.Cluster.Username, opts.Cluster.Password = RouteUser, token
	}
	for _, r := range c.Routes {
		r = strings.TrimSpace(r)
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats") {
			return domains.Errorf(domains.CodeInvalid, "route %s: want nats-route://HOST:PORT", domains.Quote(RedactURL(r)))
		}
		if u.User != nil {
			return domains.Errorf(domains.CodeInvalid, "route %s: give no credentials in it; routes use the server's token", domains.Quote(RedactURL(r)))
		}
		if token != "" {
			u.User = url.UserPassword(RouteUser, token)
		}
		opts.Routes = append(opts.Routes, u)
	}
	if len(opts.Routes) > 0 && c.Port == 0 {
		return fmt.Errorf("embedded nats: routes need a route listen port")
	}
	return nil
}
