package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains"
)

// domainLookup resolves a name or UUID (owner.Service.Get).
type domainLookup interface {
	Get(ref string) (domains.Domain, error)
}

// observed wraps the command handler: every command is counted, timed
// and logged once, with the domain's name and UUID, the command ID, the
// result code and the duration. Commands that change nothing and succeed
// (list, info, config, job-info: ReadVerbs) log at debug, so a polling
// client does not flood the log; everything else logs at info, a refusal
// at warn and an internal or unavailable failure at error. A failed start
// carries QEMU's own message (the tail of its qemu.log) in "error".
type observed struct {
	next    bus.Handler
	lookup  domainLookup
	metrics commandMetrics
	log     zerolog.Logger
	reads   []string
}

// commandRef is what a request says about its domain and ID; decoded
// leniently (the handler decodes strictly and refuses what is wrong).
type commandRef struct {
	CommandID string `json:"command_id"`
	Domain    string `json:"domain"`
	Config    struct {
		Name string `json:"name"`
		UUID string `json:"uuid"`
	} `json:"config"`
}

func (o observed) Handle(ctx context.Context, verb string, body []byte) (any, error) {
	start := time.Now()
	var ref commandRef
	_ = json.Unmarshal(body, &ref)
	name, id := ref.Config.Name, ref.Config.UUID
	if ref.Domain != "" {
		name = ref.Domain
		// Before the call: an undefine leaves nothing to look up after.
		if d, err := o.lookup.Get(ref.Domain); err == nil {
			name, id = d.Config.Name, d.Config.UUID.String()
		}
	}
	defer func() {
		// A panic is the command service's to turn into an internal
		// error (bus.CommandService.call); it is still one command.
		if p := recover(); p != nil {
			o.record(verb, name, id, ref.CommandID, start, fmt.Errorf("handler panicked: %v", p))
			panic(p)
		}
	}()
	res, err := o.next.Handle(ctx, verb, body)
	if r, ok := res.(domains.Result); ok && r.Name != "" {
		name, id = r.Name, r.Domain.String()
	}
	o.record(verb, name, id, ref.CommandID, start, err)
	return res, err
}

func (o observed) record(verb, name, id, cmdID string, start time.Time, err error) {
	took := time.Since(start)
	code := "ok"
	if err != nil {
		code = string(domains.CodeOf(err))
	}
	o.metrics.total.WithLabelValues(verb, code).Inc()
	o.metrics.duration.WithLabelValues(verb, code).Observe(took.Seconds())

	var ev *zerolog.Event
	switch {
	case err == nil && slices.Contains(o.reads, verb):
		ev = o.log.Debug()
	case err == nil:
		ev = o.log.Info()
	case code == string(domains.CodeInternal) || code == string(domains.CodeUnavailable):
		ev = o.log.Error().Err(err)
	default:
		ev = o.log.Warn().Err(err)
	}
	ev.Str("verb", verb).Str("domain", name).Str("uuid", id).Str("command_id", cmdID).
		Str("result", code).Float64("duration_ms", float64(took.Microseconds())/1000).Msg("command")
}
