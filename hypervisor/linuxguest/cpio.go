package linuxguest

import (
	"fmt"
	"io"
	"strings"
)

// The initramfs is a "newc" cpio archive (the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst): each entry
// is a 110-byte ASCII header of thirteen 8-digit hex fields, the
// NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes;
// a "TRAILER!!!" entry ends it. Written by hand: that is all the format
// the kernel reads, and the Go cpio libraries (u-root's, cavaliergopher's)
// would bring a module for sixty lines. Every mtime, uid and gid is 0, so
// the same inputs give the same bytes.

// File modes of the entries (S_IFMT bits as in stat(2)).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// entry is one archive member.
type entry struct {
	name         string // no leading slash
	mode         uint32 // type and permission bits
	data         []byte // file contents or symlink target
	major, minor uint32 // device numbers, for character devices
}

// cpioWriter writes newc entries.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	n   int64 // bytes written, for the padding
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) add(e entry) error {
	if strings.HasPrefix(e.name, "/") || e.name == "" {
		return fmt.Errorf("linuxguest: cpio name %q: must be relative", e.name)
	}
	c.ino++
	nlink := 1
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	c.header(c.ino, e.mode, nlink, len(e.data), e.major, e.minor, e.name)
	c.write(e.data)
	c.pad()
	return c.err
}

func (c *cpioWriter) header(ino, mode uint32, nlink, size int, major, minor uint32, name string) {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	c.write(fmt.Appendf(nil, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0))
	c.write([]byte(name + "\x00"))
	c.pad()
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.header(0, 0, 1, 0, 0, 0, "TRAILER!!!")
	return c.err
}
