package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/guest"
)

// tinyLibvirtXML is what virsh dumpxml prints for the tiny guest run by
// libvirt (runtime ids, aliases and addresses included).
const tinyLibvirtXML = `<domain type='kvm' id='3'>
  <name>tinyxml</name>
  <uuid>2c4e6a8b-1d3f-4a5c-8e7f-9a0b1c2d3e4f</uuid>
  <memory unit='MiB'>16</memory>
  <currentMemory unit='KiB'>16384</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='variable' adjustment='86400' basis='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='IMAGE' index='1'/>
      <backingStore/>
      <target dev='hda' bus='ide'/>
      <alias name='ide0-0-0'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='ide' index='0'><alias name='ide'/></controller>
    <controller type='pci' index='0' model='pci-root'><alias name='pci.0'/></controller>
    <serial type='pty'>
      <source path='/dev/pts/4'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='pty' tty='/dev/pts/4'>
      <source path='/dev/pts/4'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <seclabel type='none' model='none'/>
</domain>
`

// Issue 15, point 8: define --from-libvirt on the built binary against a
// real agent. The tiny guest's dumpxml maps, defines and boots under QEMU
// with its clock; a virt-install guest's XML is refused with exit 2 and
// every unmappable item listed, and nothing is appended.
func TestDefineFromLibvirt(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	a := guestAgent(t, dir+"/state", "tcg")
	img := filepath.Join(diskDir(t), "tiny.img") // inside the agent's allowed directories
	if err := guest.WriteImage(img); err != nil {
		t.Fatal(err)
	}
	xmlFile := writeFile(t, dir, "tiny.xml", strings.Replace(tinyLibvirtXML, "IMAGE", img, 1))
	out := a.mustCLI("define", "--from-libvirt", xmlFile, "--json")
	var res domains.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Name != "tinyxml" || res.Domain.String() != "2c4e6a8b-1d3f-4a5c-8e7f-9a0b1c2d3e4f" {
		t.Fatalf("define: %s (%v)", out, err)
	}
	cfg := configOf(t, a, "tinyxml")
	if cfg.MemoryMiB != 16 || cfg.VCPUs != 1 || cfg.Clock != (domains.Clock{Offset: "variable", Adjustment: 86400, Basis: "utc"}) ||
		len(cfg.Disks) != 1 || cfg.Disks[0].Path != img || cfg.Serial == nil {
		t.Errorf("imported config %+v", cfg)
	}
	// The guest prints its RTC: a day ahead, from the imported adjustment.
	nc := natsConn(t, a)
	con := tapConsole(t, nc, a.host, res.Domain.String())
	a.mustCLI("start", "tinyxml")
	rtc, err := guest.ParseRTC(con.waitLine(t, "RTC ", 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if d := rtc.Sub(time.Now().UTC()); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("guest RTC %s is %s from now, want about +24h", rtc, d)
	}
	a.mustCLI("destroy", "tinyxml")

	seq := lastSeqCLI(t, a)
	_, errs, code := a.cli("define", "--from-libvirt", "../../domains/libvirtxml/testdata/virt-install.xml")
	if code != exitUsage {
		t.Fatalf("define of a virt-install XML: exit %d, want %d: %s", code, exitUsage, errs)
	}
	for _, want := range []string{"20 thing(s) vmledger cannot map", `cpu mode "host-passthrough"`, `interface: type "network"`,
		`<graphics> has no vmledger equivalent (type="vnc")`, `disk: device "cdrom"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("refusal lacks %q:\n%s", want, errs)
		}
	}
	if got := lastSeqCLI(t, a); got != seq {
		t.Errorf("a refused import appended events: last seq %d -> %d", seq, got)
	}
}
