package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
)

// Points in the log, for --at, --since and --until: a sequence number or an
// RFC 3339 time (domains.ParsePoint). Times are compared in log order: the
// log is cut at the first event recorded after the time (docs/replay.md).

func addAt(cmd *cobra.Command, at *string) {
	cmd.Flags().StringVar(at, "at", "", "as it stood at this point of the log: a sequence number or an RFC 3339 time")
}

// checkAt refuses a malformed --at before anything goes on the bus.
func checkAt(at string) error {
	if at == "" {
		return nil
	}
	if _, _, err := domains.ParsePoint(at); err != nil {
		return usagef("--at: %w", err)
	}
	return nil
}

// logRange is history's --since and --until, both inclusive.
type logRange struct {
	since, until string

	sinceSeq, untilSeq   uint64
	sinceTime, untilTime time.Time
}

func (r *logRange) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.since, "since", "", "from this sequence or RFC 3339 time on (inclusive)")
	cmd.Flags().StringVar(&r.until, "until", "", "up to this sequence or RFC 3339 time (inclusive)")
}

func (r *logRange) parse() error {
	var err error
	if r.since != "" {
		if r.sinceSeq, r.sinceTime, err = domains.ParsePoint(r.since); err != nil {
			return usagef("--since: %w", err)
		}
	}
	if r.until != "" {
		if r.untilSeq, r.untilTime, err = domains.ParsePoint(r.until); err != nil {
			return usagef("--until: %w", err)
		}
	}
	return nil
}

// after is the history request's starting point for --since SEQ.
func (r *logRange) after(after uint64) uint64 {
	if r.sinceSeq > 0 {
		return max(after, r.sinceSeq-1)
	}
	return after
}

// errRangeEnd stops paging once an event lies past --until.
var errRangeEnd = errors.New("end of range")

// filter passes on the events inside the range. A time bound is applied
// in log order: --since starts at the first event at or after it, --until
// ends before the first event after it.
func (r *logRange) filter(fn func(domains.Event) error) func(domains.Event) error {
	started := r.sinceTime.IsZero()
	return func(e domains.Event) error {
		if domains.Past(e, r.untilSeq, r.untilTime) {
			return errRangeEnd
		}
		if !started {
			if e.Time.Before(r.sinceTime) {
				return nil
			}
			started = true
		}
		return fn(e)
	}
}
