package qemu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// checkDisks refuses disks, kernels and initramfs images a guest may not
// be given: QEMU (often root) opens whatever path the config names. Two
// checks, because paths lie:
//
//   - by path: a disk inside a protected directory (the run directory, the
//     agent's state directory), following symbolic links;
//   - by identity (device and inode, as os.SameFile compares): a disk that
//     is, through hard or symbolic links, a file in a protected directory
//     (the event log, the NATS token, a guest's RAM file or socket), or a
//     file another running QEMU has open, unless both sides only read it
//     (a shared ISO). `ln state/events.db x.img` passes the first check
//     and not the second.
//
// A file that does not exist yet is checked by path only; QEMU will fail
// to open it. Kernels and initramfs images are read only.
func (d *Driver) checkDisks(cfg domains.Config) error {
	files := hostFiles(cfg)
	if err := d.checkDiskPaths(files); err != nil {
		return err
	}
	if err := checkQcow2Files(cfg); err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	taken, err := d.protectedFiles()
	if err != nil {
		return err
	}
	open, err := d.openByOthers(cfg.UUID)
	if err != nil {
		return err
	}
	for _, f := range files {
		fi, err := os.Stat(f.path) // follows symbolic links
		if err != nil {
			continue
		}
		id, ok := idOf(fi)
		if !ok {
			continue
		}
		if what, ok := taken[id]; ok {
			return domains.Errorf(domains.CodeInvalid, "%s: %s is the same file as %s, which guests may not use", f.what, domains.Quote(f.path), what)
		}
		if o, ok := open[id]; ok && (o.writable || !f.readOnly) {
			return domains.Errorf(domains.CodeInvalid, "%s: %s is open in %s; only read-only disks may be shared", f.what, domains.Quote(f.path), o.who)
		}
	}
	return nil
}

// hostFile is a host file a config hands to QEMU.
type hostFile struct {
	what, path string
	readOnly   bool
}

func hostFiles(cfg domains.Config) []hostFile {
	var files []hostFile
	for _, disk := range cfg.Disks {
		files = append(files, hostFile{"disk " + disk.Target, disk.Path, disk.ReadOnly})
	}
	if o := cfg.OS; o != nil {
		for _, f := range []hostFile{{"os.kernel", o.Kernel, true}, {"os.initrd", o.Initrd, true}} {
			if f.path != "" {
				files = append(files, f)
			}
		}
	}
	return files
}

// checkDiskPaths refuses files inside a protected directory by path,
// following symbolic links (a dangling one by where it points).
func (d *Driver) checkDiskPaths(files []hostFile) error {
	for _, f := range files {
		p := filepath.Clean(f.path)
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		} else if target, err := os.Readlink(p); err == nil { // dangling: where it points
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			p = filepath.Clean(target)
		}
		for _, dir := range d.protected {
			real := dir
			if r, err := filepath.EvalSymlinks(dir); err == nil {
				real = r
			}
			for _, base := range []string{dir, real} {
				if p == base || strings.HasPrefix(p, base+string(filepath.Separator)) {
					return domains.Errorf(domains.CodeInvalid, "%s: %s is inside %s, which guests may not use", f.what, domains.Quote(f.path), dir)
				}
			}
		}
	}
	return nil
}

// fileID is a file's identity: what os.SameFile compares.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}

// maxProtectedFiles bounds the walk of the protected directories; they
// hold a few files per guest.
const maxProtectedFiles = 100000

// protectedFiles maps the identity of every file under the protected
// directories to its path. Symbolic links there are not followed (they
// are not the files themselves); a directory that does not exist holds
// nothing. Any other error refuses the start: unchecked is not safe.
func (d *Driver) protectedFiles() (map[fileID]string, error) {
	out := map[fileID]string{}
	for _, dir := range d.protected {
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile (a guest's run dir being removed)
			}
			if err != nil {
				return err
			}
			if e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if id, ok := idOf(fi); ok {
				out[id] = path
			}
			if len(out) > maxProtectedFiles {
				return fmt.Errorf("more than %d files", maxProtectedFiles)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, domains.Errorf(domains.CodeUnavailable, "qemu: checking disks against %s: %w", dir, err)
		}
	}
	return out, nil
}

// openFile is a file another guest's QEMU holds.
type openFile struct {
	who      string // "domain <uuid>"
	writable bool
}

// openByOthers maps the files the live QEMUs of other domains (those with
// a run directory here) hold open: their disks, through /proc/<pid>/fd.
func (d *Driver) openByOthers(self uuid.UUID) (map[fileID]openFile, error) {
	ents, err := os.ReadDir(d.runDir)
	if err != nil {
		return nil, domains.Errorf(domains.CodeUnavailable, "qemu: checking disks: %w", err)
	}
	out := map[fileID]openFile{}
	for _, e := range ents {
		id, err := uuid.Parse(e.Name())
		if err != nil || id == self || !e.IsDir() {
			continue
		}
		pid, pidfd, err := findQEMU(d.Paths(id), id)
		if errors.Is(err, domains.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, domains.Errorf(domains.CodeUnavailable, "qemu: checking disks against domain %s: %w", id, err)
		}
		err = addOpenFiles(out, pid, "domain "+id.String())
		closeFD(pidfd)
		if err != nil {
			return nil, domains.Errorf(domains.CodeUnavailable, "qemu: checking disks against domain %s: %w", id, err)
		}
	}
	return out, nil
}

// addOpenFiles adds what process pid has open to out. A descriptor closed
// while we look is skipped; a process that exited holds nothing.
func addOpenFiles(out map[fileID]openFile, pid int, who string) error {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, fd := range fds {
		fi, err := os.Stat(filepath.Join(fdDir, fd.Name())) // the open file itself
		if err != nil {
			continue
		}
		id, ok := idOf(fi)
		if !ok || !fi.Mode().IsRegular() && fi.Mode()&fs.ModeDevice == 0 {
			continue
		}
		o := out[id]
		o.who = who
		o.writable = o.writable || fdWritable(pid, fd.Name())
		out[id] = o
	}
	return nil
}

// fdWritable reads the open flags in /proc/<pid>/fdinfo/<fd>; when they
// cannot be read, the descriptor counts as writable.
func fdWritable(pid int, fd string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err != nil || flags&syscall.O_ACCMODE != syscall.O_RDONLY
		}
	}
	return true
}
