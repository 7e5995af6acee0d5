package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/domains"
)

// Accelerators.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// DefaultBinary is looked up on PATH when Options.Binary is empty.
const DefaultBinary = "qemu-system-x86_64"

// Options configure a Driver.
type Options struct {
	// RunDir holds one directory per running domain (<RunDir>/<uuid>/):
	// sockets, pid file, QEMU's log and the guest RAM file. It must be
	// short: unix socket paths are limited to 107 bytes.
	RunDir string
	// Binary is the QEMU executable; default DefaultBinary on PATH.
	Binary string
	// Accel is "auto" (default: KVM when /dev/kvm opens read-write, else
	// TCG), "kvm" (fail at New when KVM is unusable) or "tcg".
	Accel string
	// Protected are directories no guest disk may point into (the agent's
	// state directory: its event log). RunDir is always protected: it holds
	// every guest's RAM file and sockets.
	Protected []string
	// User, if set, is the unprivileged user QEMU runs as (user.go): the
	// run directory and the files the driver makes in it are its.
	User string
	Log  zerolog.Logger
}

// Driver starts and re-attaches QEMU guests. It holds no per-guest state:
// everything it needs to find a guest again is in the guest's run directory.
type Driver struct {
	runDir    string
	protected []string
	user      runAs // user.go
	binary    string
	accel     string
	log       zerolog.Logger
}

var _ domains.Driver = (*Driver)(nil)

// kvmDevice is what QEMU opens for -accel kvm.
const kvmDevice = "/dev/kvm"

// New checks the options: the run directory is created (0700), the binary
// must exist, and the accelerator is resolved once, here, so that every
// guest of this driver uses the same one and the logs say which.
func New(o Options) (*Driver, error) {
	if o.RunDir == "" {
		return nil, errors.New("qemu: Options.RunDir is required")
	}
	runDir, err := filepath.Abs(o.RunDir)
	if err != nil {
		return nil, fmt.Errorf("qemu: run dir: %w", err)
	}
	if err := checkPath(runDir); err != nil {
		return nil, fmt.Errorf("qemu: run dir: %w", err)
	}
	// The longest socket path is <runDir>/<36-char uuid>/serial.sock.
	if n := len(runDir) + 1 + 36 + len("/serial.sock"); n >= maxSocketPath {
		return nil, fmt.Errorf("qemu: run dir %q is too long: socket paths would be %d bytes, the limit is %d", runDir, n, maxSocketPath-1)
	}
	as, err := lookupUser(o.User)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: run dir: %w", err)
	}
	if err := as.give(runDir); err != nil {
		return nil, err
	}
	bin := o.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("qemu: binary: %w", err)
	}
	accel, err := resolveAccel(o.Accel, kvmDevice)
	if err != nil {
		return nil, err
	}
	d := &Driver{runDir: runDir, binary: path, accel: accel, log: o.Log, user: as}
	for _, dir := range append([]string{runDir}, o.Protected...) {
		if abs, err := filepath.Abs(dir); err == nil {
			d.protected = append(d.protected, filepath.Clean(abs))
		}
	}
	d.log.Info().Str("accel", accel).Str("requested", o.Accel).Str("binary", path).
		Str("run_dir", runDir).Msg("qemu driver ready")
	return d, nil
}

// Version runs the binary with -version and returns QEMU's first line
// ("QEMU emulator version 7.2.22 ..."). New only finds the binary; this
// proves it is a QEMU that runs, which the agent checks once at start.
func (d *Driver) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, d.binary, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu: %s -version: %w", d.binary, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	if !strings.HasPrefix(line, "QEMU emulator version ") {
		if len(line) > 80 {
			line = line[:80]
		}
		return "", fmt.Errorf("qemu: %s is not QEMU: -version says %q", d.binary, line)
	}
	return line, nil
}

// Accel is the accelerator every guest of this driver uses: "kvm" or "tcg".
func (d *Driver) Accel() string { return d.accel }

// RunDir is the absolute run directory.
func (d *Driver) RunDir() string { return d.runDir }

// Paths returns where the files of domain id live.
func (d *Driver) Paths(id uuid.UUID) Paths { return PathsFor(d.runDir, id) }

// ConsolePath is the serial console socket of domain id (see OpenConsole).
func (d *Driver) ConsolePath(id uuid.UUID) string { return d.Paths(id).Serial }

// resolveAccel turns the requested accelerator into kvm or tcg. KVM counts
// as usable only if the device opens read-write: that is what QEMU needs,
// and merely existing (e.g. without group membership) is not enough.
func resolveAccel(want, dev string) (string, error) {
	switch want {
	case "", AccelAuto:
		if kvmUsable(dev) == nil {
			return AccelKVM, nil
		}
		return AccelTCG, nil
	case AccelKVM:
		if err := kvmUsable(dev); err != nil {
			return "", fmt.Errorf("qemu: accel kvm requested but %s is unusable: %w", dev, err)
		}
		return AccelKVM, nil
	case AccelTCG:
		return AccelTCG, nil
	}
	return "", fmt.Errorf("qemu: accel %q: must be auto, kvm or tcg", want)
}

func kvmUsable(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	return unix.Close(fd)
}
