package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vmledger/vmledger/domains"
)

// Peer is an agent found on the bus by service discovery.
type Peer struct {
	Host    string `json:"host"`
	ID      string `json:"id"`      // the micro service instance ID
	Version string `json:"version"` // the agent's version
}

// DiscoveryQuiet is how long DiscoverHosts waits after the last answer
// for another one: agents answer INFO at once, so a short gap means all
// that will answer have.
const DiscoveryQuiet = 250 * time.Millisecond

// DiscoverHosts asks every vmledger command service reachable on the
// connection's cluster for its INFO ($SRV.INFO.vmledger, the micro
// discovery protocol) and returns the hosts that answered, sorted by host.
// It waits at most wait (and never past ctx) for the first answer, then
// until DiscoveryQuiet passes without another. Answers naming no valid
// host (not a vmledger agent) are skipped; two instances claiming one
// host are both reported, so the caller can see the conflict.
func DiscoverHosts(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]Peer, error) {
	subj, err := micro.ControlSubject(micro.InfoVerb, ServiceName, "")
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	var peers []Peer
	deadline := time.Now().Add(wait)
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("discover: %w", ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			return nil, fmt.Errorf("discover: %w", err)
		}
		var info micro.Info
		if json.Unmarshal(m.Data, &info) == nil && checkToken("host", info.Metadata["host"]) == nil {
			peers = append(peers, Peer{Host: info.Metadata["host"], ID: info.ID, Version: info.Version})
		}
		deadline = time.Now().Add(DiscoveryQuiet)
	}
	if len(peers) == 0 {
		return nil, domains.Errorf(domains.CodeUnavailable, "discover: no vmledger agent answered on %s within %s", subj, wait)
	}
	sort.Slice(peers, func(i, j int) bool {
		return peers[i].Host < peers[j].Host || peers[i].Host == peers[j].Host && peers[i].ID < peers[j].ID
	})
	return peers, nil
}
