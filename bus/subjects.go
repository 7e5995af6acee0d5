package bus

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// Subject layout. The prefix and the token order are part of the wire
// contract (docs/bus.md): subscribers filter with wildcards on them.
const (
	subjectRoot = "vmledger"

	// HeaderSeq carries the event's global sequence, so a subscriber can
	// drop a duplicate without decoding the body.
	HeaderSeq = "Vmledger-Seq"
	// HeaderMsgID is the NATS de-duplication ID (<host>-<seq>): JetStream
	// streams that capture the event subjects drop relay duplicates by it.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderTimeout carries the caller's remaining patience in milliseconds,
	// so the agent stops working on a command nobody waits for.
	HeaderTimeout = "Vmledger-Timeout-Ms"
)

// tokenRE is what a host or verb may look like: one NATS subject token that
// is also a micro endpoint name (no dots, wildcards or spaces).
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func checkToken(kind, s string) error {
	if !tokenRE.MatchString(s) {
		return domains.Errorf(domains.CodeInvalid,
			"%s %s: must be 1-128 letters, digits, '-' or '_' (it is a NATS subject token)", kind, domains.Quote(s))
	}
	return nil
}

// EventSubject is where the relay publishes one event.
func EventSubject(host string, domain uuid.UUID, t domains.Type) string {
	return subjectRoot + ".evt." + host + "." + domain.String() + "." + string(t)
}

// EventFilter is the subscription subject for a host's events, narrowed to
// one domain and/or one type; zero values mean any.
func EventFilter(host string, domain uuid.UUID, t domains.Type) string {
	d, ty := "*", "*"
	if domain != uuid.Nil {
		d = domain.String()
	}
	if t != "" {
		ty = string(t)
	}
	if d == "*" && ty == "*" {
		return subjectRoot + ".evt." + host + ".>"
	}
	return subjectRoot + ".evt." + host + "." + d + "." + ty
}

// JobProgressSubject is where the agent publishes an asynchronous job's
// progress (domains.JobInfo with Progress), at a bounded rate; progress
// is never appended to the log.
func JobProgressSubject(host string, domain uuid.UUID) string {
	return subjectRoot + ".job." + host + "." + domain.String() + ".progress"
}

// HistorySubject is the history service's request subject.
func HistorySubject(host string) string { return subjectRoot + ".api." + host + ".history" }

// CommandSubject is the request subject of one verb.
func CommandSubject(host, verb string) string { return subjectRoot + ".cmd." + host + "." + verb }

func commandPrefix(host string) string { return subjectRoot + ".cmd." + host + "." }

// msgID is the Nats-Msg-Id of an event: unique per host and sequence, so
// the same event published twice carries the same ID.
func msgID(host string, seq uint64) string { return host + "-" + strconv.FormatUint(seq, 10) }

// parseSeq reads the Vmledger-Seq header.
func parseSeq(v string) (uint64, error) {
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("bad %s header %s", HeaderSeq, domains.Quote(v))
	}
	return seq, nil
}
