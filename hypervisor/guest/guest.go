// Package guest embeds vmledger's own tiny test guest: a 512-byte BIOS
// boot sector (source in boot.S) that SeaBIOS boots under QEMU/KVM.
//
// The guest gives vmledger a real VM whose observable behaviour is fully
// under our control, without shipping a kernel: it prints the CMOS RTC on
// COM1 once a second and obeys one-letter commands read from COM1 that set
// the RTC, power off through ACPI, reset, or raise a pvpanic. Each of these
// makes QEMU emit the matching QMP event (RTC_CHANGE, SHUTDOWN, RESET,
// GUEST_PANICKED). It also powers off when the ACPI power button is pressed
// (QMP system_powerdown), as if it had received CmdPowerOff. docs/guest.md
// describes the protocol.
package guest

//go:generate sh build.sh

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The committed, embedded boot sector. guest_test.go checks that build.sh
// reproduces it from boot.S byte for byte.
//
//go:embed tinyguest.img
var image []byte

const (
	// SectorSize is the size of the boot sector returned by Image.
	SectorSize = 512

	// DiskSize is the size of the disk image written by WriteImage.
	// A bare 512-byte disk boots on -machine pc (IDE) but not from AHCI,
	// the controller of -machine q35: SeaBIOS derives zero logical
	// cylinders for disks below a few hundred KiB and fails to read
	// sector 0 ("could not read the boot disk"). Padding to 1 MiB fixes
	// that and costs no disk space, because the padding is a hole.
	DiskSize = 1 << 20

	// Banner is the first line the guest prints after every boot.
	Banner = "VMLEDGER TINY GUEST v1"

	// RTCLayout is the time layout of the guest's clock lines after the
	// "RTC " prefix. The RTC has no time zone; QEMU runs it in UTC
	// unless told otherwise (-rtc base=localtime).
	RTCLayout = "2006-01-02 15:04:05"

	// Commands the guest understands. Terminate each with "\r" or "\n"
	// (SetTimeCommand does that for T). The guest answers "OK <letter>"
	// before acting, or "ERR" for anything it does not understand.
	CmdPowerOff = "P\r" // ACPI S5; QEMU: SHUTDOWN reason "guest-shutdown"
	CmdPanic    = "X\r" // pvpanic; QEMU: GUEST_PANICKED (needs -device pvpanic)
	CmdReset    = "R\r" // reset; QEMU: RESET guest=true
)

// Image returns a copy of the 512-byte boot sector.
func Image() []byte {
	return bytes.Clone(image)
}

// WriteImage writes a raw disk image holding the guest to path: the boot
// sector followed by zeros up to DiskSize (a sparse file where the file
// system allows it). The file is created with mode 0600 and appears
// atomically: it is written under a temporary name in the same directory,
// synced, and renamed over path, so a concurrently starting QEMU never
// sees a partial image.
func WriteImage(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp creates the file with mode 0600.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("guest: write image: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("guest: write image %s: %w", path, err)
		}
	}()
	if _, err = f.Write(image); err != nil {
		return err
	}
	if err = f.Truncate(DiskSize); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable; failing to is not worth an error
	// (some file systems do not support syncing directories).
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// SetTimeCommand returns the command line that sets the guest's RTC to t,
// e.g. "T 20300101000000\r". Only the wall-clock fields of t are used, in
// t's location; sub-second precision is dropped.
func SetTimeCommand(t time.Time) string {
	return "T " + t.Format("20060102150405") + "\r"
}

// ParseRTC parses one clock line printed by the guest,
// "RTC YYYY-MM-DD hh:mm:ss" (a trailing "\r\n" is ignored), and returns
// the time in UTC.
func ParseRTC(line string) (time.Time, error) {
	s, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "RTC ")
	if !ok {
		return time.Time{}, fmt.Errorf("guest: not an RTC line: %q", line)
	}
	t, err := time.Parse(RTCLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("guest: bad RTC line %q: %w", line, err)
	}
	return t, nil
}
