package linuxguest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultModules are the modules the guest loads, by name ('-' and '_'
// are the same, as for modprobe). Their dependencies come from
// modules.dep. Modules built into the kernel (modules.builtin) are
// skipped, so the list holds across kernel configurations.
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", // disks, NICs, consoles on PCI
	"button", "evdev", // the ACPI power button, as an input event acpid reads
	"pvpanic_mmio", "pvpanic_pci", // ISA pvpanic (ACPI QEMU0001) and pvpanic-pci
	"qemu_fw_cfg", // fw_cfg: publishes VMCOREINFO for -device vmcoreinfo
	"virtio_mem",  // virtio-mem memory hot(un)plug
}

// PCI and ACPI memory hotplug need no modules in Debian's cloud kernel
// (HOTPLUG_PCI_ACPI, HOTPLUG_PCI_PCIE and ACPI_HOTPLUG_MEMORY are built
// in); DefaultCmdline onlines hotplugged memory as movable so it can be
// unplugged again.

// modName is a module's canonical name: its file name without .ko, with
// '-' as '_'.
func modName(file string) string {
	base := path.Base(file)
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// depTable is a kernel's modules.dep and modules.builtin.
type depTable struct {
	file    map[string]string   // name -> path relative to the modules dir
	deps    map[string][]string // name -> names it needs, as modules.dep lists them
	builtin map[string]bool
}

func readDepTable(modDir string) (*depTable, error) {
	t := &depTable{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("linuxguest: %s/modules.dep:%d: no ':'", modDir, line)
		}
		if strings.HasSuffix(mod, ".ko.xz") || strings.HasSuffix(mod, ".ko.zst") || strings.HasSuffix(mod, ".ko.gz") {
			// Debian 12 ships plain .ko (MODULE_COMPRESS_NONE); insmod in
			// busybox could not load compressed ones without a decompressor.
			return nil, fmt.Errorf("linuxguest: %s: compressed modules are not supported", mod)
		}
		name := modName(mod)
		t.file[name] = mod
		for _, d := range strings.Fields(deps) {
			t.deps[name] = append(t.deps[name], modName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("linuxguest: modules.dep: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("linuxguest: %w", err)
	}
	for _, l := range strings.Fields(string(b)) {
		t.builtin[modName(l)] = true
	}
	return t, nil
}

// resolve returns the module files to load, dependencies first, each once.
// modules.dep lists a module's whole dependency closure with the ones to
// load last first (modprobe loads the list backwards); the walk visits
// them backwards too, and recursion covers tables that list only direct
// dependencies.
func (t *depTable) resolve(names []string) ([]string, error) {
	var order []string
	done := map[string]bool{}
	var visit func(n string, depth int) error
	visit = func(n string, depth int) error {
		if done[n] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("linuxguest: module %s: dependency loop in modules.dep", n)
		}
		file, ok := t.file[n]
		if !ok {
			if t.builtin[n] {
				done[n] = true
				return nil
			}
			return fmt.Errorf("linuxguest: module %s: neither in modules.dep nor built in", n)
		}
		deps := slices.Clone(t.deps[n])
		slices.Reverse(deps)
		for _, d := range deps {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		done[n] = true
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}
