package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
	"github.com/vmledger/vmledger/domains/owner"
)

// The service is what the migration verbs need.
var _ api.MigrateService = (*owner.Service)(nil)

// peers reaches the other agents' migration verbs over the bus
// (owner.MigrationPeer) on their peer subjects (bus.CallPeer): one client
// per host, as bus.NewClient asks.
type peers struct {
	nc      *nats.Conn
	mu      sync.Mutex
	clients map[string]*bus.Client
}

func newPeers(nc *nats.Conn) *peers { return &peers{nc: nc, clients: map[string]*bus.Client{}} }

func (p *peers) client(host string) *bus.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[host]
	if !ok {
		c = bus.NewClient(p.nc, host)
		p.clients[host] = c
	}
	return c
}

func (p *peers) Prepare(ctx context.Context, host string, req domains.MigrationPrepare) (res domains.MigrationPrepared, err error) {
	err = p.client(host).CallPeer(ctx, api.VerbMigratePrepare, req, &res)
	return res, err
}

func (p *peers) Finish(ctx context.Context, host string, req domains.MigrationFinish) (res domains.MigrationFinished, err error) {
	err = p.client(host).CallPeer(ctx, api.VerbMigrateFinish, req, &res)
	return res, err
}

func (p *peers) Lookup(ctx context.Context, host, id string) (d domains.Domain, found bool, err error) {
	err = p.client(host).Call(ctx, api.VerbInfo, api.DomainRequest{Domain: id}, &d)
	if errors.Is(err, domains.ErrNotFound) {
		return d, false, nil
	}
	return d, err == nil, err
}

func (p *peers) Cancel(ctx context.Context, host string, req domains.MigrationCancel) error {
	return p.client(host).CallPeer(ctx, api.VerbMigrateCancel, req, nil)
}
