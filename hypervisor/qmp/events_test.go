package qmp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

func TestEventsInterleavedWithReplies(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Receive("query-status"),
		qmptest.Event("STOP", nil),
		qmptest.Event("RTC_CHANGE", map[string]any{"offset": 3600, "qom-path": "/machine/unattached/device[10]"}),
		qmptest.ReplyTo("query-status", qmptest.Return(map[string]any{"status": "paused", "running": false})),
		qmptest.Receive("cont"),
		qmptest.Event("RESUME", nil),
		qmptest.ReplyTo("cont", qmptest.Empty()),
	)
	c := dial(t, srv)
	ctx := ctxTimeout(t, 5*time.Second)
	if st, err := c.QueryStatus(ctx); err != nil || st.Status != "paused" {
		t.Fatalf("QueryStatus = %+v, %v", st, err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 3 {
		names = append(names, nextEvent(t, c).Name)
	}
	if fmt.Sprint(names) != "[STOP RTC_CHANGE RESUME]" {
		t.Errorf("events = %v", names)
	}
}

// TestSlowConsumer: nobody reads Events() while QEMU floods them; replies
// must still flow, and the events are all kept, in order.
func TestSlowConsumer(t *testing.T) {
	const n = 5000
	flood := func(p *qmptest.Peer) error {
		for i := range n {
			if err := qmptest.Event("MIGRATION_PASS", map[string]int{"pass": i})(p); err != nil {
				return err
			}
		}
		return nil
	}
	srv := qmptest.NewServer(t, qmptest.Handshake(), flood,
		qmptest.Expect("query-status", qmptest.Return(map[string]any{"status": "running", "running": true})))
	c := dial(t, srv)
	if _, err := c.QueryStatus(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("reply stalled behind unread events: %v", err)
	}
	if q := c.Stats().QueuedEvents; q != n {
		t.Errorf("QueuedEvents = %d, want %d", q, n)
	}
	for i := range n {
		d, err := nextEvent(t, c).Decode()
		if err != nil || d != (qmp.MigrationPassEvent{Pass: int64(i)}) {
			t.Fatalf("event %d = %+v, %v", i, d, err)
		}
	}
	// The counter drops just after the hand-over, so allow it a moment.
	for deadline := time.Now().Add(2 * time.Second); c.Stats().QueuedEvents != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("QueuedEvents = %d after draining", c.Stats().QueuedEvents)
		}
	}
}

// TestEventsSurviveDisconnect: the SHUTDOWN QEMU sends before hanging up must
// reach the consumer even if it reads only after the disconnect.
func TestEventsSurviveDisconnect(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Event("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"}),
		qmptest.Hangup())
	c := dial(t, srv)
	waitDone(t, c)
	d, err := nextEvent(t, c).Decode()
	if err != nil || d != (qmp.ShutdownEvent{Guest: true, Reason: "guest-shutdown"}) {
		t.Fatalf("got %+v, %v", d, err)
	}
	waitEventsClosed(t, c)
}

func TestEventTimestamp(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Send(`{"timestamp": {"seconds": 1795239806, "microseconds": 325588}, "event": "RESUME"}`))
	c := dial(t, srv)
	ev := nextEvent(t, c)
	want := time.Date(2026, 11, 21, 5, 43, 26, 325588000, time.UTC)
	if !ev.Timestamp.Equal(want) || ev.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp = %v, want %v", ev.Timestamp, want)
	}
}

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		name, data string // data as QEMU 7.2 sends it; "" for none
		want       qmp.EventData
		wantErr    bool
	}{
		{name: "STOP", want: qmp.StopEvent{}},
		{name: "RESUME", want: qmp.ResumeEvent{}},
		{name: "POWERDOWN", want: qmp.PowerdownEvent{}},
		{name: "SHUTDOWN", data: `{"guest": false, "reason": "host-qmp-quit"}`,
			want: qmp.ShutdownEvent{Guest: false, Reason: "host-qmp-quit"}},
		{name: "SHUTDOWN", data: `{"reason": "guest-shutdown"}`, wantErr: true},
		{name: "SHUTDOWN", wantErr: true},
		{name: "RESET", data: `{"guest": true, "reason": "guest-reset"}`,
			want: qmp.ResetEvent{Guest: true, Reason: "guest-reset"}},
		{name: "GUEST_PANICKED", data: `{"action": "pause", "info": {"type": "hyper-v", "arg1": 1}}`,
			want: qmp.GuestPanickedEvent{Action: "pause", Info: json.RawMessage(`{"type": "hyper-v", "arg1": 1}`)}},
		{name: "GUEST_PANICKED", data: `{"action": "poweroff"}`, want: qmp.GuestPanickedEvent{Action: "poweroff"}},
		{name: "RTC_CHANGE", data: `{"offset": -7200, "qom-path": "/machine/unattached/device[10]"}`,
			want: qmp.RTCChangeEvent{Offset: -7200, QOMPath: "/machine/unattached/device[10]"}},
		{name: "RTC_CHANGE", data: `{"offset": 0}`, want: qmp.RTCChangeEvent{}},
		{name: "RTC_CHANGE", data: `{"qom-path": "/x"}`, wantErr: true},
		{name: "RTC_CHANGE", data: `{"offset": "soon"}`, wantErr: true},
		{name: "MIGRATION", data: `{"status": "completed"}`, want: qmp.MigrationEvent{Status: "completed"}},
		{name: "MIGRATION_PASS", data: `{"pass": 3}`, want: qmp.MigrationPassEvent{Pass: 3}},
		{name: "DEVICE_DELETED", data: `{"device": "disk1", "path": "/machine/peripheral/disk1"}`,
			want: qmp.DeviceDeletedEvent{Device: "disk1", Path: "/machine/peripheral/disk1"}},
		{name: "DEVICE_DELETED", data: `{"path": "/machine/peripheral-anon/device[0]/virtio-backend"}`,
			want: qmp.DeviceDeletedEvent{Path: "/machine/peripheral-anon/device[0]/virtio-backend"}},
		{name: "BLOCK_IO_ERROR", data: `{"qom-path": "/machine/peripheral/vd0/virtio-backend", "device": "", "node-name": "drive0", "operation": "write", "action": "stop", "nospace": true, "reason": "No space left on device"}`,
			want: qmp.BlockIOErrorEvent{QOMPath: "/machine/peripheral/vd0/virtio-backend", NodeName: "drive0",
				Operation: "write", Action: "stop", NoSpace: true, Reason: "No space left on device"}},
		{name: "BLOCK_IO_ERROR", data: `[]`, wantErr: true},
		{name: "VSERPORT_CHANGE", data: `{"id": "x", "open": true}`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := qmp.Event{Name: tt.name}
			if tt.data != "" {
				ev.Data = json.RawMessage(tt.data)
			}
			got, err := ev.Decode()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Decode = %+v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode = %#v, want %#v", got, tt.want)
			}
			if got != nil && got.EventName() != tt.name {
				t.Errorf("EventName = %s", got.EventName())
			}
		})
	}
}

func TestEventsChannelClosedOnClose(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Event("STOP", nil), qmptest.Event("RESUME", nil))
	c := dial(t, srv)
	<-srv.ScriptDone()
	c.Close()
	waitEventsClosed(t, c) // undelivered events are dropped, not waited for
	if !errors.Is(c.Err(), qmp.ErrClosed) {
		t.Errorf("Err() = %v", c.Err())
	}
}
