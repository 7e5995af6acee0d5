package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/qmp"
)

// What the virsh verbs (reboot, qemu-monitor-command, vcpuinfo) need of a
// running QEMU.

// PauseOnShutdown sets what QEMU does when the guest powers off (QMP
// set-action, QEMU 6.0+): pause, keeping the process for a fake reboot,
// or exit (poweroff, QEMU's default and the command line's).
func (g *Guest) PauseOnShutdown(ctx context.Context, pause bool) error {
	return wrap("set-action", setShutdownAction(ctx, g.mon, pause))
}

func setShutdownAction(ctx context.Context, mon *qmp.Client, pause bool) error {
	action := "poweroff"
	if pause {
		action = "pause"
	}
	return mon.Execute(ctx, "set-action", map[string]string{"shutdown": action}, nil)
}

// MonitorCommand sends a raw QMP command and returns QEMU's "return"
// value. The caller has vetted the command (owner.ParseMonitorCommand).
func (g *Guest) MonitorCommand(ctx context.Context, execute string, args json.RawMessage) (json.RawMessage, error) {
	var a any
	if len(args) > 0 {
		a = args
	}
	var ret json.RawMessage
	if err := g.mon.Execute(ctx, execute, a, &ret); err != nil {
		return nil, err
	}
	return ret, nil
}

// cpuFast is one entry of query-cpus-fast (QEMU 7.2, x86).
type cpuFast struct {
	Index    int    `json:"cpu-index"`
	QOMPath  string `json:"qom-path"`
	ThreadID int    `json:"thread-id"`
	Props    struct {
		Socket int `json:"socket-id"`
		Core   int `json:"core-id"`
	} `json:"props"`
}

// VCPUs lists the vCPUs (QMP query-cpus-fast, which does not interrupt
// them) with each thread's state, host CPU and CPU time from /proc, as
// virsh vcpuinfo shows them.
func (g *Guest) VCPUs(ctx context.Context) ([]domains.VCPU, error) {
	var cpus []cpuFast
	if err := g.mon.Execute(ctx, "query-cpus-fast", nil, &cpus); err != nil {
		return nil, fmt.Errorf("qemu: query-cpus-fast: %w", err)
	}
	out := make([]domains.VCPU, 0, len(cpus))
	for _, c := range cpus {
		v := domains.VCPU{Index: c.Index, Thread: c.ThreadID, QOMPath: c.QOMPath, Socket: c.Props.Socket, Core: c.Props.Core, HostCPU: -1}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", g.proc.pid, c.ThreadID)); err == nil {
			v.State, v.HostCPU, v.CPUTime = parseTaskStat(string(st))
		}
		out = append(out, v)
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of /proc's utime and stime: 100 on
// every Linux architecture QEMU/KVM runs on here.
const clockTicks = 100

// parseTaskStat reads state (field 3), utime and stime (14, 15) and the
// last CPU (39) of a /proc/PID/task/TID/stat line. The command name (2)
// is in parentheses and may hold spaces, so fields count from its end.
func parseTaskStat(s string) (state string, cpu int, seconds float64) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", -1, 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 37 {
		return "", -1, 0
	}
	switch f[0] {
	case "R":
		state = "running"
	case "S", "D", "I":
		state = "sleeping"
	case "T", "t":
		state = "stopped"
	default:
		state = f[0]
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	cpu, err := strconv.Atoi(f[36])
	if err != nil {
		cpu = -1
	}
	return state, cpu, float64(ut+st) / clockTicks
}
