package linuxguest

import (
	"fmt"
	"strings"
	"time"
)

// The guest's console protocol (ttyS0, 115200 8N1 as QEMU's 16550 does
// regardless of the baud rate).
const (
	// ReadyPrefix starts the line init prints once everything is set up,
	// followed by the kernel release: "VMLEDGER LINUX READY 6.1.0-57-cloud-amd64".
	ReadyPrefix = "VMLEDGER LINUX READY"
	// RTCPrefix starts the line after it, in the tiny guest's format
	// ("RTC 2026-12-01 20:15:00", guest.ParseRTC reads it): the RTC's own
	// registers, as the kernel's rtc-cmos reads them, whatever the zone.
	RTCPrefix = "RTC "
	// Prompt is the shell's prompt; after it the shell reads a line.
	Prompt = "vmledger# "

	// CmdPanic panics the kernel; pvpanic reports it to QEMU
	// (GUEST_PANICKED). oops=panic on DefaultCmdline makes any oops do so.
	CmdPanic = "echo c > /proc/sysrq-trigger"
	// CmdPowerOff is the guest's own ACPI S5.
	CmdPowerOff = "poweroff -f"
	// CmdReadRTC prints "HWCLOCK " and busybox hwclock -r's reading of the
	// RTC (UTC, /etc/adjtime says so): ParseHwclock reads it.
	CmdReadRTC = `echo "HWCLOCK $(hwclock -r)"`
	// HwclockPrefix starts CmdReadRTC's output line.
	HwclockPrefix = "HWCLOCK "
)

// DefaultCmdline is the kernel command line for the guest: the console on
// COM1; quiet, so kernel messages do not interleave with the protocol;
// oops=panic, so a crash always reaches pvpanic; hotplugged memory online
// and movable (so it can be unplugged again).
const DefaultCmdline = "console=ttyS0 quiet oops=panic memhp_default_state=online_movable"

// SetRTCCommand sets the system clock to t and writes it to the RTC, as
// an administrator would ("date -s '2030-01-01 00:00:00' && hwclock -w");
// the guest's zone is UTC.
func SetRTCCommand(t time.Time) string {
	return "date -s '" + t.UTC().Format("2006-01-02 15:04:05") + "' && hwclock -w"
}

// ParseHwclock reads CmdReadRTC's output line: "HWCLOCK Tue Jan  1
// 00:00:05 2030  0.000000 seconds".
func ParseHwclock(line string) (time.Time, error) {
	s, ok := strings.CutPrefix(line, HwclockPrefix)
	if !ok {
		return time.Time{}, fmt.Errorf("linuxguest: %.80q: not a hwclock line", line)
	}
	s, _, _ = strings.Cut(s, "  0.") // the fraction busybox appends
	t, err := time.Parse(time.ANSIC, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("linuxguest: hwclock line %.80q: %w", line, err)
	}
	return t, nil
}

// initScript is /init. It runs as PID 1 under busybox sh and never
// exits (the kernel would panic): the shell on ttyS0 is restarted when it
// ends.
func initScript(modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# vmledger's Linux test guest (built by hypervisor/linuxguest; docs/guest.md).
/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod /lib/modules/%s || echo 'vmledger: insmod %s failed'\n", shellBase(m), shellBase(m))
	}
	b.WriteString(`# The ACPI power button arrives as KEY_POWER on an input device (button +
# evdev); acpid matches "PWRF" (/etc/acpid.conf) and runs /etc/acpi/power.
acpid -c /etc/acpi -a /etc/acpid.conf -l /tmp/acpid.log -p /tmp/acpid.pid
# A fresh line first: the console may still hold the prompt of the boot
# before a reset or restart, which has no newline.
echo
echo "` + ReadyPrefix + ` $(uname -r)"
echo "` + RTCPrefix + `$(cat /sys/class/rtc/rtc0/date) $(cat /sys/class/rtc/rtc0/time)"
export PS1='` + Prompt + `'
while :; do setsid cttyhack sh; sleep 1; done
`)
	return b.String()
}

// shellBase is the file name a module has in the initramfs.
func shellBase(file string) string {
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		return file[i+1:]
	}
	return file
}

// Files of /etc that init and busybox read.
const (
	acpidConf = "PWRF power\n"
	acpiPower = "#!/bin/sh\n# The ACPI power button: power off at once, as the tiny guest does.\npoweroff -f\n"
	// adjtime: the RTC keeps UTC (hwclock reads this when given neither -u nor -l).
	adjtime = "0.0 0 0.0\n0\nUTC\n"
)
