package qemu

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// dumpPeer answers query-dump with active, then final after n queries.
func dumpPeer(final string, n int, onQuery func(i int)) qmptest.Step {
	return func(p *qmptest.Peer) error {
		for i := 1; ; i++ {
			c, err := p.ReadCommand()
			if err != nil {
				return err
			}
			if c.Execute != "query-dump" {
				return errors.New("unexpected " + c.Execute + " during a dump")
			}
			if onQuery != nil {
				onQuery(i)
			}
			st := qmp.DumpInfo{Status: "active", Completed: uint64(i) << 20, Total: 8 << 20}
			if i >= n {
				st.Status = final
			}
			if err := p.Reply(c, qmptest.Return(st)); err != nil {
				return err
			}
			if st.Status != "active" {
				return nil
			}
		}
	}
}

// TestQEMUDumpFake: QEMU's own dump goes to the passed fd, progress is
// reported from query-dump, QEMU's failure and a refused getfd are
// errors, and an abort still waits for QEMU to finish (QEMU 7.2 cannot
// cancel a dump) before it returns the abort's cause.
func TestQEMUDumpFake(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "dump")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	abort := errors.New("aborted by request")
	tests := []struct {
		name  string
		steps func(cancel context.CancelCauseFunc) []qmptest.Step
		want  string // "" success
		is    error
	}{
		{name: "completed", steps: func(context.CancelCauseFunc) []qmptest.Step {
			return []qmptest.Step{
				qmptest.ExpectFile("getfd", nil, qmptest.Empty()),
				qmptest.ExpectArgs("dump-guest-memory", `{"paging": false, "protocol": "fd:vmledger-dump-1", "detach": true, "format": "kdump-zlib"}`, qmptest.Empty()),
				dumpPeer("completed", 3, nil)}
		}},
		{name: "failed in QEMU", want: "QEMU reports the dump failed", steps: func(context.CancelCauseFunc) []qmptest.Step {
			return []qmptest.Step{
				qmptest.ExpectFile("getfd", nil, qmptest.Empty()),
				qmptest.Expect("dump-guest-memory", qmptest.Empty()),
				dumpPeer("failed", 2, nil)}
		}},
		{name: "getfd refused", want: "no fd", steps: func(context.CancelCauseFunc) []qmptest.Step {
			return []qmptest.Step{qmptest.ExpectFile("getfd", nil, qmptest.Fail("GenericError", "no fd"))}
		}},
		{name: "refused, fd closed", want: "dump in progress", steps: func(context.CancelCauseFunc) []qmptest.Step {
			return []qmptest.Step{
				qmptest.ExpectFile("getfd", nil, qmptest.Empty()),
				qmptest.Expect("dump-guest-memory", qmptest.Fail("GenericError", "dump in progress")),
				qmptest.ExpectArgs("closefd", `{"fdname": "vmledger-dump-1"}`, qmptest.Empty())}
		}},
		{name: "aborted: waits for QEMU", is: abort, steps: func(cancel context.CancelCauseFunc) []qmptest.Step {
			return []qmptest.Step{
				qmptest.ExpectFile("getfd", nil, qmptest.Empty()),
				qmptest.Expect("dump-guest-memory", qmptest.Empty()),
				dumpPeer("completed", 4, func(i int) {
					if i == 1 {
						cancel(abort)
					}
				})}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			g := fakeGuest(t, tt.steps(cancel)...)
			var last uint64
			err := g.QEMUDump(ctx, out, "kdump-zlib", func(done, total uint64) {
				if total != 8<<20 || done < last {
					t.Errorf("progress %d of %d after %d", done, total, last)
				}
				last = done
			})
			switch {
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("error %v, want %v", err, tt.is)
				}
				if last != 4<<20 {
					t.Fatalf("returned before QEMU finished: last progress %d", last)
				}
			case tt.want == "":
				if err != nil {
					t.Fatal(err)
				}
				if last != 3<<20 {
					t.Fatalf("last progress %d", last)
				}
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDIMMsFake: query-memory-devices gives each DIMM's address, size and
// file in the run directory; a memory device a dump could not hold (not a
// DIMM, or not backed by its own file) is an error, never a silently
// short dump.
func TestDIMMsFake(t *testing.T) {
	dimm := func(id, memdev string) map[string]any {
		return map[string]any{"type": "dimm", "data": map[string]any{
			"id": id, "addr": 1 << 32, "size": 128 << 20, "memdev": memdev, "slot": 0, "node": 0}}
	}
	tests := []struct {
		name string
		ret  []map[string]any
		want string // "" success
	}{
		{"none", []map[string]any{}, ""},
		{"one", []map[string]any{dimm("m1", "/objects/mem-m1")}, ""},
		{"other backend", []map[string]any{dimm("m1", "/objects/ram0")}, "not by its own file"},
		{"not a dimm", []map[string]any{{"type": "virtio-mem", "data": map[string]any{"id": "v1"}}}, "cannot be dumped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := fakeGuest(t, qmptest.Expect("query-memory-devices", qmptest.Return(tt.ret)))
			got, err := g.DIMMs(ctxFor(t, 5*time.Second))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.ret) {
				t.Fatalf("%d DIMMs, want %d", len(got), len(tt.ret))
			}
			for _, d := range got {
				if d.Addr != 1<<32 || d.Size != 128<<20 || d.Path != dimmFile(g.paths, "m1") {
					t.Fatalf("DIMM %+v", d)
				}
			}
		})
	}
}
