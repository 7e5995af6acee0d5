package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/vmledger/vmledger/domains"
)

// APIServiceName is the micro service of the agent's read API (history,
// console lookup), beside the command service (ServiceName): $SRV.INFO.
// vmledger-api lists its endpoints with their subjects and metadata.
const APIServiceName = "vmledger-api"

// APISchemaVersion is the version of the JSON bodies of the API and
// command endpoints, in each endpoint's metadata as "schema_version". It
// changes only when a body changes incompatibly.
const APISchemaVersion = "1"

// ConsoleInfoSubject is the console endpoint's request subject.
func ConsoleInfoSubject(host string) string { return subjectRoot + ".api." + host + ".console" }

// ConsoleSubject is the subject of a domain's console stream, dir "out"
// (bytes the guest wrote) or "in" (bytes to type into it).
func ConsoleSubject(host string, id uuid.UUID, dir string) string {
	return subjectRoot + ".console." + host + "." + id.String() + "." + dir
}

// ConsoleLookup resolves a domain for the console endpoint; the agent
// implements it on its projection.
type ConsoleLookup interface {
	ConsoleDomain(ref string) (ConsoleDomain, error)
}

// ConsoleDomain is what the lookup knows of a domain. Live: the agent
// bridges its serial console now (the guest runs).
type ConsoleDomain struct {
	UUID  uuid.UUID
	Name  string
	State domains.State
	Live  bool
}

// ConsoleRequest asks where a domain's console is.
type ConsoleRequest struct {
	Domain string `json:"domain"` // name or UUID
}

// ConsoleInfo is the console endpoint's answer.
type ConsoleInfo struct {
	Domain string        `json:"domain"` // UUID
	Name   string        `json:"name"`
	State  domains.State `json:"state"`
	Live   bool          `json:"live"`
	Out    string        `json:"out"`
	In     string        `json:"in"`
}

// startAPI registers the API micro service: history always, the console
// lookup when o.Consoles is set. Handlers answer with respondAPI, so
// micro's own stats count their errors.
func startAPI(ctx context.Context, nc *nats.Conn, o HistoryOptions, history micro.HandlerFunc) (micro.Service, error) {
	version := o.Version
	if version == "" {
		version = "0.0.0"
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: APIServiceName, Version: version, Description: "vmledger agent read API: event history, console lookup",
		Metadata: map[string]string{"host": o.Host, "schema_version": APISchemaVersion},
	})
	if err != nil {
		return nil, fmt.Errorf("api service: %w", err)
	}
	err = svc.AddEndpoint("history", history, micro.WithEndpointSubject(HistorySubject(o.Host)), micro.WithEndpointMetadata(map[string]string{
		"schema_version": APISchemaVersion,
		"subject":        HistorySubject(o.Host),
		"description":    "events after a sequence, oldest first, in bounded pages; resume from next",
		"request":        `{"after":SEQ,"limit":N,"domain":"UUID","types":["TYPE"]}`,
		"reply":          `{"events":[EVENT],"last_seq":SEQ,"next":SEQ,"more":BOOL}`,
		"events":         subjectRoot + ".evt." + o.Host + ".<uuid>.<type>",
	}))
	if err == nil && o.Consoles != nil {
		log := o.Logger.With().Str("component", "console").Logger()
		err = svc.AddEndpoint("console", micro.HandlerFunc(func(r micro.Request) {
			body, err := consoleInfo(o.Host, o.Consoles, r.Data())
			respondAPI(r, log, body, err)
		}), micro.WithEndpointSubject(ConsoleInfoSubject(o.Host)), micro.WithEndpointMetadata(map[string]string{
			"schema_version": APISchemaVersion,
			"subject":        ConsoleInfoSubject(o.Host),
			"description":    "where a domain's serial console streams are: subscribe to out, publish to in",
			"request":        `{"domain":"NAME|UUID"}`,
			"reply":          `{"domain":"UUID","name":NAME,"state":STATE,"live":BOOL,"out":SUBJECT,"in":SUBJECT}`,
			"out":            subjectRoot + ".console." + o.Host + ".<uuid>.out",
			"in":             subjectRoot + ".console." + o.Host + ".<uuid>.in",
		}))
	}
	if err == nil {
		err = flushSubs(ctx, nc)
	}
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("api service: %w", err)
	}
	return svc, nil
}

func consoleInfo(host string, lookup ConsoleLookup, data []byte) ([]byte, error) {
	var req ConsoleRequest
	if err := domains.DecodeStrict(data, &req); err != nil {
		return nil, domains.Errorf(domains.CodeInvalid, "console request: %w", err)
	}
	if req.Domain == "" {
		return nil, domains.Errorf(domains.CodeInvalid, "console request: missing \"domain\" (a name or UUID)")
	}
	d, err := lookup.ConsoleDomain(req.Domain)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ConsoleInfo{Domain: d.UUID.String(), Name: d.Name, State: d.State, Live: d.Live,
		Out: ConsoleSubject(host, d.UUID, "out"), In: ConsoleSubject(host, d.UUID, "in")})
}

// respondAPI sends body, or err in the same form as every other error
// reply (errorMsg: the {error} JSON and micro's error headers) through
// micro's Error, which counts it in $SRV.STATS (num_errors, last_error).
func respondAPI(r micro.Request, log zerolog.Logger, body []byte, err error) {
	if r.Reply() == "" {
		return // a publish, not a request: nobody to answer
	}
	if !replyAllowed(r.Reply()) {
		refuseReply(log, "api", r.Reply())
		return
	}
	if err == nil {
		if rerr := r.Respond(body); rerr != nil {
			log.Warn().Err(rerr).Msg("api reply not sent")
		}
		return
	}
	w := wireErrorOf(err)
	data, _ := json.Marshal(reply{Error: w}) // strings only: cannot fail
	if rerr := r.Error(strconv.Itoa(statusOf(w.Code)), headerSafe(w.Message), data); rerr != nil {
		log.Warn().Err(rerr).Msg("api error reply not sent")
	}
}
