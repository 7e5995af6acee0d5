// Package linuxguest builds the project's Linux test guest from installed
// Debian packages: the kernel of linux-image-cloud-amd64 as installed, and
// a small gzip'd newc initramfs holding busybox (busybox-static), the few
// modules the guest needs with their dependencies, and an init that sets
// up the console protocol of init.go. Nothing it builds is committed; the
// tests build it once per test binary run (linuxguesttest). See
// docs/guest.md.
package linuxguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vmledger/vmledger/domains"
)

// Defaults: where Debian puts what the packages install.
const (
	DefaultKernelGlob = "/boot/vmlinuz-*-cloud-amd64"
	DefaultModulesDir = "/lib/modules" // + /<release>
	DefaultBusybox    = "/bin/busybox"

	// InitrdName is the built initramfs's file name in the build directory.
	InitrdName = "initrd.gz"
)

// Options choose the inputs; zero values take the defaults.
type Options struct {
	Kernel     string   // a bzImage named vmlinuz-<release>; default: the newest DefaultKernelGlob
	ModulesDir string   // default DefaultModulesDir/<release>
	Busybox    string   // a statically linked busybox; default DefaultBusybox
	Modules    []string // default DefaultModules
}

// Image is a built guest: what a config's os section needs.
type Image struct {
	Kernel  string   // the kernel as installed
	Initrd  string   // the built initramfs
	Cmdline string   // DefaultCmdline
	Release string   // the kernel release, e.g. 6.1.0-57-cloud-amd64
	Modules []string // module files in load order, relative to the modules dir
}

// OS is the config section that boots img.
func (img Image) OS() *domains.OS {
	return &domains.OS{Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: img.Cmdline}
}

// Build builds the guest from the defaults into dir (created if missing).
func Build(ctx context.Context, dir string) (Image, error) {
	return BuildWith(ctx, dir, Options{})
}

// BuildWith builds the guest from opts into dir. The initramfs is written
// under a temporary name and renamed into place, so a reader never sees a
// half-written one; the same inputs give the same bytes.
func BuildWith(ctx context.Context, dir string, opts Options) (Image, error) {
	kernel, err := findKernel(opts.Kernel)
	if err != nil {
		return Image{}, err
	}
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	modDir := opts.ModulesDir
	if modDir == "" {
		modDir = filepath.Join(DefaultModulesDir, release)
	}
	bb := opts.Busybox
	if bb == "" {
		bb = DefaultBusybox
	}
	want := opts.Modules
	if want == nil {
		want = DefaultModules
	}
	deps, err := readDepTable(modDir)
	if err != nil {
		return Image{}, err
	}
	mods, err := deps.resolve(want)
	if err != nil {
		return Image{}, err
	}
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	archive, err := initramfs(ctx, bb, modDir, mods)
	if err != nil {
		return Image{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("linuxguest: %w", err)
	}
	initrd, err := filepath.Abs(filepath.Join(dir, InitrdName))
	if err != nil {
		return Image{}, fmt.Errorf("linuxguest: %w", err)
	}
	if err := writeAtomic(initrd, archive); err != nil {
		return Image{}, err
	}
	return Image{Kernel: kernel, Initrd: initrd, Cmdline: DefaultCmdline, Release: release, Modules: mods}, nil
}

// findKernel returns the kernel to boot: the one given, or the newest
// installed cloud kernel.
func findKernel(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("linuxguest: kernel: %w", err)
		}
		if !strings.HasPrefix(filepath.Base(given), "vmlinuz-") {
			return "", fmt.Errorf("linuxguest: kernel %s: the file name must be vmlinuz-<release>", given)
		}
		return filepath.Abs(given)
	}
	found, err := filepath.Glob(DefaultKernelGlob)
	if err != nil {
		return "", fmt.Errorf("linuxguest: %w", err)
	}
	if len(found) == 0 {
		return "", fmt.Errorf("linuxguest: no %s: install linux-image-cloud-amd64: %w", DefaultKernelGlob, os.ErrNotExist)
	}
	slices.SortFunc(found, compareVersions)
	return found[len(found)-1], nil
}

// compareVersions orders vmlinuz-6.1.0-9 before vmlinuz-6.1.0-10: runs of
// digits compare as numbers.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// checkStatic refuses a dynamically linked busybox: the initramfs has no
// libc (Debian's busybox package is dynamic, busybox-static is not).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("linuxguest: busybox %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("linuxguest: busybox %s is dynamically linked: install busybox-static", path)
		}
	}
	return nil
}

// initramfs assembles the gzip'd archive in memory (a few MiB).
func initramfs(ctx context.Context, busybox, modDir string, mods []string) ([]byte, error) {
	if err := checkStatic(busybox); err != nil {
		return nil, err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	entries := []entry{
		{name: "bin", mode: modeDir | 0o755},
		{name: "bin/busybox", mode: modeFile | 0o755, data: bb},
		{name: "bin/sh", mode: modeSymlink | 0o777, data: []byte("busybox")},
		{name: "sbin", mode: modeDir | 0o755},
		{name: "dev", mode: modeDir | 0o755},
		// The kernel opens /dev/console for init's stdio before init runs.
		{name: "dev/console", mode: modeCharDev | 0o600, major: 5, minor: 1},
		{name: "etc", mode: modeDir | 0o755},
		{name: "etc/acpi", mode: modeDir | 0o755},
		{name: "etc/acpi/power", mode: modeFile | 0o755, data: []byte(acpiPower)},
		{name: "etc/acpid.conf", mode: modeFile | 0o644, data: []byte(acpidConf)},
		{name: "etc/adjtime", mode: modeFile | 0o644, data: []byte(adjtime)},
		{name: "lib", mode: modeDir | 0o755},
		{name: "lib/modules", mode: modeDir | 0o755},
		{name: "root", mode: modeDir | 0o700},
	}
	seen := map[string]bool{}
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base := shellBase(m)
		if seen[base] {
			return nil, fmt.Errorf("linuxguest: two modules named %s", base)
		}
		seen[base] = true
		b, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			return nil, fmt.Errorf("linuxguest: module: %w", err)
		}
		entries = append(entries, entry{name: "lib/modules/" + base, mode: modeFile | 0o644, data: b})
	}
	entries = append(entries, entry{name: "init", mode: modeFile | 0o755, data: []byte(initScript(mods))})

	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	cw := &cpioWriter{w: zw}
	for _, e := range entries {
		if err := cw.add(e); err != nil {
			return nil, fmt.Errorf("linuxguest: initramfs: %w", err)
		}
	}
	if err := cw.close(); err != nil {
		return nil, fmt.Errorf("linuxguest: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("linuxguest: initramfs: %w", err)
	}
	return out.Bytes(), nil
}

// writeAtomic writes b to path through a synced temporary file.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".initrd-*")
	if err != nil {
		return fmt.Errorf("linuxguest: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("linuxguest: write %s: %w", path, err)
	}
	return nil
}
