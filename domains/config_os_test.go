package domains_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// Direct kernel boot and features are validated like disk paths, with
// bounded lengths; each bad field is named.
func TestValidateOS(t *testing.T) {
	linux := &domains.OS{Kernel: "/boot/vmlinuz", Initrd: "/var/lib/vm/initrd.gz", Cmdline: "console=ttyS0 quiet"}
	tests := []struct {
		name     string
		os       *domains.OS
		features []string
		want     string // "" means valid
	}{
		{name: "none"},
		{name: "kernel only", os: &domains.OS{Kernel: "/boot/vmlinuz"}},
		{name: "full", os: linux, features: []string{domains.FeatureVMCOREINFO}},
		{name: "longest cmdline", os: &domains.OS{Kernel: "/k", Cmdline: strings.Repeat("a", domains.MaxCmdline)}},
		{name: "relative kernel", os: &domains.OS{Kernel: "boot/vmlinuz"}, want: "os.kernel"},
		{name: "comma in initrd", os: &domains.OS{Kernel: "/k", Initrd: "/a,b"}, want: "os.initrd"},
		{name: "control char in kernel", os: &domains.OS{Kernel: "/k\n"}, want: "os.kernel"},
		{name: "kernel path too long", os: &domains.OS{Kernel: "/" + strings.Repeat("k", 4096)}, want: "at most 4095 bytes"},
		{name: "initrd without kernel", os: &domains.OS{Initrd: "/i"}, want: "need a kernel"},
		{name: "cmdline without kernel", os: &domains.OS{Cmdline: "quiet"}, want: "need a kernel"},
		{name: "cmdline too long", os: &domains.OS{Kernel: "/k", Cmdline: strings.Repeat("a", domains.MaxCmdline+1)}, want: "at most 2047"},
		{name: "newline in cmdline", os: &domains.OS{Kernel: "/k", Cmdline: "quiet\ninit=/x"}, want: "printable ASCII"},
		{name: "non-ASCII cmdline", os: &domains.OS{Kernel: "/k", Cmdline: "é"}, want: "printable ASCII"},
		{name: "unknown feature", features: []string{"smm"}, want: `features[0] "smm": unknown`},
		{name: "duplicate feature", features: []string{"vmcoreinfo", "vmcoreinfo"}, want: "features[1]"},
		{name: "too many features", features: make([]string, 65), want: "too many features"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := minimalConfig()
			c.OS, c.Features = tt.os, tt.features
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, tt.want)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes: unbounded echo of the input", len(err.Error()))
			}
		})
	}
}

func TestCloneOS(t *testing.T) {
	orig := minimalConfig()
	orig.OS = &domains.OS{Kernel: "/k", Cmdline: "quiet"}
	orig.Features = []string{domains.FeatureVMCOREINFO}
	want, _ := json.Marshal(orig)
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone differs:\n%+v\n%+v", c, orig)
	}
	c.OS.Kernel = "/other"
	c.Features[0] = "x"
	if got, _ := json.Marshal(orig); string(got) != string(want) {
		t.Fatalf("mutating the clone changed the original:\n%s\n%s", want, got)
	}
	if !orig.HasFeature(domains.FeatureVMCOREINFO) || c.HasFeature(domains.FeatureVMCOREINFO) {
		t.Error("HasFeature")
	}
}
