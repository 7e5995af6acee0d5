// Package api is the wire form of vmledger's commands: the JSON bodies on
// vmledger.cmd.<host>.<verb> and the handler that maps each verb onto the
// domains service. It is pure: no NATS, no store.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Verbs the agent answers on vmledger.cmd.<host>.<verb>.
const (
	VerbDefine   = "define"
	VerbUndefine = "undefine"
	VerbList     = "list"
	VerbInfo     = "info"
	VerbConfig   = "config"
	VerbStart    = "start"
	VerbShutdown = "shutdown"
	VerbDestroy  = "destroy"
	VerbSuspend  = "suspend"
	VerbResume   = "resume"
	VerbReset    = "reset"
)

// Verbs lists every verb.
func Verbs() []string {
	return []string{VerbDefine, VerbUndefine, VerbList, VerbInfo, VerbConfig, VerbStart,
		VerbShutdown, VerbDestroy, VerbSuspend, VerbResume, VerbReset}
}

// DefineRequest carries a domain configuration.
type DefineRequest struct {
	CommandID string         `json:"command_id,omitempty"`
	Config    domains.Config `json:"config"`
}

// DomainRequest names one domain; the verb says what to do with it.
type DomainRequest struct {
	CommandID string `json:"command_id,omitempty"`
	Domain    string `json:"domain"`           // name or UUID
	Paused    bool   `json:"paused,omitempty"` // start only
	// At (info and config only) asks for the domain as it stood at a point
	// of the log: a decimal sequence or an RFC 3339 time (docs/replay.md).
	At string `json:"at,omitempty"`
}

// ListRequest filters list.
type ListRequest struct {
	State string `json:"state,omitempty"` // e.g. "running"; empty: all
}

// Summary is one row of list.
type Summary struct {
	UUID    string        `json:"uuid"`
	Name    string        `json:"name"`
	State   domains.State `json:"state"`
	Reason  string        `json:"reason,omitempty"`
	Version uint64        `json:"version"`
}

// ListReply is list's answer.
type ListReply struct {
	Domains []Summary `json:"domains"`
	LastSeq uint64    `json:"last_seq"`
}

// Service is what the handler needs from owner.Service.
type Service interface {
	Define(ctx context.Context, cmdID string, cfg domains.Config) (domains.Result, error)
	Undefine(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Start(ctx context.Context, cmdID, ref string, o domains.StartOptions) (domains.Result, error)
	Shutdown(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Destroy(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Suspend(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Resume(ctx context.Context, cmdID, ref string) (domains.Result, error)
	Reset(ctx context.Context, cmdID, ref string) (domains.Result, error)
	List() []domains.Domain
	Get(ref string) (domains.Domain, error)
	LastSeq() uint64
}

// Log is the read side of the event log that point-in-time requests
// (DomainRequest.At) fold; store.Store satisfies it.
type Log interface {
	ReadDomain(ctx context.Context, id uuid.UUID, afterVersion uint64, limit int) ([]domains.Event, error)
}

// Handler maps verbs to the service. It satisfies bus.Handler.
type Handler struct {
	Svc Service
	// Log, if set, answers info and config with At; without it they
	// fail as unavailable.
	Log Log
}

// Handle decodes body for verb, strictly, and runs it.
func (h Handler) Handle(ctx context.Context, verb string, body []byte) (any, error) {
	switch verb {
	case VerbDefine:
		var r DefineRequest
		if err := decode(body, &r); err != nil {
			return nil, err
		}
		return h.Svc.Define(ctx, r.CommandID, r.Config)
	case VerbList:
		var r ListRequest
		if err := decode(body, &r); err != nil {
			return nil, err
		}
		return h.list(r), nil
	case VerbInfo, VerbConfig:
		var r DomainRequest
		if err := decodeRef(body, &r); err != nil {
			return nil, err
		}
		var d domains.Domain
		var err error
		if r.At != "" {
			d, err = h.asOf(ctx, r.Domain, r.At)
		} else {
			d, err = h.Svc.Get(r.Domain)
		}
		if err != nil {
			return nil, err
		}
		if verb == VerbConfig {
			return d.Config, nil
		}
		return d, nil
	}
	var r DomainRequest
	if err := decodeRef(body, &r); err != nil {
		return nil, err
	}
	if r.Paused && verb != VerbStart {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes no paused flag", verb)
	}
	if r.At != "" {
		return nil, domains.Errorf(domains.CodeInvalid, "%q takes no \"at\": only info and config look back", verb)
	}
	switch verb {
	case VerbUndefine:
		return h.Svc.Undefine(ctx, r.CommandID, r.Domain)
	case VerbStart:
		return h.Svc.Start(ctx, r.CommandID, r.Domain, domains.StartOptions{Paused: r.Paused})
	case VerbShutdown:
		return h.Svc.Shutdown(ctx, r.CommandID, r.Domain)
	case VerbDestroy:
		return h.Svc.Destroy(ctx, r.CommandID, r.Domain)
	case VerbSuspend:
		return h.Svc.Suspend(ctx, r.CommandID, r.Domain)
	case VerbResume:
		return h.Svc.Resume(ctx, r.CommandID, r.Domain)
	case VerbReset:
		return h.Svc.Reset(ctx, r.CommandID, r.Domain)
	}
	return nil, domains.Errorf(domains.CodeInvalid, "unknown verb %q", verb)
}

func (h Handler) list(r ListRequest) ListReply {
	out := ListReply{Domains: []Summary{}, LastSeq: h.Svc.LastSeq()}
	for _, d := range h.Svc.List() {
		if r.State != "" && string(d.State) != r.State {
			continue
		}
		out.Domains = append(out.Domains, Summary{UUID: d.Config.UUID.String(), Name: d.Config.Name,
			State: d.State, Reason: d.Reason, Version: d.Version})
	}
	return out
}

func decodeRef(body []byte, r *DomainRequest) error {
	if err := decode(body, r); err != nil {
		return err
	}
	if r.Domain == "" {
		return domains.Errorf(domains.CodeInvalid, "missing \"domain\" (a name or UUID)")
	}
	return nil
}

// decode is strict: one JSON object, no unknown fields, nothing after it.
// An empty body is an empty object.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return domains.Errorf(domains.CodeInvalid, "malformed request: %s", describe(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domains.Errorf(domains.CodeInvalid, "malformed request: data after the JSON object")
	}
	return nil
}

func describe(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: %v", te.Field, err)
	}
	return err.Error()
}
