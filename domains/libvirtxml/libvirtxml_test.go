package libvirtxml

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A dumpxml of a running direct-kernel guest (runtime ids, aliases, PCI
// addresses, a seclabel of none) maps whole, and the result is a config
// the model accepts.
func TestConvertDirectKernel(t *testing.T) {
	cfg, err := Convert(readTestdata(t, "direct-kernel.xml"))
	if err != nil {
		t.Fatal(err)
	}
	want := domains.Config{
		Name: "linux1", UUID: uuid.MustParse("4b0e5a3c-9d2f-4c1e-8a7b-1f2e3d4c5b6a"),
		MemoryMiB: 512, VCPUs: 2, Machine: "pc-i440fx-7.2",
		Clock: domains.Clock{Offset: "variable", Adjustment: 3600, Basis: "localtime"},
		Disks: []domains.Disk{
			{Target: "vda", Path: "/var/lib/vmledger/images/linux1.qcow2", Format: "qcow2", Bus: "virtio", Boot: true},
			{Target: "vdb", Path: "/var/lib/vmledger/images/seed.img", Format: "raw", Bus: "virtio", ReadOnly: true},
		},
		NICs:     []domains.NIC{{ID: "net0", Model: "virtio-net-pci", MAC: "52:54:00:6b:3c:58", Mode: "user"}},
		Serial:   &domains.Serial{Log: true},
		OS:       &domains.OS{Kernel: "/boot/vmlinuz-6.1.0-28-cloud-amd64", Initrd: "/var/lib/vmledger/images/initrd.img", Cmdline: "console=ttyS0 panic=-1"},
		Features: []string{domains.FeatureVMCOREINFO},
		OnCrash:  domains.CrashCoredumpDestroy,
	}
	if got, exp := mustJSON(t, cfg), mustJSON(t, want); got != exp {
		t.Errorf("config:\n got %s\nwant %s", got, exp)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the mapped config does not validate: %v", err)
	}
}

// A virt-install guest is refused, with every item listed at once.
func TestConvertVirtInstallListsEverything(t *testing.T) {
	_, err := Convert(readTestdata(t, "virt-install.xml"))
	if domains.CodeOf(err) != domains.CodeInvalid {
		t.Fatalf("err %v, want invalid", err)
	}
	items := Unmapped(err)
	for _, want := range []string{
		"domain/currentMemory: 1024 MiB, less than <memory> 2048 MiB",
		`domain/os/boot: boot from "cdrom"`,
		"domain/features/vmport: element <vmport>",
		`domain/cpu: cpu mode "host-passthrough"`,
		`domain/clock/timer: element <timer> has no vmledger equivalent (name="rtc")`,
		`domain/clock/timer: element <timer> has no vmledger equivalent (name="pit")`,
		`domain/clock/timer: element <timer> has no vmledger equivalent (name="hpet")`,
		"domain/pm: element <pm>",
		`domain/devices/disk/driver: attribute discard="unmap"`,
		`domain/devices/disk: device "cdrom"`,
		`domain/devices/controller: attribute ports="15"`,
		`domain/devices/controller: controller type "pci" model "pcie-root-port" index 1`,
		`domain/devices/controller: controller type "virtio-serial"`,
		`domain/devices/interface: type "network"`,
		`domain/devices/channel: element <channel>`,
		`domain/devices/input: element <input> has no vmledger equivalent (type="tablet")`,
		`domain/devices/graphics: element <graphics> has no vmledger equivalent (type="vnc")`,
		"domain/devices/video: element <video>",
		`domain/devices/memballoon: element <memballoon> has no vmledger equivalent (model="virtio")`,
		`domain/devices/rng: element <rng>`,
	} {
		if !slices.ContainsFunc(items, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("the refusal does not list %q", want)
		}
	}
	if len(items) != 20 {
		t.Errorf("%d items, want 20 (nothing listed twice, nothing mappable listed):\n%s", len(items), strings.Join(items, "\n"))
	}
	if !strings.Contains(err.Error(), "20 thing(s) vmledger cannot map") {
		t.Errorf("message: %v", err)
	}
}

func TestConvertTable(t *testing.T) {
	wrap := func(inner string) string {
		return "<domain type='kvm'><name>d</name><memory unit='MiB'>64</memory>" + inner + "</domain>"
	}
	for _, tc := range []struct {
		name, xml string
		check     func(domains.Config) bool
		refused   []string // prefixes of the items; nil: must map
	}{
		{"defaults", wrap(""), func(c domains.Config) bool { return c.VCPUs == 1 && c.Clock.Offset == "utc" && c.MemoryMiB == 64 }, nil},
		{"memory in KiB by default", "<domain type='qemu'><name>d</name><memory>65536</memory></domain>", func(c domains.Config) bool { return c.MemoryMiB == 64 }, nil},
		{"memory in GiB", "<domain type='kvm'><name>d</name><memory unit='G'>2</memory></domain>", func(c domains.Config) bool { return c.MemoryMiB == 2048 }, nil},
		{"memory in bytes", "<domain type='kvm'><name>d</name><memory unit='bytes'>67108864</memory></domain>", func(c domains.Config) bool { return c.MemoryMiB == 64 }, nil},
		{"memory in MB is not whole MiB", "<domain type='kvm'><name>d</name><memory unit='MB'>100</memory></domain>", nil, []string{"domain/memory: 100 MB: not a whole number of MiB"}},
		{"memory unit unknown", "<domain type='kvm'><name>d</name><memory unit='PiB'>1</memory></domain>", nil, []string{`domain/memory: unit "PiB"`}},
		{"clock localtime", wrap("<clock offset='localtime'/>"), func(c domains.Config) bool { return c.Clock == domains.Clock{Offset: "localtime"} }, nil},
		{"clock variable default basis", wrap("<clock offset='variable' adjustment='-120'/>"), func(c domains.Config) bool {
			return c.Clock == domains.Clock{Offset: "variable", Adjustment: -120, Basis: "utc"}
		}, nil},
		{"clock utc reset", wrap("<clock offset='utc' adjustment='reset'/>"), func(c domains.Config) bool { return c.Clock == domains.Clock{Offset: "utc"} }, nil},
		{"clock localtime with a number is variable", wrap("<clock offset='localtime' adjustment='7200'/>"), func(c domains.Config) bool {
			return c.Clock == domains.Clock{Offset: "variable", Adjustment: 7200, Basis: "localtime"}
		}, nil},
		{"clock bad adjustment", wrap("<clock offset='variable' adjustment='soon'/>"), nil, []string{`domain/clock: adjustment "soon"`}},
		{"clock bad basis", wrap("<clock offset='variable' basis='mars'/>"), nil, []string{`domain/clock: basis "mars"`}},
		{"clock timezone", wrap("<clock offset='timezone' timezone='Europe/Paris'/>"), nil, []string{`domain/clock: offset "timezone"`, `domain/clock: attribute timezone="Europe/Paris"`}},
		{"q35", wrap("<os><type machine='q35'>hvm</type></os>"), func(c domains.Config) bool { return c.Machine == "q35" }, nil},
		{"xen", "<domain type='xen'><name>d</name><memory>65536</memory></domain>", nil, []string{`domain: domain type "xen"`}},
		{"vcpu current", wrap("<vcpu current='1'>2</vcpu>"), nil, []string{"domain/vcpu: current 1 of 2"}},
		{"vcpu cpuset", wrap("<vcpu cpuset='0-1'>2</vcpu>"), nil, []string{`domain/vcpu: attribute cpuset="0-1"`}},
		{"bridge", wrap("<devices><interface type='bridge'><source bridge='br0'/></interface></devices>"), nil, []string{`domain/devices/interface: type "bridge"`}},
		{"two user nics", wrap("<devices><interface type='user'/><interface type='user'><model type='e1000'/></interface></devices>"), func(c domains.Config) bool {
			return len(c.NICs) == 2 && c.NICs[1] == domains.NIC{ID: "net1", Model: "e1000", Mode: "user"}
		}, nil},
		{"block disk", wrap("<devices><disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdb' bus='virtio'/></disk></devices>"), nil,
			[]string{`domain/devices/disk: type "block"`, "domain/devices/disk: no <source file=...>", `domain/devices/disk/source: attribute dev="/dev/sdb"`}},
		{"scsi disk", wrap("<devices><disk type='file' device='disk'><source file='/i.img'/><target dev='sda' bus='scsi'/></disk></devices>"), nil, []string{`domain/devices/disk/target: bus "scsi"`}},
		{"second serial", wrap("<devices><serial type='pty'/><serial type='pty'><target port='1'/></serial></devices>"), nil, []string{"domain/devices/serial: a second serial port"}},
		{"on_reboot destroy", wrap("<on_reboot>destroy</on_reboot>"), nil, []string{`domain/on_reboot: "destroy"`}},
		{"bad uuid", wrap("<uuid>nope</uuid>"), nil, []string{`domain/uuid: uuid "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Convert([]byte(tc.xml))
			if tc.refused == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !tc.check(cfg) {
					t.Errorf("config %s", mustJSON(t, cfg))
				}
				return
			}
			items := Unmapped(err)
			if len(items) != len(tc.refused) {
				t.Fatalf("items %q, want %d like %q", items, len(tc.refused), tc.refused)
			}
			for i, want := range tc.refused {
				if !strings.HasPrefix(items[i], want) {
					t.Errorf("item %d %q, want it to start %q", i, items[i], want)
				}
			}
		})
	}
}

// Input that is not a domain XML at all is refused as invalid before any
// mapping: too large, a DTD (entities are never expanded), broken XML.
func TestConvertRefusesHostileInput(t *testing.T) {
	for name, in := range map[string]string{
		"too large":      "<domain>" + strings.Repeat(" ", MaxBytes) + "</domain>",
		"doctype":        `<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain type='kvm'><name>&x;</name></domain>`,
		"unknown entity": `<domain type='kvm'><name>&x;</name></domain>`,
		"unclosed":       `<domain type='kvm'><name>d</name>`,
		"two roots":      `<domain/><domain/>`,
		"empty":          ``,
		"deep":           strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40),
		"not a domain":   `<network><name>default</name></network>`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Convert([]byte(in))
			if domains.CodeOf(err) != domains.CodeInvalid {
				t.Fatalf("err %v, want invalid", err)
			}
			if strings.Contains(err.Error(), "root:") {
				t.Errorf("an entity was expanded: %v", err)
			}
			if len(err.Error()) > 4096 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}
