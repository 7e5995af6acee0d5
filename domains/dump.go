package domains

import (
	"fmt"
	"strings"
)

// What a guest panic leads to (Config.OnCrash), as libvirt's <on_crash>.
const (
	CrashDestroy         = "destroy" // the default: QEMU ends, stopped (crashed)
	CrashRestart         = "restart" // stopped (crashed), then started again
	CrashPreserve        = "preserve"
	CrashCoredumpDestroy = "coredump-destroy" // a dump first, then destroy
	CrashCoredumpRestart = "coredump-restart" // a dump first, then restart
)

var crashActions = []string{CrashDestroy, CrashRestart, CrashPreserve, CrashCoredumpDestroy, CrashCoredumpRestart}

// CrashAction is the config's on_crash, with the default filled in.
func (c Config) CrashAction() string {
	if c.OnCrash == "" {
		return CrashDestroy
	}
	return c.OnCrash
}

// KeepsPanicked reports whether QEMU must stay in guest-panicked after a
// panic (RAM kept) for the agent to act, instead of ending by itself.
func (c Config) KeepsPanicked() bool { return c.CrashAction() != CrashDestroy }

func onCrashProblems(v string) []string {
	if v == "" {
		return nil
	}
	for _, a := range crashActions {
		if v == a {
			return nil
		}
	}
	return []string{fmt.Sprintf("on_crash %s: must be one of %s", Quote(v), strings.Join(crashActions, ", "))}
}

// Dump formats (the coredump package's names).
const (
	DumpELF         = "elf"
	DumpKdumpZlib   = "kdump-zlib"
	DumpKdumpSnappy = "kdump-snappy"
	DumpKdumpZstd   = "kdump-zstd"
)

// What becomes of the guest after a dump (virsh dump's flags).
const (
	DumpAfterResume = ""      // paused while taken, running again after if it ran
	DumpLive        = "live"  // not paused (the dump may be torn)
	DumpCrash       = "crash" // stopped (crashed) after
	DumpReset       = "reset" // reset after
)

// DumpOptions say what a dump writes and what becomes of the guest.
type DumpOptions struct {
	Path      string `json:"path"`
	Format    string `json:"format"`
	Flattened bool   `json:"flattened,omitempty"`
	ViaQEMU   bool   `json:"via_qemu,omitempty"`
	After     string `json:"after,omitempty"` // "" | live | crash | reset
}

// Validate checks the options on their own (not the path's place).
func (o DumpOptions) Validate() error {
	var p []string
	switch o.Format {
	case DumpELF, DumpKdumpZlib, DumpKdumpSnappy, DumpKdumpZstd:
	default:
		p = append(p, fmt.Sprintf("format %s: must be elf, kdump-zlib, kdump-snappy or kdump-zstd", Quote(o.Format)))
	}
	if o.Flattened && o.Format == DumpELF {
		p = append(p, "flattened: only kdump formats have a flattened form")
	}
	if o.ViaQEMU && (o.Flattened || (o.Format != DumpELF && o.Format != DumpKdumpZlib)) {
		p = append(p, "via_qemu: QEMU 7.2 writes only elf and plain kdump-zlib")
	}
	if o.ViaQEMU && o.After == DumpLive {
		p = append(p, "via_qemu: QEMU pauses the guest for its own dump, it cannot be live")
	}
	switch o.After {
	case DumpAfterResume, DumpLive, DumpCrash, DumpReset:
	default:
		p = append(p, fmt.Sprintf("after %s: must be live, crash or reset (or empty)", Quote(o.After)))
	}
	if o.Path == "" || len(o.Path) > MaxPath || strings.ContainsFunc(o.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		p = append(p, fmt.Sprintf("path %s: must be a path of at most %d bytes without control characters", Quote(o.Path), MaxPath))
	}
	if len(p) > 0 {
		return Errorf(CodeInvalid, "dump: %s", strings.Join(p, "; "))
	}
	return nil
}

// DumpCompleted: a dump is complete at Path (dump-completed).
type DumpCompleted struct {
	Path       string `json:"path"`
	Format     string `json:"format"`
	Bytes      uint64 `json:"bytes"`
	DurationMS uint64 `json:"duration_ms"`
}

// EventType implements Payload.
func (DumpCompleted) EventType() Type { return TypeDumpCompleted }

var dumpCompletedRow = row(TypeDumpCompleted, 2, zero[DumpCompleted],
	func(w *writer, v DumpCompleted) error {
		w.str(v.Path)
		w.str(v.Format)
		w.uvarint(v.Bytes)
		w.uvarint(v.DurationMS)
		return nil
	},
	func(r *reader, _ Type) (DumpCompleted, error) {
		return DumpCompleted{Path: r.str(), Format: r.str(), Bytes: r.uvarint(), DurationMS: r.uvarint()}, nil
	},
	nil)
