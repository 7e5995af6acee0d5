package qemu

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// maxSocketPath is sizeof(sockaddr_un.sun_path): a socket path must be
// shorter, leaving room for the terminating NUL.
const maxSocketPath = 108

// rtcBaseLayout is the datetime form -rtc base= accepts.
const rtcBaseLayout = "2006-01-02T15:04:05"

// Paths are the files of one domain under the run directory.
type Paths struct {
	Dir       string // <RunDir>/<uuid>, mode 0700
	QMP       string // QMP monitor socket
	Serial    string // COM1 console socket
	SerialLog string // console log, when Config.Serial.Log
	RAM       string // guest RAM (memory-backend-file)
	PID       string // written by QEMU (-pidfile); Attach reads it
	Log       string // QEMU's stdout and stderr
}

// PathsFor lays out the run directory of domain id.
func PathsFor(runDir string, id uuid.UUID) Paths {
	dir := filepath.Join(runDir, id.String())
	return Paths{
		Dir:       dir,
		QMP:       filepath.Join(dir, "qmp.sock"),
		Serial:    filepath.Join(dir, "serial.sock"),
		SerialLog: filepath.Join(dir, "serial.log"),
		RAM:       filepath.Join(dir, "guest.ram"),
		PID:       filepath.Join(dir, "qemu.pid"),
		Log:       filepath.Join(dir, "qemu.log"),
	}
}

// CommandLine returns QEMU's arguments (without the program name) for
// spec. It is a pure function of its inputs, so the exact command line is
// pinned by golden files and reviewable in one place (docs/qemu.md explains
// every option). now only matters for a variable clock, whose RTC base is
// the UTC time now plus spec.ClockBase.
func CommandLine(spec domains.StartSpec, p Paths, accel string, now time.Time) ([]string, error) {
	cfg := spec.Config.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if accel != AccelKVM && accel != AccelTCG {
		return nil, fmt.Errorf("qemu: accel %q: must be kvm or tcg", accel)
	}
	for _, f := range []string{p.Dir, p.QMP, p.Serial, p.SerialLog, p.RAM, p.PID} {
		if err := checkPath(f); err != nil {
			return nil, err
		}
	}
	for _, s := range []string{p.QMP, p.Serial} {
		if len(s) >= maxSocketPath {
			return nil, fmt.Errorf("qemu: socket path %q is %d bytes, the limit is %d: use a shorter run directory", s, len(s), maxSocketPath-1)
		}
	}
	rtc, err := rtcOption(cfg.Clock, spec.ClockBase, now)
	if err != nil {
		return nil, err
	}

	var a argv
	a.add("-name", "guest="+cfg.Name+",debug-threads=on")
	a.add("-uuid", cfg.UUID.String())
	a.add("-S") // configure and check before any guest instruction runs
	a.add("-nodefaults", "-no-user-config")
	a.add("-display", "none")
	a.add("-sandbox", Sandbox) // seccomp (user.go)
	a.add("-machine", fmt.Sprintf("%s,accel=%s,memory-backend=ram0", cfg.Machine, accel))
	a.add("-object", fmt.Sprintf("memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=on", cfg.MemoryMiB, esc(p.RAM)))
	a.add("-smp", fmt.Sprint(cfg.VCPUs))
	a.add("-m", memOption(cfg))
	a.add("-qmp", "unix:"+esc(p.QMP)+",server=on,wait=off")
	serial := "socket,id=serial0,path=" + esc(p.Serial) + ",server=on,wait=off"
	if cfg.Serial != nil && cfg.Serial.Log {
		serial += ",logfile=" + esc(p.SerialLog) + ",logappend=on"
	}
	a.add("-chardev", serial)
	a.add("-serial", "chardev:serial0")
	a.add("-device", "pvpanic")
	a.add("-pidfile", p.PID) // a plain file name, not a QemuOpts string: no escaping
	// on_crash destroy: QEMU ends by itself on a panic. Any other policy
	// needs QEMU kept in guest-panicked, RAM intact, for the agent to act.
	if cfg.KeepsPanicked() {
		a.add("-action", "panic=pause")
	} else {
		a.add("-action", "panic=shutdown")
	}
	a.add("-rtc", rtc)

	addOS(&a, cfg)
	if err := addDisks(&a, cfg); err != nil {
		return nil, err
	}
	if err := addNICs(&a, cfg.NICs); err != nil {
		return nil, err
	}
	addDevices(&a, cfg.Devices)
	addDIMMs(&a, cfg, p)
	addPorts(&a, cfg, p)
	return a, nil
}

// rtcOption maps the clock to -rtc. utc and localtime are left to QEMU, so
// that the guest's RTC follows the host's own zone rules (DST included);
// for localtime, ClockBase (the zone offset at start) is only recorded by
// the caller, as the reference RTC_CHANGE offsets are relative to. A
// variable clock is pinned to an absolute start time instead.
func rtcOption(k domains.Clock, base int64, now time.Time) (string, error) {
	switch k.Offset {
	case domains.OffsetUTC:
		if base != 0 {
			return "", fmt.Errorf("qemu: clock offset utc with base %d: the base of a utc clock is 0", base)
		}
		return "base=utc", nil
	case domains.OffsetLocaltime:
		return "base=localtime", nil
	case domains.OffsetVariable:
		t := now.UTC().Add(time.Duration(base) * time.Second)
		if y := t.Year(); y < 1900 || y > 9999 {
			return "", fmt.Errorf("qemu: variable clock base %d puts the RTC in year %d", base, y)
		}
		return "base=" + t.Format(rtcBaseLayout), nil
	}
	return "", fmt.Errorf("qemu: clock offset %q: must be utc, localtime or variable", k.Offset)
}

// argv collects arguments.
type argv []string

func (a *argv) add(s ...string) { *a = append(*a, s...) }

// esc escapes a value for QEMU's option parsers (QemuOpts and keyval),
// where a comma separates options and ",," stands for a literal comma.
func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// checkPath refuses what QEMU's parsers or a log line could misread. Commas
// are fine (esc), control characters never are.
func checkPath(p string) error {
	if p == "" {
		return errors.New("qemu: empty path")
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("qemu: path %q: must be absolute", p)
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("qemu: path %q: control characters are not allowed", p)
	}
	// -qmp unix:PATH,... takes PATH as an unnamed first option, which
	// QEMU's option parser ends at the first '=' (doubling cannot escape it).
	if strings.ContainsRune(p, '=') {
		return fmt.Errorf("qemu: path %q: '=' is not allowed (QEMU's option syntax)", p)
	}
	return nil
}
