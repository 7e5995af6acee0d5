package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// inspection is what `log inspect` prints: a summary of the file and the
// projection of every domain, now or at --at.
type inspection struct {
	Path     string            `json:"path"`
	Bytes    int64             `json:"bytes"`
	LastSeq  uint64            `json:"last_seq"`
	At       string            `json:"at,omitempty"`
	Folded   uint64            `json:"events_folded"`
	First    time.Time         `json:"first_time,omitzero"`
	Last     time.Time         `json:"last_time,omitzero"`
	Snapshot uint64            `json:"newest_snapshot,omitempty"`
	Types    map[string]uint64 `json:"types"`
	Seen     int               `json:"domains_seen"` // with events so far, undefined ones included
	Domains  []domains.Domain  `json:"domains"`      // defined at that point
}

// errPast ends a replay at the --at bound.
var errPast = errors.New("past the bound")

func newLogInspectCmd(g *globals) *cobra.Command {
	var dir, at string
	cmd := &cobra.Command{
		Use:   "inspect [--state-dir D] [--at SEQ|TIME]",
		Short: "Summarise a log file and list its domains (as they stood at --at)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var seq uint64
			var until time.Time
			if at != "" {
				var err error
				if seq, until, err = domains.ParsePoint(at); err != nil {
					return usagef("--at: %w", err)
				}
			}
			s, err := openLog(dir)
			if err != nil {
				return err
			}
			defer s.Close()
			in, err := inspect(cmd, s, seq, until)
			if err != nil {
				return err
			}
			in.At = at
			if g.json {
				err = printJSON(cmd.OutOrStdout(), in)
			} else {
				printInspection(cmd.OutOrStdout(), in)
			}
			if err != nil {
				return err
			}
			// The events read, yet the file may be damaged where a reader
			// does not look (its freelist): say so, and exit 6.
			if err := store.CheckFile(s.Path()); err != nil {
				return corruptError{fmt.Errorf("%w; run log verify", err)}
			}
			return nil
		},
	}
	addStateDir(cmd, &dir)
	cmd.Flags().StringVar(&at, "at", "", "show the domains as they stood at this sequence or RFC 3339 time")
	addJSON(cmd, g)
	return cmd
}

// inspect replays the log up to the bound into a projection: the same
// fold the agent does, so what it shows is what the agent would load.
func inspect(cmd *cobra.Command, s *store.Store, seq uint64, until time.Time) (*inspection, error) {
	in := &inspection{Path: s.Path(), LastSeq: s.LastSeq(), Types: map[string]uint64{}}
	if fi, err := os.Stat(s.Path()); err == nil {
		in.Bytes = fi.Size()
	}
	if sn, _, err := s.LatestSnapshot(cmd.Context()); err == nil {
		in.Snapshot = sn
	} else if !errors.Is(err, store.ErrNoSnapshot) {
		return nil, err
	}
	p := domains.NewProjection()
	seen := map[uuid.UUID]bool{}
	err := s.Replay(cmd.Context(), 0, func(e domains.Event) error {
		if domains.Past(e, seq, until) {
			return errPast
		}
		if in.First.IsZero() {
			in.First = e.Time
		}
		in.Last = e.Time
		in.Folded++
		in.Types[string(e.Type)]++
		seen[e.Domain] = true
		return p.Apply(e)
	})
	if err != nil && !errors.Is(err, errPast) {
		return nil, err
	}
	in.Seen, in.Domains = len(seen), p.List()
	return in, nil
}

func printInspection(w io.Writer, in *inspection) {
	t := newTable(w)
	fmt.Fprintf(t, "File:\t%s (%d bytes)\n", in.Path, in.Bytes)
	fmt.Fprintf(t, "Events:\t%d\n", in.LastSeq)
	if in.At != "" {
		fmt.Fprintf(t, "As of:\t%s (%d events folded)\n", in.At, in.Folded)
	}
	if !in.First.IsZero() {
		fmt.Fprintf(t, "Recorded:\t%s to %s\n", fmtTime(in.First), fmtTime(in.Last))
	}
	if in.Snapshot != 0 {
		fmt.Fprintf(t, "Newest snapshot:\tseq %d\n", in.Snapshot)
	}
	fmt.Fprintf(t, "Domains:\t%d defined, %d undefined\n", len(in.Domains), in.Seen-len(in.Domains))
	types := make([]string, 0, len(in.Types))
	for k, n := range in.Types {
		types = append(types, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(types)
	fmt.Fprintf(t, "Types:\t%s\n", strings.Join(types, ", "))
	_ = t.Flush()
	if len(in.Domains) == 0 {
		return
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "NAME\tUUID\tSTATE\tREASON\tVERSION\tLAST SEQ")
	for _, d := range in.Domains {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%d\t%d\n", d.Config.Name, d.Config.UUID, d.State, d.Reason, d.Version, d.LastSeq)
	}
	_ = t.Flush()
}
