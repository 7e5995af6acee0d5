package bus

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vmledger/vmledger/domains"
)

// WireError is the {code, message} form of a domains.Error.
type WireError struct {
	Code    domains.Code `json:"code"`
	Message string       `json:"message"`
}

// reply is the envelope of every command reply: exactly one of Result and
// Error is set. History replies use Error the same way.
type reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *WireError      `json:"error,omitempty"`
}

// statusOf maps a code to the HTTP-like status micro puts in the
// Nats-Service-Error-Code header, which generic NATS tooling understands.
func statusOf(c domains.Code) int {
	switch c {
	case domains.CodeInvalid:
		return 400
	case domains.CodeNotFound:
		return 404
	case domains.CodeConflict:
		return 409
	case domains.CodeUnavailable:
		return 503
	}
	return 500
}

func codeOfStatus(s string) domains.Code {
	switch s {
	case "400":
		return domains.CodeInvalid
	case "404":
		return domains.CodeNotFound
	case "409":
		return domains.CodeConflict
	case "503":
		return domains.CodeUnavailable
	}
	return domains.CodeInternal
}

// wireErrorOf turns any error into its wire form; uncoded errors are
// internal. The message is bounded (boundMessage): whatever a handler's
// error quotes, the reply stays far below any max payload.
func wireErrorOf(err error) *WireError {
	w := &WireError{Code: domains.CodeOf(err), Message: boundMessage(err.Error())}
	if w.Message == "" {
		w.Message = string(w.Code)
	}
	return w
}

// errorMsg builds an error reply: the JSON body for our clients and the
// micro headers for generic tooling (nats micro, $SRV stats).
func errorMsg(subject string, w *WireError) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(micro.ErrorHeader, headerSafe(w.Message))
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(statusOf(w.Code)))
	m.Data, _ = json.Marshal(reply{Error: w}) // strings only: cannot fail
	return m
}

// oversizeReply is the error sent instead of a reply too large for one
// NATS message: the caller hears at once why, instead of timing out.
func oversizeReply(what string, size int, maxPayload int64) error {
	return domains.Errorf(domains.CodeInternal,
		"%s: the reply is %d bytes, more than one NATS message carries (max payload %d bytes); "+
			"an older log holds data this large (new appends are bounded, docs/bus.md): `vmledger log export` on the agent's host, with the agent stopped, shows it",
		what, size, maxPayload)
}

// decodeError rebuilds the error of a reply, or returns nil when the reply
// is not an error. The result is a *domains.Error, so errors.Is(err,
// domains.ErrNotFound) holds on the caller's side.
func decodeError(m *nats.Msg, body *reply) error {
	if body != nil && body.Error != nil {
		return &domains.Error{Code: body.Error.Code, Message: body.Error.Message}
	}
	if st := m.Header.Get(micro.ErrorCodeHeader); st != "" {
		msg := m.Header.Get(micro.ErrorHeader)
		if msg == "" {
			msg = "agent error " + st
		}
		return &domains.Error{Code: codeOfStatus(st), Message: msg}
	}
	return nil
}

// ErrNoAgent is wrapped by the unavailable errors a Client returns when no
// agent answers for the host.
var ErrNoAgent = errors.New("no vmledger agent answered")
