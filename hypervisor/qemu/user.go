package qemu

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// Sandbox is QEMU's seccomp filter (-sandbox), as libvirt sets it: no
// obsolete system calls, no set*uid/set*gid, no fork or exec, no changes
// of scheduling or CPU affinity. What the agent uses needs none of them:
// migration and dumps go through descriptors passed over QMP, hot-plug
// through QMP, and no -daemonize (QEMU is the agent's child).
const Sandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// runAs is the unprivileged user QEMU runs as (Options.User); the zero
// value (-1, -1) keeps the agent's.
type runAs struct{ uid, gid int }

var sameUser = runAs{-1, -1}

// lookupUser resolves Options.User; only root can start a process as
// another user.
func lookupUser(name string) (runAs, error) {
	if name == "" {
		return sameUser, nil
	}
	if os.Geteuid() != 0 {
		return sameUser, fmt.Errorf("qemu: user %q: the agent must run as root to start QEMU as another user", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return sameUser, fmt.Errorf("qemu: user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return sameUser, fmt.Errorf("qemu: user %q: uid %q, gid %q", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return sameUser, fmt.Errorf("qemu: user %q is root: give an unprivileged user", name)
	}
	return runAs{uid, gid}, nil
}

// give hands a file or directory the agent made to QEMU's user, which
// creates its sockets and pid file there and maps the RAM files.
func (r runAs) give(path string) error {
	if r == sameUser {
		return nil
	}
	if err := os.Lchown(path, r.uid, r.gid); err != nil {
		return fmt.Errorf("qemu: give %s to uid %d: %w", path, r.uid, err)
	}
	return nil
}

// credential is QEMU's process credential: the user, its group only (no
// supplementary groups inherited from the agent).
func (r runAs) credential() *syscall.Credential {
	if r == sameUser {
		return nil
	}
	return &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid), Groups: []uint32{}}
}

// qemuEnv is QEMU's environment: what it may use (the search path, the
// time zone a localtime clock follows, the locale), never the agent's
// other variables, which may carry a NATS token or URL with credentials
// (VMLEDGER_*; /proc/PID/environ of QEMU is readable by its user).
func qemuEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "TZ", k == "TMPDIR", k == "LANG", strings.HasPrefix(k, "LC_"):
			out = append(out, kv)
		}
	}
	return out
}
