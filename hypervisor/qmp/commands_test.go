package qmp_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp"
	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

func TestHelpers(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.Expect("query-status", qmptest.Return(map[string]any{"status": "prelaunch", "singlestep": false, "running": false})),
		qmptest.Expect("cont", qmptest.Empty()),
		qmptest.Expect("stop", qmptest.Empty()),
		qmptest.Expect("system_reset", qmptest.Empty()),
		qmptest.Expect("system_powerdown", qmptest.Empty()),
		qmptest.Expect("query-migrate", qmptest.Return(map[string]any{})),
		qmptest.Expect("query-migrate", qmptest.Return(map[string]any{"status": "active",
			"ram": map[string]any{"transferred": 1000, "remaining": 500, "total": 2000, "duplicate": 7}})),
		qmptest.ExpectArgs("qom-get", `{"path": "/machine", "property": "type"}`, qmptest.Return("pc-q35-7.2-machine")),
		qmptest.ExpectArgs("qom-get", `{"path": "/nope", "property": "x"}`, qmptest.Fail("DeviceNotFound", "Device '/nope' not found")),
	)
	c := dial(t, srv)
	ctx := ctxTimeout(t, 5*time.Second)

	if st, err := c.QueryStatus(ctx); err != nil || st != (qmp.Status{Status: "prelaunch", Running: false}) {
		t.Errorf("QueryStatus = %+v, %v", st, err)
	}
	// In script order.
	for _, f := range []func() error{
		func() error { return c.Cont(ctx) }, func() error { return c.Stop(ctx) },
		func() error { return c.SystemReset(ctx) }, func() error { return c.SystemPowerdown(ctx) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := c.QueryMigrate(ctx); err != nil || m != (qmp.MigrationInfo{Status: "none"}) {
		t.Errorf("QueryMigrate before any migration = %+v, %v", m, err)
	}
	want := qmp.MigrationInfo{Status: "active", RAM: qmp.MigrationRAM{Transferred: 1000, Remaining: 500, Total: 2000}}
	if m, err := c.QueryMigrate(ctx); err != nil || m != want {
		t.Errorf("QueryMigrate = %+v, %v; want %+v", m, err, want)
	}
	var typ string
	if err := c.QOMGet(ctx, "/machine", "type", &typ); err != nil || typ != "pc-q35-7.2-machine" {
		t.Errorf("QOMGet = %q, %v", typ, err)
	}
	var qerr *qmp.Error
	if err := c.QOMGet(ctx, "/nope", "x", &typ); !errors.As(err, &qerr) || qerr.Class != "DeviceNotFound" {
		t.Errorf("QOMGet of a missing object: %v", err)
	}
}

func TestQuit(t *testing.T) {
	shutdown := qmptest.Event("SHUTDOWN", map[string]any{"guest": false, "reason": "host-qmp-quit"})
	tests := []struct {
		name    string
		script  []qmptest.Step
		wantErr bool
	}{
		{"reply then hangup", []qmptest.Step{qmptest.Receive("quit"), shutdown,
			qmptest.ReplyTo("quit", qmptest.Empty()), qmptest.Hangup()}, false},
		{"hangup before reply", []qmptest.Step{qmptest.Receive("quit"), shutdown, qmptest.Hangup()}, false},
		{"refused", []qmptest.Step{qmptest.Expect("quit", qmptest.Fail("GenericError", "no"))}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := qmptest.NewServer(t, append([]qmptest.Step{qmptest.Handshake()}, tt.script...)...)
			c := dial(t, srv)
			if err := c.Quit(ctxTimeout(t, 5*time.Second)); (err != nil) != tt.wantErr {
				t.Fatalf("Quit = %v, want error: %v", err, tt.wantErr)
			}
		})
	}

	t.Run("already disconnected", func(t *testing.T) {
		srv := qmptest.NewServer(t, qmptest.Handshake(), qmptest.Hangup())
		c := dial(t, srv)
		waitDone(t, c)
		if err := c.Quit(ctxTimeout(t, 5*time.Second)); !errors.Is(err, qmp.ErrDisconnected) {
			t.Fatalf("Quit on a dead connection = %v, want ErrDisconnected", err)
		}
	})
}

func TestRTCTime(t *testing.T) {
	notFound := func(prop string) qmptest.Reply {
		return qmptest.Fail("GenericError", "Property 'microvm-machine."+prop+"' not found")
	}
	tm := func(year, mon, mday, hour, min, sec int) map[string]int {
		return map[string]int{"tm_year": year, "tm_mon": mon, "tm_mday": mday, "tm_hour": hour, "tm_min": min, "tm_sec": sec}
	}
	const alias = `{"path": "/machine", "property": "rtc-time"}`
	tests := []struct {
		name    string
		script  []qmptest.Step
		want    time.Time
		wantErr string
	}{
		{
			name:   "machine alias",
			script: []qmptest.Step{qmptest.ExpectArgs("qom-get", alias, qmptest.Return(tm(126, 10, 21, 5, 43, 17)))},
			want:   time.Date(2026, time.November, 21, 5, 43, 17, 0, time.UTC),
		},
		{
			name:   "january, year 2000",
			script: []qmptest.Step{qmptest.ExpectArgs("qom-get", alias, qmptest.Return(tm(100, 0, 1, 0, 0, 0)))},
			want:   time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC),
		},
		{
			name: "fallback via rtc_state link",
			script: []qmptest.Step{
				qmptest.ExpectArgs("qom-get", alias, notFound("rtc-time")),
				qmptest.ExpectArgs("qom-get", `{"path": "/machine", "property": "rtc_state"}`, qmptest.Return("/machine/unattached/device[9]")),
				qmptest.ExpectArgs("qom-get", `{"path": "/machine/unattached/device[9]", "property": "date"}`, qmptest.Return(tm(120, 1, 3, 4, 5, 6))),
			},
			want: time.Date(2020, time.February, 3, 4, 5, 6, 0, time.UTC),
		},
		{
			name: "no RTC",
			script: []qmptest.Step{
				qmptest.ExpectArgs("qom-get", alias, notFound("rtc-time")),
				qmptest.ExpectArgs("qom-get", `{"path": "/machine", "property": "rtc_state"}`, notFound("rtc_state")),
			},
			wantErr: "no RTC found",
		},
		{
			name:    "month out of range",
			script:  []qmptest.Step{qmptest.Expect("qom-get", qmptest.Return(tm(126, 12, 1, 0, 0, 0)))},
			wantErr: "tm_mon=12 out of range",
		},
		{
			name:    "missing field",
			script:  []qmptest.Step{qmptest.Expect("qom-get", qmptest.Return(map[string]int{"tm_year": 126}))},
			wantErr: "missing tm_mon",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := qmptest.NewServer(t, append([]qmptest.Step{qmptest.Handshake()}, tt.script...)...)
			c := dial(t, srv)
			got, err := c.RTCTime(ctxTimeout(t, 5*time.Second))
			if tt.wantErr != "" {
				if !errContains(err, tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("RTCTime = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
