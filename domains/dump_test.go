package domains_test

import (
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

func TestDumpOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    domains.DumpOptions
		want string // "" valid, else a part of the error
	}{
		{domains.DumpOptions{Path: "/d/x", Format: "elf"}, ""},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-zstd", Flattened: true, After: "reset"}, ""},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-zlib", ViaQEMU: true, After: "crash"}, ""},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-zlib", ViaQEMU: true, After: "live"}, "cannot be live"},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-lzo"}, "format"},
		{domains.DumpOptions{Path: "/d/x", Format: "elf", Flattened: true}, "flattened"},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-zstd", ViaQEMU: true}, "via_qemu"},
		{domains.DumpOptions{Path: "/d/x", Format: "kdump-zlib", ViaQEMU: true, Flattened: true}, "via_qemu"},
		{domains.DumpOptions{Path: "/d/x", Format: "elf", After: "reboot"}, "after"},
		{domains.DumpOptions{Path: "", Format: "elf"}, "path"},
		{domains.DumpOptions{Path: "/d/\nx", Format: "elf"}, "path"},
	} {
		err := tc.o.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.o, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || domains.CodeOf(err) != domains.CodeInvalid):
			t.Errorf("%+v: error %v, want an invalid error naming %s", tc.o, err, tc.want)
		}
	}
}

func TestOnCrashConfig(t *testing.T) {
	for _, tc := range []struct {
		v     string
		ok    bool
		keeps bool
	}{
		{"", true, false}, {"destroy", true, false}, {"restart", true, true}, {"preserve", true, true},
		{"coredump-destroy", true, true}, {"coredump-restart", true, true}, {"reboot", false, false}, {"Destroy", false, false},
	} {
		c := minimalConfig()
		c.OnCrash = tc.v
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "on_crash")) {
			t.Errorf("on_crash %q: %v", tc.v, err)
		}
		if tc.ok && c.KeepsPanicked() != tc.keeps {
			t.Errorf("on_crash %q: KeepsPanicked %v", tc.v, c.KeepsPanicked())
		}
	}
}
