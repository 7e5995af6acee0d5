package coredump

import "fmt"

// Format is a dump file format.
type Format string

// The formats, named as virsh dump --format and QEMU's
// dump-guest-memory name them.
const (
	FormatELF         Format = "elf"
	FormatKdumpZlib   Format = "kdump-zlib"
	FormatKdumpSnappy Format = "kdump-snappy"
	FormatKdumpZstd   Format = "kdump-zstd"
	FormatKdumpLZO    Format = "kdump-lzo" // read-side name only: no maintained Go LZO (docs/coredump.md)
	FormatKdumpRaw    Format = "kdump-raw" // every page stored as is
)

// Formats lists the formats Write can produce.
func Formats() []Format {
	return []Format{FormatELF, FormatKdumpZlib, FormatKdumpSnappy, FormatKdumpZstd, FormatKdumpRaw}
}

// Compression flags of the kdump format, makedumpfile's values
// (DUMP_DH_COMPRESSED_*), used in the header's status and in each page
// descriptor's flags.
const (
	FlagZlib       = 0x01
	FlagLZO        = 0x02
	FlagSnappy     = 0x04
	FlagIncomplete = 0x08
	FlagZstd       = 0x20
)

func (f Format) kdumpFlag() (uint32, error) {
	switch f {
	case FormatKdumpZlib:
		return FlagZlib, nil
	case FormatKdumpSnappy:
		return FlagSnappy, nil
	case FormatKdumpZstd:
		return FlagZstd, nil
	case FormatKdumpRaw:
		return 0, nil
	case FormatKdumpLZO:
		return 0, fmt.Errorf("coredump: format %s: no maintained Go LZO compressor; use kdump-zstd or kdump-snappy", f)
	}
	return 0, fmt.Errorf("coredump: unknown format %q (want one of %v)", string(f), Formats())
}

// compressionName names a kdump status or descriptor flag.
func compressionName(flags uint32) string {
	switch {
	case flags&FlagZlib != 0:
		return "zlib"
	case flags&FlagLZO != 0:
		return "lzo"
	case flags&FlagSnappy != 0:
		return "snappy"
	case flags&FlagZstd != 0:
		return "zstd"
	}
	return "none"
}

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	f := Format(s)
	if f == FormatELF {
		return f, nil
	}
	if _, err := f.kdumpFlag(); err != nil {
		return "", err
	}
	return f, nil
}
