package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/coredump"
	"github.com/vmledger/vmledger/domains"
)

// dumpReadMax bounds one dump-read (the bytes go to a terminal or pipe).
const dumpReadMax = 1 << 30

func newDumpInfoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dump-info FILE",
		Short: "Describe a guest core dump (ELF or kdump, plain or flattened): format, pages, holes, notes",
		Long: `Describe a guest core dump written by vmledger, QEMU's dump-guest-memory or
makedumpfile: ELF or kdump-compressed (zlib, snappy, zstd), plain or in
makedumpfile's flattened stream. Works offline, with no agent.

Exit codes: 2 not a dump file, 3 no such file, 6 a damaged dump.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := openDump(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in := coredump.Describe(f)
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					File string `json:"file"`
					coredump.Info
				}{args[0], in})
			}
			printDumpInfo(cmd.OutOrStdout(), args[0], in)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newDumpReadCmd() *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "dump-read FILE ADDR LEN",
		Short: "Print guest-physical memory from a core dump (hex, or raw bytes with --raw)",
		Long: `Print LEN bytes of guest-physical memory at ADDR from a core dump (any
format dump-info reads). ADDR and LEN are decimal or 0x-hex; LEN is at most
1 GiB. The default output is a hex dump with guest addresses; --raw writes
the bytes themselves.

Exit codes: 2 bad arguments or not a dump file, 3 no such file or ADDR..LEN
runs into a hole (what came before the hole is printed), 6 a damaged dump.`,
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := strconv.ParseUint(args[1], 0, 64)
			if err != nil || addr > 1<<63-1 {
				return usagef("ADDR %q: not an address", args[1])
			}
			n, err := strconv.ParseUint(args[2], 0, 64)
			if err != nil || n > dumpReadMax {
				return usagef("LEN %q: want a length up to %d", args[2], dumpReadMax)
			}
			f, err := openDump(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			return copyGuest(w, f, addr, n, raw)
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "write the raw bytes instead of a hex dump")
	return cmd
}

// openDump opens a dump file, mapping its errors to exit codes.
func openDump(path string) (*coredump.File, error) {
	f, err := coredump.OpenFile(path)
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, domains.Errorf(domains.CodeNotFound, "%w", err)
	case errors.Is(err, coredump.ErrFormat):
		return nil, usageError{err}
	case errors.Is(err, coredump.ErrCorrupt), errors.Is(err, coredump.ErrTruncated):
		return nil, corruptError{err}
	}
	return nil, err
}

func copyGuest(w io.Writer, f *coredump.File, addr, n uint64, raw bool) error {
	buf := make([]byte, min(n, 1<<20))
	for done := uint64(0); done < n; {
		chunk := buf[:min(uint64(len(buf)), n-done)]
		m, err := f.ReadAt(chunk, int64(addr+done))
		if raw {
			if _, werr := w.Write(chunk[:m]); werr != nil {
				return werr
			}
		} else {
			hexLines(w, addr+done, chunk[:m])
		}
		done += uint64(m)
		switch {
		case errors.Is(err, coredump.ErrHole):
			return domains.Errorf(domains.CodeNotFound, "%w", err)
		case errors.Is(err, coredump.ErrCorrupt), errors.Is(err, coredump.ErrTruncated):
			return corruptError{err}
		case err != nil:
			return err
		}
	}
	return nil
}

// hexLines writes b as "address  16 hex bytes  |ascii|" lines.
func hexLines(w io.Writer, addr uint64, b []byte) {
	for i := 0; i < len(b); i += 16 {
		line := b[i:min(i+16, len(b))]
		fmt.Fprintf(w, "%016x ", addr+uint64(i))
		for j := range 16 {
			if j == 8 {
				fmt.Fprint(w, " ")
			}
			if j < len(line) {
				fmt.Fprintf(w, " %02x", line[j])
			} else {
				fmt.Fprint(w, "   ")
			}
		}
		asc := make([]byte, len(line))
		for j, c := range line {
			asc[j] = '.'
			if c >= 0x20 && c < 0x7f {
				asc[j] = c
			}
		}
		fmt.Fprintf(w, "  |%s|\n", asc)
	}
}

func printDumpInfo(w io.Writer, path string, in coredump.Info) {
	t := newTable(w)
	format := in.Format
	if in.Flattened {
		format += " (makedumpfile flattened stream)"
	}
	fmt.Fprintf(t, "File:\t%s\n", path)
	fmt.Fprintf(t, "Format:\t%s\n", format)
	fmt.Fprintf(t, "Compression:\t%s\n", in.Compression)
	fmt.Fprintf(t, "Page size:\t%d\n", in.PageSize)
	fmt.Fprintf(t, "Pages:\t%d (%s)\n", in.Pages, sizeString(in.Pages*uint64(in.PageSize)))
	for i, e := range in.Extents {
		label := ""
		if i == 0 {
			label = "Memory:"
		}
		fmt.Fprintf(t, "%s\t%#x-%#x (%s)\n", label, e.Addr, e.End(), sizeString(e.Size))
	}
	for i, h := range in.Holes {
		label := ""
		if i == 0 {
			label = "Holes:"
		}
		fmt.Fprintf(t, "%s\t%#x-%#x (%s)\n", label, h.Addr, h.End(), sizeString(h.Size))
	}
	if in.OSRelease != "" {
		fmt.Fprintf(t, "OS release:\t%s\n", in.OSRelease)
	}
	for i, n := range in.Notes {
		label := ""
		if i == 0 {
			label = "Notes:"
		}
		extra := ""
		if p := n.PRStatus; p != nil {
			extra = fmt.Sprintf(", pid %d rip %#x rsp %#x", p.PID, p.RIP, p.RSP)
		}
		fmt.Fprintf(t, "%s\t%s %s (%d bytes%s)\n", label, n.Name, n.What, n.Size, extra)
	}
	_ = t.Flush()
}

func sizeString(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
