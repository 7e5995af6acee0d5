package qmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNoFDPassing means the connection cannot carry file descriptors: QMP
// fd passing (SCM_RIGHTS) needs a unix socket.
var ErrNoFDPassing = errors.New("qmp: connection cannot pass file descriptors (not a unix socket)")

// unixMsgWriter is what *net.UnixConn offers for ancillary data.
type unixMsgWriter interface {
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// ExecuteWithFile runs cmd like Execute, with f's descriptor attached to
// the command's bytes as SCM_RIGHTS ancillary data. QEMU's monitor takes
// the descriptors that arrive with a command and hands them to that command
// (getfd, add-fd); binding the fd to the very sendmsg that carries the
// command keeps it from being claimed by a concurrent command. The caller
// keeps f: the kernel gives QEMU its own copy, so f may (and usually
// should) be closed once the command returns.
func (c *Client) ExecuteWithFile(ctx context.Context, cmd string, args, result any, f *os.File) error {
	if f == nil {
		return fmt.Errorf("qmp: %s: nil file", cmd)
	}
	if _, ok := c.conn.(unixMsgWriter); !ok {
		return fmt.Errorf("qmp: %s: %w", cmd, ErrNoFDPassing)
	}
	// The fd number through SyscallConn, not f.Fd(), which would switch
	// the caller's file to blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	var oob []byte
	if err := rc.Control(func(fd uintptr) { oob = unix.UnixRights(int(fd)) }); err != nil {
		return fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	_, err = c.executeOOB(ctx, cmd, cmd, args, result, oob)
	runtime.KeepAlive(f) // the number in oob stays f's until the send is done
	return err
}

// GetFD hands f to QEMU under name (QMP getfd), for a later command that
// names it, e.g. migrate with uri "fd:NAME". A name already in use is
// replaced by QEMU (the old descriptor is closed there).
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	if err := checkFDName(name); err != nil {
		return err
	}
	args := struct {
		FDName string `json:"fdname"`
	}{name}
	return c.ExecuteWithFile(ctx, "getfd", args, nil, f)
}

// CloseFD makes QEMU close a descriptor it received with GetFD (QMP
// closefd). Commands that consume the fd (migrate fd:) close it themselves;
// this is for the paths where they never ran.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	if err := checkFDName(name); err != nil {
		return err
	}
	args := struct {
		FDName string `json:"fdname"`
	}{name}
	return c.Execute(ctx, "closefd", args, nil)
}

// checkFDName refuses names QEMU would refuse (it reserves names starting
// with a digit for descriptor numbers) before anything is sent.
func checkFDName(name string) error {
	if name == "" {
		return errors.New("qmp: fd name is empty")
	}
	if name[0] >= '0' && name[0] <= '9' {
		return fmt.Errorf("qmp: fd name %q: must not start with a digit", name)
	}
	if len(name) > 64 {
		return fmt.Errorf("qmp: fd name %q: longer than 64 bytes", name)
	}
	return nil
}
