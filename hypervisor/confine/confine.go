// Package confine keeps the files the agent opens for its users (save
// images now; disks, kernels and dumps later) inside the directories the
// agent was told to allow (`agent --allow-dir`). A path is allowed when
// it is absolute, has no ".." component, and its real location (symlinks
// resolved) lies in an allowed directory: the check compares directories
// by device and inode, so a bind mount or a second name of an allowed
// directory is recognised and a symlink out of it is not. Devices, FIFOs
// and sockets are refused: only regular files are read or written, and
// the block or character devices named by AllowDevice (matched by device
// number, wherever their node is).
package confine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrOutside is wrapped by every refusal.
var ErrOutside = errors.New("path not allowed")

type dirID struct{ dev, ino uint64 }

// Dirs is a set of allowed directories.
type Dirs struct {
	names   []string
	ids     map[dirID]string
	devices map[devID]string // AllowDevice
}

// devID is a device node's kind (block or character) and number.
type devID struct {
	block bool
	rdev  uint64
}

// New checks that each directory exists and is a directory.
func New(dirs []string) (*Dirs, error) {
	d := &Dirs{ids: map[dirID]string{}}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("allowed directory %q: %w", dir, err)
		}
		id, err := idOf(abs)
		if err != nil {
			return nil, fmt.Errorf("allowed directory %q: %w", dir, err)
		}
		d.names = append(d.names, abs)
		d.ids[id] = abs
	}
	return d, nil
}

// AllowDevice allows the block or character device path names (symlinks
// followed), by its device number: any node of that device is allowed,
// no other device is.
func (d *Dirs) AllowDevice(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("allowed device %q: %w", path, err)
	}
	id, ok := deviceOf(fi)
	if !ok {
		return fmt.Errorf("allowed device %q: not a block or character device (%s)", path, fi.Mode().Type())
	}
	if d.devices == nil {
		d.devices = map[devID]string{}
	}
	d.devices[id] = path
	return nil
}

func deviceOf(fi os.FileInfo) (devID, bool) {
	m := fi.Mode()
	if m&os.ModeDevice == 0 {
		return devID{}, false
	}
	return devID{block: m&os.ModeCharDevice == 0, rdev: uint64(fi.Sys().(*syscall.Stat_t).Rdev)}, true
}

// allowedDevice is the real path of path if it is an allowed device.
func (d *Dirs) allowedDevice(path string) (string, bool) {
	if len(d.devices) == 0 {
		return "", false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", false
	}
	id, ok := deviceOf(fi)
	if !ok {
		return "", false
	}
	_, ok = d.devices[id]
	return real, ok
}

// Check is the test of a path a configuration names (a disk, a kernel)
// at define: an existing file passes as Resolve would let it be used; a
// missing one passes if its directory is allowed (it is checked again,
// and must exist, when it is used).
func (d *Dirs) Check(path string) error {
	_, err := d.Resolve(path, false)
	if errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrOutside) {
		_, err = d.Resolve(path, true)
	}
	return err
}

// Names are the allowed directories, for messages.
func (d *Dirs) Names() []string { return append([]string(nil), d.names...) }

func idOf(path string) (dirID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return dirID{}, err
	}
	if !fi.IsDir() {
		return dirID{}, fmt.Errorf("not a directory")
	}
	st := fi.Sys().(*syscall.Stat_t)
	return dirID{uint64(st.Dev), st.Ino}, nil
}

func (d *Dirs) refuse(path, why string) error {
	return fmt.Errorf("%w: %q %s (allowed: %s)", ErrOutside, path, why, strings.Join(d.names, ", "))
}

// Resolve returns the real path of path if it may be used. create: the
// file is to be made (it must not exist; its directory must be allowed);
// otherwise it must be an existing regular file.
func (d *Dirs) Resolve(path string, create bool) (string, error) {
	if !filepath.IsAbs(path) {
		return "", d.refuse(path, "is not absolute")
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return "", d.refuse(path, "has a \"..\" component")
		}
	}
	clean := filepath.Clean(path)
	if !create {
		if real, ok := d.allowedDevice(clean); ok {
			return real, nil
		}
	}
	dir, base := filepath.Split(clean)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrOutside, path, err)
	}
	if !d.inside(realDir) {
		return "", d.refuse(path, "is outside the allowed directories")
	}
	real := filepath.Join(realDir, base)
	fi, err := os.Lstat(real)
	switch {
	case create && err == nil:
		return "", fmt.Errorf("%q already exists: %w", path, os.ErrExist)
	case create && errors.Is(err, os.ErrNotExist):
		return real, nil
	case err != nil:
		return "", fmt.Errorf("%q: %w", path, err)
	case fi.Mode()&os.ModeSymlink != 0:
		// A symlink is followed only to a file that is itself allowed.
		target, err := filepath.EvalSymlinks(real)
		if err != nil {
			return "", fmt.Errorf("%q: %w", path, err)
		}
		if !d.inside(filepath.Dir(target)) {
			return "", d.refuse(path, "is a symlink out of the allowed directories")
		}
		if fi, err = os.Stat(target); err != nil {
			return "", fmt.Errorf("%q: %w", path, err)
		}
		real = target
	}
	if !fi.Mode().IsRegular() {
		if _, dev := deviceOf(fi); dev {
			return "", d.refuse(path, "is a device ("+fi.Mode().Type().String()+"), not allowed by --allow-device")
		}
		return "", d.refuse(path, "is not a regular file ("+fi.Mode().Type().String()+")")
	}
	return real, nil
}

// inside reports whether the real directory dir is an allowed directory
// or below one, comparing each ancestor by device and inode.
func (d *Dirs) inside(dir string) bool {
	for p := dir; ; p = filepath.Dir(p) {
		if id, err := idOf(p); err == nil {
			if _, ok := d.ids[id]; ok {
				return true
			}
		}
		if p == "/" || p == "." {
			return false
		}
	}
}
