package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmledger/vmledger/domains"
)

// qcow2 header fields (QEMU's docs/interop/qcow2.txt): a qcow2 image can
// name other host files QEMU then opens on its own, a backing file and,
// in version 3, an external data file. Neither is checked against the
// agent's --allow-dir, so an image that names one is refused
// (docs/security.md).
const (
	qcow2Magic       = 0x514649fb // "QFI\xfb"
	qcow2ExtDataFile = 1 << 2     // incompatible feature: external data file
)

// checkQcow2Files refuses a qcow2 disk that names another host file.
func checkQcow2Files(cfg domains.Config) error {
	for _, disk := range cfg.Disks {
		if disk.Format != "qcow2" {
			continue
		}
		if err := qcow2Refers(disk.Path); err != nil {
			return domains.Errorf(domains.CodeInvalid, "disk %s: %s: %w", disk.Target, domains.Quote(disk.Path), err)
		}
	}
	return nil
}

// qcow2Refers reads path's header; a file too short or of another
// format is QEMU's to refuse.
func qcow2Refers(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // missing: QEMU says so
	}
	defer f.Close()
	var h [80]byte
	n, err := io.ReadFull(f, h[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) || n < 24 || binary.BigEndian.Uint32(h[0:]) != qcow2Magic {
		return nil
	}
	if off, size := binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[16:]); off != 0 && size != 0 {
		return fmt.Errorf("a qcow2 image with a backing file: backing files are not confined to the allowed directories, so they are refused (qemu-img convert makes a standalone image)")
	}
	if version := binary.BigEndian.Uint32(h[4:]); version >= 3 && n >= 80 && binary.BigEndian.Uint64(h[72:])&qcow2ExtDataFile != 0 {
		return fmt.Errorf("a qcow2 image with an external data file: data files are not confined to the allowed directories, so they are refused")
	}
	return nil
}
