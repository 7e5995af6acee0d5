package linuxguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeModules lays out a fake modules directory.
func writeModules(t *testing.T, dep, builtin string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range map[string]string{"modules.dep": dep, "modules.builtin": builtin} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("module "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Dependencies come first, each once, in modprobe's order (modules.dep
// lists the closure with the last to load first); built-in modules are
// skipped; '-' and '_' name the same module.
func TestResolve(t *testing.T) {
	dep := `kernel/v/virtio_ring.ko:
kernel/v/virtio.ko:
kernel/v/virtio_pci_modern_dev.ko:
kernel/v/virtio_pci.ko: kernel/v/virtio_pci_modern_dev.ko kernel/v/virtio.ko kernel/v/virtio_ring.ko
kernel/b/virtio_blk.ko: kernel/v/virtio.ko kernel/v/virtio_ring.ko
kernel/p/pvpanic.ko:
kernel/p/pvpanic-mmio.ko: kernel/p/pvpanic.ko
kernel/x/direct.ko: kernel/x/mid.ko
kernel/x/mid.ko: kernel/x/leaf.ko
kernel/x/leaf.ko:
kernel/x/loop-a.ko: kernel/x/loop-b.ko
kernel/x/loop-b.ko: kernel/x/loop-a.ko
`
	tab, err := readDepTable(writeModules(t, dep, "kernel/a/button.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names []string
		want  []string
		err   string
	}{
		{names: []string{"virtio_pci", "virtio_blk"}, want: []string{
			"kernel/v/virtio_ring.ko", "kernel/v/virtio.ko", "kernel/v/virtio_pci_modern_dev.ko", "kernel/v/virtio_pci.ko", "kernel/b/virtio_blk.ko"}},
		{names: []string{"pvpanic_mmio", "pvpanic-mmio", "button"}, want: []string{"kernel/p/pvpanic.ko", "kernel/p/pvpanic-mmio.ko"}},
		{names: []string{"direct"}, want: []string{"kernel/x/leaf.ko", "kernel/x/mid.ko", "kernel/x/direct.ko"}}, // direct deps only: recursion
		{names: []string{"nosuch"}, err: "neither in modules.dep nor built in"},
		{names: []string{"loop_a"}, err: "dependency loop"},
	}
	for _, tt := range tests {
		got, err := tab.resolve(tt.names)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%v) = %v, %v; want error %q", tt.names, got, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("resolve(%v) = %v, %v\nwant %v", tt.names, got, err, tt.want)
		}
	}
	if _, err := readDepTable(writeModules(t, "kernel/a.ko.xz:\n", "")); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Errorf("compressed modules: err %v", err)
	}
	if _, err := readDepTable(writeModules(t, "no colon\n", "")); err == nil || !strings.Contains(err.Error(), "modules.dep:1") {
		t.Errorf("bad line: err %v", err)
	}
}

// The archive is read by an independent reader (GNU cpio, as the kernel
// would), holds what init needs, and is the same bytes for the same inputs.
func TestInitramfsArchive(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but cpio is not installed")
		}
		t.Skip("cpio not installed")
	}
	bb := staticBusybox(t)
	mods := writeModules(t, "kernel/a/virtio.ko:\nkernel/b/virtio_pci.ko: kernel/a/virtio.ko\n", "", "kernel/a/virtio.ko", "kernel/b/virtio_pci.ko")
	opts := Options{Kernel: fakeKernel(t), ModulesDir: mods, Busybox: bb, Modules: []string{"virtio_pci"}}
	dir := t.TempDir()
	img, err := BuildWith(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Release != "9.9.9-test" || !slices.Equal(img.Modules, []string{"kernel/a/virtio.ko", "kernel/b/virtio_pci.ko"}) {
		t.Fatalf("image %+v", img)
	}
	raw := gunzip(t, img.Initrd)
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	names := strings.Fields(string(out))
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/acpi/power", "etc/acpid.conf",
		"etc/adjtime", "lib/modules/virtio.ko", "lib/modules/virtio_pci.ko"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	// Extract init and check it loads the modules in order.
	x := t.TempDir()
	cmd = exec.Command("cpio", "-id", "--quiet", "init")
	cmd.Dir, cmd.Stdin = x, bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v %s", err, out)
	}
	init, err := os.ReadFile(filepath.Join(x, "init"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(init)
	i, j := strings.Index(s, "insmod /lib/modules/virtio.ko"), strings.Index(s, "insmod /lib/modules/virtio_pci.ko")
	if i < 0 || j < i || !strings.Contains(s, ReadyPrefix) || !strings.Contains(s, "acpid") {
		t.Fatalf("init:\n%s", s)
	}
	again, err := BuildWith(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gunzip(t, again.Initrd), raw) {
		t.Error("two builds from the same inputs differ")
	}
}

// Missing or unusable inputs give clear errors; a missing package is
// os.ErrNotExist (what linuxguesttest skips on outside CI).
func TestBuildRefuses(t *testing.T) {
	mods := writeModules(t, "kernel/a/virtio.ko:\n", "", "kernel/a/virtio.ko")
	dynamic := "/bin/true" // dynamically linked on Debian
	tests := []struct {
		name     string
		opts     Options
		want     string
		notExist bool
	}{
		{"no kernel", Options{Kernel: "/nonexistent/vmlinuz-1", ModulesDir: mods}, "kernel", true},
		{"kernel name", Options{Kernel: dynamic, ModulesDir: mods}, "vmlinuz-<release>", false},
		{"no modules dir", Options{Kernel: fakeKernel(t), ModulesDir: "/nonexistent"}, "modules.dep", true},
		{"unknown module", Options{Kernel: fakeKernel(t), ModulesDir: mods, Modules: []string{"zzz"}}, "zzz", false},
		{"dynamic busybox", Options{Kernel: fakeKernel(t), ModulesDir: mods, Busybox: dynamic, Modules: []string{}}, "busybox-static", false},
		{"no busybox", Options{Kernel: fakeKernel(t), ModulesDir: mods, Busybox: "/nonexistent/busybox", Modules: []string{}}, "busybox", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := BuildWith(context.Background(), dir, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, os.ErrNotExist) != tt.notExist {
				t.Fatalf("err %v, want one containing %q (not-exist %v)", err, tt.want, tt.notExist)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("a refused build left %d files", len(ents))
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BuildWith(ctx, t.TempDir(), Options{Kernel: fakeKernel(t), ModulesDir: mods, Modules: []string{"virtio"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
}

func TestParseHwclock(t *testing.T) {
	tests := []struct {
		line string
		want time.Time
		err  bool
	}{
		{"HWCLOCK Tue Jan  1 00:00:05 2030  0.000000 seconds", time.Date(2030, 1, 1, 0, 0, 5, 0, time.UTC), false},
		{"HWCLOCK Mon Dec 31 23:59:59 2029  0.000000 seconds", time.Date(2029, 12, 31, 23, 59, 59, 0, time.UTC), false},
		{"HWCLOCK Tue Jan  1 00:00:05 2030", time.Date(2030, 1, 1, 0, 0, 5, 0, time.UTC), false},
		{"HWCLOCK hwclock: can't open '/dev/misc/rtc': No such file", time.Time{}, true},
		{"RTC 2030-01-01 00:00:00", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseHwclock(tt.line)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("ParseHwclock(%q) = %v, %v", tt.line, got, err)
		}
	}
	set := SetRTCCommand(time.Date(2030, 1, 1, 5, 30, 0, 0, time.FixedZone("IST", 19800)))
	if set != "date -s '2030-01-01 00:00:00' && hwclock -w" {
		t.Errorf("SetRTCCommand = %q", set)
	}
}

func TestCompareVersions(t *testing.T) {
	in := []string{"vmlinuz-6.1.0-10-cloud-amd64", "vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.10.0-1-cloud-amd64", "vmlinuz-6.1.0-57-cloud-amd64"}
	slices.SortFunc(in, compareVersions)
	want := []string{"vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-10-cloud-amd64", "vmlinuz-6.1.0-57-cloud-amd64", "vmlinuz-6.10.0-1-cloud-amd64"}
	if !slices.Equal(in, want) {
		t.Errorf("sorted %v, want %v", in, want)
	}
}

func staticBusybox(t *testing.T) string {
	t.Helper()
	if err := checkStatic(DefaultBusybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return DefaultBusybox
}

func fakeKernel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmlinuz-9.9.9-test")
	if err := os.WriteFile(p, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
