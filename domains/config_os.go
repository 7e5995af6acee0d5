package domains

import (
	"fmt"
	"slices"
	"strings"
)

// OS is direct kernel boot, libvirt's <os><kernel/><initrd/><cmdline/>:
// QEMU loads the kernel and initramfs from host files itself (no
// bootloader, no disk needed), which is how the project's Linux test guest
// boots (docs/guest.md).
type OS struct {
	Kernel  string `json:"kernel,omitempty"`  // host path to a bzImage
	Initrd  string `json:"initrd,omitempty"`  // host path to an initramfs; needs kernel
	Cmdline string `json:"cmdline,omitempty"` // the kernel command line; needs kernel
}

// Features that a config may ask for, as libvirt's <features>.
const (
	// FeatureVMCOREINFO adds QEMU's vmcoreinfo device: a Linux guest with
	// qemu_fw_cfg loaded publishes its VMCOREINFO note there, and QEMU puts
	// it into dump-guest-memory's output, so dump readers (crash,
	// makedumpfile) know the kernel's layout.
	FeatureVMCOREINFO = "vmcoreinfo"
)

var knownFeatures = []string{FeatureVMCOREINFO}

const (
	// MaxCmdline is x86 Linux's COMMAND_LINE_SIZE less its NUL; the
	// kernel would truncate a longer line silently.
	MaxCmdline = 2047
)

// problems lists what is wrong with a direct kernel boot section. Paths
// follow the disk path rules (absolute, no commas or control characters);
// the command line is printable ASCII only, so a log line or QEMU's
// parser cannot be confused by it.
func (o *OS) problems() []string {
	if o == nil {
		return nil
	}
	var p []string
	add := func(f string, a ...any) { p = append(p, fmt.Sprintf(f, a...)) }
	for _, f := range []struct{ name, path string }{{"os.kernel", o.Kernel}, {"os.initrd", o.Initrd}} {
		if f.path == "" {
			continue
		}
		if len(f.path) > MaxPath || strings.ContainsFunc(f.path, badPathRune) || !strings.HasPrefix(f.path, "/") {
			add("%s %.64q: must be an absolute path of at most %d bytes without commas or control characters", f.name, f.path, MaxPath)
		}
	}
	if o.Kernel == "" && (o.Initrd != "" || o.Cmdline != "") {
		add("os: initrd and cmdline need a kernel")
	}
	if len(o.Cmdline) > MaxCmdline {
		add("os.cmdline: %d bytes, at most %d", len(o.Cmdline), MaxCmdline)
	} else if strings.ContainsFunc(o.Cmdline, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		add("os.cmdline: printable ASCII only (no control characters or newlines)")
	}
	return p
}

// featureProblems refuses unknown and repeated features.
func featureProblems(fs []string) []string {
	var p []string
	for i, f := range fs {
		switch {
		case !slices.Contains(knownFeatures, f):
			p = append(p, fmt.Sprintf("features[%d] %.64q: unknown (known: %s)", i, f, strings.Join(knownFeatures, ", ")))
		case slices.Index(fs, f) != i:
			p = append(p, fmt.Sprintf("features[%d] %q: duplicate", i, f))
		}
	}
	return p
}

// HasFeature reports whether the config asks for feature f.
func (c Config) HasFeature(f string) bool { return slices.Contains(c.Features, f) }

// cloneOS is Clone's part for the fields of this file.
func (c *Config) cloneOS() {
	if c.OS != nil {
		o := *c.OS
		c.OS = &o
	}
	if len(c.Features) == 0 {
		c.Features = nil
	} else {
		c.Features = slices.Clone(c.Features)
	}
}
