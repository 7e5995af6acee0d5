package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// fakeGuest is a Guest whose monitor is a qmptest script and whose
// "process" never exits: the error paths of the stream methods, which a
// real QEMU does not produce on demand.
func fakeGuest(t *testing.T, steps ...qmptest.Step) *Guest {
	t.Helper()
	srv := qmptest.NewServer(t, append([]qmptest.Step{qmptest.Handshake()}, steps...)...)
	mon, err := qmp.Dial(ctxFor(t, 5*time.Second), "unix", srv.Path)
	if err != nil {
		t.Fatal(err)
	}
	proc := &process{pid: -1, done: make(chan struct{}), stopCh: make(chan struct{})}
	dir := t.TempDir()
	g := newGuest(testLogger(t), uuid.New(), PathsFor(dir, uuid.New()), AccelTCG, proc, mon)
	t.Cleanup(func() {
		close(g.stop)
		mon.Close()
		<-g.pumpDone
	})
	return g
}

// migrationPeer answers query-migrate with "active" until migrate_cancel
// (then "cancelled") or, with finalAfter > 0, with final after that many
// queries; the step ends once a final status was sent.
func migrationPeer(final qmp.MigrationInfo, finalAfter int) qmptest.Step {
	return func(p *qmptest.Peer) error {
		status := qmp.MigrationInfo{Status: "active"}
		for queries := 0; ; {
			c, err := p.ReadCommand()
			if err != nil {
				return err
			}
			switch c.Execute {
			case "migrate_cancel":
				status = qmp.MigrationInfo{Status: qmp.MigrationCancelled}
				if err := p.Reply(c, qmptest.Empty()); err != nil {
					return err
				}
			case "query-migrate":
				queries++
				if finalAfter > 0 && queries >= finalAfter {
					status = final
				}
				if err := p.Reply(c, qmptest.Return(status)); err != nil {
					return err
				}
				if qmp.MigrationDone(status.Status) {
					return nil
				}
			default:
				return fmt.Errorf("unexpected command %s during the migration", c.Execute)
			}
		}
	}
}

// keepFile holds the fd QEMU would write to, for the script to use.
type keepFile struct{ f *os.File }

func (k *keepFile) take(data string) func(*os.File) error {
	return func(f *os.File) error {
		dup, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			return err
		}
		k.f = os.NewFile(uintptr(dup), "qemu-side")
		if data != "" {
			_, err = k.f.WriteString(data)
		}
		return err
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// TestStreamOutErrors: every way a save can fail is reported with its
// cause, and a failed or abandoned migration is cancelled in QEMU.
func TestStreamOutErrors(t *testing.T) {
	begin := []qmptest.Step{
		qmptest.ExpectArgs("migrate-set-parameters", fmt.Sprintf(`{"max-bandwidth": %d}`, qmp.UnlimitedBandwidth), qmptest.Empty()),
	}
	tests := []struct {
		name    string
		steps   func(k *keepFile) []qmptest.Step
		w       io.Writer
		timeout time.Duration
		want    string
		is      error
	}{
		{
			name: "bandwidth refused",
			steps: func(*keepFile) []qmptest.Step {
				return []qmptest.Step{qmptest.Expect("migrate-set-parameters", qmptest.Fail("GenericError", "no such parameter"))}
			},
			want: "no such parameter",
		},
		{
			name: "getfd refused",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin, qmptest.ExpectFile("getfd", nil, qmptest.Fail("GenericError", "no fd")))
			},
			want: "getfd: qmp error GenericError: no fd",
		},
		{
			name: "migrate refused, fd closed",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin,
					qmptest.ExpectFile("getfd", nil, qmptest.Empty()),
					qmptest.Expect("migrate", qmptest.Fail("GenericError", "migration is disabled")),
					qmptest.ExpectArgs("closefd", `{"fdname": "vmledger-out-1"}`, qmptest.Empty()))
			},
			want: "migration is disabled",
		},
		{
			name: "migration failed in QEMU",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin,
					qmptest.ExpectFile("getfd", k.take("QEVM"), qmptest.Empty()),
					qmptest.ExpectArgs("migrate", `{"uri": "fd:vmledger-out-1"}`, qmptest.Empty()),
					migrationPeer(qmp.MigrationInfo{Status: qmp.MigrationFailed, ErrorDesc: "disk on fire"}, 2))
			},
			w:    io.Discard,
			want: "migration failed: disk on fire",
		},
		{
			name: "writer fails (disk full): cancelled",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin,
					qmptest.ExpectFile("getfd", k.take("QEVM"), qmptest.Empty()),
					qmptest.Expect("migrate", qmptest.Empty()),
					migrationPeer(qmp.MigrationInfo{}, 0))
			},
			w:  failingWriter{syscall.ENOSPC},
			is: syscall.ENOSPC,
		},
		{
			name: "monitor lost",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin,
					qmptest.ExpectFile("getfd", k.take("QEVM"), qmptest.Empty()),
					qmptest.Expect("migrate", qmptest.Empty()),
					qmptest.Hangup())
			},
			w:    io.Discard,
			want: "monitor lost during the migration",
			is:   qmp.ErrDisconnected,
		},
		{
			name: "ctx ends: cancelled",
			steps: func(k *keepFile) []qmptest.Step {
				return append(begin,
					qmptest.ExpectFile("getfd", k.take(""), qmptest.Empty()),
					qmptest.Expect("migrate", qmptest.Empty()),
					migrationPeer(qmp.MigrationInfo{}, 0))
			},
			w:       io.Discard,
			timeout: 300 * time.Millisecond,
			is:      context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &keepFile{}
			t.Cleanup(func() {
				if k.f != nil {
					k.f.Close()
				}
			})
			g := fakeGuest(t, tt.steps(k)...)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			w := tt.w
			if w == nil {
				w = io.Discard
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := g.StreamOut(ctx, w)
			if err == nil {
				t.Fatal("StreamOut succeeded")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q, want errors.Is %v", err, tt.is)
			}
		})
	}
}

// TestStreamInReaderError: a source that fails mid-way (a damaged image)
// ends QEMU's input, and the error is the source's, not a hang.
func TestStreamInReaderError(t *testing.T) {
	k := &keepFile{}
	t.Cleanup(func() {
		if k.f != nil {
			k.f.Close()
		}
	})
	damaged := errors.New("chunk 3 at offset 4096: checksum mismatch")
	g := fakeGuest(t,
		qmptest.ExpectFile("getfd", k.take(""), qmptest.Empty()),
		qmptest.ExpectArgs("migrate-incoming", `{"uri": "fd:vmledger-in-1"}`, qmptest.Empty()),
		migrationPeer(qmp.MigrationInfo{Status: qmp.MigrationFailed, ErrorDesc: "load of migration failed"}, 3))
	r := io.MultiReader(strings.NewReader("QEVM"), iotestErrReader{damaged})
	_, err := g.StreamIn(ctxFor(t, 10*time.Second), r)
	if !errors.Is(err, damaged) {
		t.Fatalf("StreamIn error %v, want the source's %v", err, damaged)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
