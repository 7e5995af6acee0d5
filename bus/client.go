package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vmledger/vmledger/domains"
)

// DefaultCallTimeout applies when a call's context has no deadline.
const DefaultCallTimeout = 60 * time.Second

// Client talks to one host's agent: commands, history and the live stream.
type Client struct {
	nc      *nats.Conn
	host    string
	refused *refusals
}

// NewClient returns a client for host's agent. An invalid host makes every
// call fail with an invalid error.
// A request the server refuses (permissions) fails at once with an
// invalid error instead of timing out: each Client chains a watcher onto
// nc's error handler, so make one per connection and host, not per call.
func NewClient(nc *nats.Conn, host string) *Client {
	return &Client{nc: nc, host: host, refused: watchRefusals(nc)}
}

// Call sends verb with req as its body and decodes the result into resp
// (skipped when resp is nil). req may be nil (empty body), []byte or
// json.RawMessage (sent as is), or anything json.Marshal accepts.
//
// An error reply comes back as *domains.Error, so errors.Is(err,
// domains.ErrNotFound) works across the wire. No agent (no responders, or
// no reply before the deadline) is an unavailable error wrapping
// ErrNoAgent, and context.DeadlineExceeded on timeout.
func (c *Client) Call(ctx context.Context, verb string, req, resp any) error {
	if err := checkToken("verb", verb); err != nil {
		return err
	}
	return c.call(ctx, CommandSubject(c.host, verb), verb, req, resp)
}

// call is Call on subject.
func (c *Client) call(ctx context.Context, subject, verb string, req, resp any) error {
	if err := checkToken("host", c.host); err != nil {
		return err
	}
	body, err := encodeBody(req)
	if err != nil {
		return domains.Errorf(domains.CodeInvalid, "%s: encode request: %v", verb, err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	var r reply
	if err := c.request(ctx, m, verb, &r); err != nil {
		return err
	}
	if resp != nil && len(r.Result) > 0 {
		if err := json.Unmarshal(r.Result, resp); err != nil {
			return domains.Errorf(domains.CodeInternal, "%s: decode result: %v", verb, err)
		}
	}
	return nil
}

// History fetches one page of the log; see HistoryRequest and HistoryPage.
func (c *Client) History(ctx context.Context, hr HistoryRequest) (HistoryPage, error) {
	var page HistoryPage
	if err := checkToken("host", c.host); err != nil {
		return page, err
	}
	m := nats.NewMsg(HistorySubject(c.host))
	m.Data, _ = json.Marshal(hr) // plain fields: cannot fail
	var r struct {
		reply
		Events  []json.RawMessage `json:"events"`
		LastSeq uint64            `json:"last_seq"`
		Next    uint64            `json:"next"`
		More    bool              `json:"more"`
	}
	if err := c.request(ctx, m, "history", &r); err != nil {
		return page, err
	}
	evs, err := decodeEvents(r.Events)
	if err != nil {
		return page, domains.Errorf(domains.CodeInternal, "history: undecodable event from agent %s: %w", c.host, err)
	}
	return HistoryPage{Events: evs, LastSeq: r.LastSeq, Next: r.Next, More: r.More}, nil
}

// request sends m and decodes the reply into v (which embeds reply or is
// one), turning transport failures and error replies into coded errors.
func (c *Client) request(ctx context.Context, m *nats.Msg, what string, v any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	// Tell the agent how long we will wait, so it does not work on for a
	// caller that has gone. Relative, so host clock skew does not matter.
	m.Header.Set(HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	rm, err := c.refused.request(ctx, c.nc, m)
	if de := (*domains.Error)(nil); errors.As(err, &de) {
		return err
	}
	if err != nil {
		return c.transportError(ctx, what, err)
	}
	if err := json.Unmarshal(rm.Data, v); err != nil {
		if derr := decodeError(rm, nil); derr != nil {
			return derr
		}
		return domains.Errorf(domains.CodeInternal, "%s: undecodable reply from agent %s: %v", what, c.host, err)
	}
	var env *reply
	switch x := v.(type) {
	case *reply:
		env = x
	case interface{ envelope() *reply }:
		env = x.envelope()
	}
	return decodeError(rm, env)
}

func (r *reply) envelope() *reply { return r }

func (c *Client) transportError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// The server answers at once when nothing subscribes: say so
		// plainly instead of letting the caller wait.
		return domains.Errorf(domains.CodeUnavailable,
			"%s: no agent serves host %s on %s (is `vmledger agent --host %s` running and connected to this server?): %w",
			what, domains.Quote(c.host), RedactURL(c.nc.ConnectedUrl()), c.host, ErrNoAgent)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return domains.Errorf(domains.CodeUnavailable, "%s: agent %s did not answer in time: %w",
			what, domains.Quote(c.host), errors.Join(ErrNoAgent, context.DeadlineExceeded))
	}
	return domains.Errorf(domains.CodeUnavailable, "%s: bus: %w", what, err)
}

func encodeBody(req any) ([]byte, error) {
	switch b := req.(type) {
	case nil:
		return nil, nil
	case []byte:
		return b, nil
	case json.RawMessage:
		return b, nil
	}
	return json.Marshal(req)
}
