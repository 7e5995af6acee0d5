package agent

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/bus"
)

// Serial consoles: QEMU's COM1 is a unix socket in the domain's run
// directory. The agent is its one client and bridges it to NATS, so any
// number of `vmledger console` users can watch, and type, from anywhere:
//
//	vmledger.console.<host>.<uuid>.out  bytes the guest wrote
//	vmledger.console.<host>.<uuid>.in   bytes to type into the guest

// ConsoleSubject is the subject of a domain's console stream, dir "out" or "in".
func ConsoleSubject(host string, id uuid.UUID, dir string) string {
	return bus.ConsoleSubject(host, id, dir)
}

// consoles keeps one bridge per running domain.
type consoles struct {
	nc     *nats.Conn
	host   string
	path   func(uuid.UUID) string // the serial socket of a domain
	log    zerolog.Logger
	mu     sync.Mutex
	active map[uuid.UUID]func() // stop functions
}

// sync makes the set of bridges match the active domains, ids.
func (c *consoles) sync(ctx context.Context, ids []uuid.UUID) {
	want := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, stop := range c.active {
		if !want[id] {
			stop()
			delete(c.active, id)
		}
	}
	for id := range want {
		if _, ok := c.active[id]; !ok {
			c.active[id] = c.bridge(ctx, id)
		}
	}
}

func (c *consoles) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, stop := range c.active {
		stop()
		delete(c.active, id)
	}
}

// bridge copies between the socket and NATS until stopped, reconnecting
// while the domain runs (QEMU may not have created the socket yet).
func (c *consoles) bridge(parent context.Context, id uuid.UUID) func() {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := c.once(ctx, id); err != nil && ctx.Err() == nil {
				c.log.Debug().Err(err).Str("domain", id.String()).Msg("console bridge")
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (c *consoles) once(ctx context.Context, id uuid.UUID) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path(id))
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sub, err := c.nc.Subscribe(ConsoleSubject(c.host, id, "in"), func(m *nats.Msg) {
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(m.Data)
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	out := ConsoleSubject(c.host, id, "out")
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			// Publishing copies the bytes, and never blocks on a slow
			// subscriber: NATS drops for them, not for us.
			if perr := c.nc.Publish(out, buf[:n]); perr != nil && !errors.Is(perr, nats.ErrConnectionReconnecting) {
				return perr
			}
		}
		if err != nil {
			return err
		}
	}
}

func (a *agent) startConsoles(context.Context) error {
	if a.driver == nil {
		return nil
	}
	a.consoles = &consoles{nc: a.nc, host: a.cfg.Host, path: a.driver.ConsolePath,
		log: a.log.With().Str("component", "console").Logger(), active: map[uuid.UUID]func(){}}
	// Wake on the service's folds, not on the store's commits: a commit is
	// visible in the store before the projection has folded it, and a sync
	// then would miss the domain that just started.
	a.consoleStop = background(a.consoleLoop)
	return nil
}

// consoleLoop keeps the bridges matching the active domains, on every
// fold. It reads the projection's index of active domains (their UUIDs,
// no copies), so a wake costs the few active domains, not the 10,000
// defined on the load benchmark's agent (docs/performance.md, "Load").
func (a *agent) consoleLoop(ctx context.Context) {
	for {
		a.consoles.sync(ctx, a.svc.ActiveIDs())
		select {
		case <-a.folded:
		case <-ctx.Done():
			return
		}
	}
}

func (a *agent) stopConsoles(context.Context) error {
	if a.consoles == nil {
		return nil
	}
	a.consoleStop()
	a.consoles.closeAll()
	return nil
}

// consoleLookup answers the API service's console endpoint from the
// projection: a domain's console is bridged while it is active and the
// agent has a hypervisor (startConsoles).
type consoleLookup struct{ a *agent }

func (c consoleLookup) ConsoleDomain(ref string) (bus.ConsoleDomain, error) {
	d, err := c.a.svc.Get(ref)
	if err != nil {
		return bus.ConsoleDomain{}, err
	}
	return bus.ConsoleDomain{UUID: d.Config.UUID, Name: d.Config.Name, State: d.State, Live: d.State.Active() && c.a.driver != nil}, nil
}
