package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// The log verbs open the agent's file directly: they are for when there
// is no agent (disaster recovery, moving a host, audits of a copied file),
// so they never touch the bus. docs/replay.md.

func newLogCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Inspect, export, import or verify an event log file, with no agent running",
		Long: `Work on the event log file of a state directory (--state-dir D reads
D/` + agent.DBFile + `) directly, without an agent. While an agent holds the file
these verbs refuse with exit code 4: stop the agent, or ask it instead
(history, info --at, config --at). A damaged file (empty, cut short,
damaged meta or freelist page) ends them with exit code 6 and a message
saying what is wrong; export still reads a log whose only damage is its
freelist (salvage it: export, then import into an empty directory).`,
	}
	cmd.AddCommand(newLogInspectCmd(g), newLogExportCmd(), newLogImportCmd(), newLogVerifyCmd(g))
	return cmd
}

func addStateDir(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "state-dir", defaultStateDir(), "the agent's state directory (env VMLEDGER_STATE_DIR)")
}

// openLog opens D/events.db read-only, mapping the ways it can fail to
// exit codes: no file → 3, an agent holds it → 4.
func openLog(stateDir string) (*store.Store, error) {
	path := filepath.Join(stateDir, agent.DBFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, domains.Errorf(domains.CodeNotFound, "no event log at %s", path)
	}
	s, err := store.OpenReadOnly(path, store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return nil, domains.Errorf(domains.CodeConflict,
			"%s is held by a running agent: stop the agent first, or ask it over the bus (history, info --at): %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newLogExportCmd() *cobra.Command {
	var dir, out string
	cmd := &cobra.Command{
		Use:   "export [--state-dir D] [-o FILE]",
		Short: "Write every event as JSON Lines (one event a line) to stdout or FILE",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openLog(dir)
			if err != nil {
				return err
			}
			defer s.Close()
			if out == "" || out == "-" {
				return store.Export(cmd.Context(), s, cmd.OutOrStdout())
			}
			if err := exportFile(cmd, s, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d events to %s\n", s.LastSeq(), out)
			return nil
		},
	}
	addStateDir(cmd, &dir)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// exportFile writes beside path and renames at the end, so an interrupted
// export never leaves a file that looks complete.
func exportFile(cmd *cobra.Command, s *store.Store, path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = store.Export(cmd.Context(), s, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	return err
}

func newLogImportCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import FILE --state-dir D",
		Short: "Build a new log in an empty state directory from an export ('-' for stdin)",
		Long: `Rebuild an event log from an export (vmledger log export): the same
sequences, versions, times, command IDs and hosts, hence the same domains.
D must be empty or absent. Every line is checked first; the first one that
does not continue the log (a gap, a reordered line, an unknown type, a
broken payload, an illegal transition) is refused with its line number,
and then nothing is left behind.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("state-dir") {
				return usagef("log import needs --state-dir: the directory to create the log in")
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return usagef("import: %w", err)
				}
				defer f.Close()
				in = f
			}
			n, err := importInto(cmd, dir, in)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"events": n, "log": filepath.Join(dir, agent.DBFile)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d events into %s\n", n, filepath.Join(dir, agent.DBFile))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addStateDir(cmd, &dir)
	return cmd
}

// importInto refuses a non-empty directory, creates a missing one (and
// removes it again if the import is refused).
func importInto(cmd *cobra.Command, dir string, in io.Reader) (int, error) {
	entries, err := os.ReadDir(dir)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, err
		}
		created = true
	case err != nil:
		return 0, err
	case len(entries) > 0:
		return 0, domains.Errorf(domains.CodeConflict, "state directory %s is not empty: import only into an empty one", dir)
	}
	n, err := store.Import(cmd.Context(), filepath.Join(dir, agent.DBFile), in)
	if err != nil {
		if created {
			_ = os.Remove(dir)
		}
		if errors.Is(err, store.ErrImport) {
			return 0, domains.Errorf(domains.CodeInvalid, "%w", err)
		}
		return 0, err
	}
	return n, nil
}

func newLogVerifyCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "verify [--state-dir D]",
		Short: "Check sequences, versions, decoding, replay and snapshots; exit 6 on any problem",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openLog(dir)
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := store.Verify(cmd.Context(), s)
			if err != nil {
				return err
			}
			if g.json {
				err = printJSON(cmd.OutOrStdout(), rep)
			} else {
				printVerify(cmd.OutOrStdout(), &rep)
			}
			if err != nil {
				return err
			}
			if !rep.OK() {
				return corruptError{fmt.Errorf("%s: %d problem(s)", rep.Path, len(rep.Problems)+rep.Omitted)}
			}
			return nil
		},
	}
	addStateDir(cmd, &dir)
	addJSON(cmd, g)
	return cmd
}

// corruptError is log verify's finding of a damaged log (exit code 6).
type corruptError struct{ error }

func printVerify(w io.Writer, r *store.Report) {
	fmt.Fprintf(w, "Log:        %s\n", r.Path)
	fmt.Fprintf(w, "Events:     %d (last sequence %d)\n", r.Events, r.LastSeq)
	fmt.Fprintf(w, "Domains:    %d in the log, %d defined at the end\n", r.Domains, r.Defined)
	for _, sn := range r.Snapshots {
		st := "equals a fresh replay"
		if !sn.OK {
			st = sn.Problem
		}
		fmt.Fprintf(w, "Snapshot:   seq %d: %s\n", sn.Seq, st)
	}
	if r.OK() {
		fmt.Fprintln(w, "Result:     OK")
		return
	}
	fmt.Fprintf(w, "Result:     %d problem(s)\n", len(r.Problems)+r.Omitted)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
	if r.Omitted > 0 {
		fmt.Fprintf(w, "  ... and %d more\n", r.Omitted)
	}
}
