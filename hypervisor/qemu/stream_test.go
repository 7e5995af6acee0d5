package qemu

import (
	"bytes"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// qemuStreamMagic starts every QEMU migration stream ("QEVM", then the
// stream version, 3 since QEMU 0.13).
var qemuStreamMagic = []byte{'Q', 'E', 'V', 'M', 0, 0, 0, 3}

// TestStreamOutRealQEMU: a pipe passed to a real QEMU with getfd carries a
// `migrate fd:` stream that the test reads whole (issue 8, acceptance d),
// and the guest, resumed, runs on.
func TestStreamOutRealQEMU(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	g := startTest(t, d, tinySpec(t))
	con := openTestConsole(t, g.Console())
	con.waitRTC(t, bootTCG)

	var buf bytes.Buffer
	n, err := g.StreamOut(ctxFor(t, 60*time.Second), &buf)
	if err != nil {
		t.Fatalf("StreamOut: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("StreamOut says %d bytes, the writer got %d", n, buf.Len())
	}
	if !bytes.HasPrefix(buf.Bytes(), qemuStreamMagic) {
		t.Fatalf("stream starts % x, want QEMU's magic % x", buf.Bytes()[:min(16, buf.Len())], qemuStreamMagic)
	}
	// 16 MiB of mostly zero RAM: the stream holds every page's header
	// and the pages the firmware and guest touched.
	if buf.Len() < 64<<10 {
		t.Errorf("stream of %d bytes is too short for a 16 MiB guest", buf.Len())
	}
	st, err := g.Status(ctxFor(t, 10*time.Second))
	if err != nil || st.Status != "postmigrate" {
		t.Fatalf("status after the save = %+v, %v; want postmigrate", st, err)
	}
	if err := g.Resume(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	con.waitRTC(t, eventWait)
}

// TestStreamInRealQEMU: a stream saved through the pipe restores into a
// fresh QEMU started with -incoming defer, which stays paused until
// resumed and then runs the same guest (it goes on printing its clock).
func TestStreamInRealQEMU(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	src := startTest(t, d, spec)
	con := openTestConsole(t, src.Console())
	con.waitRTC(t, bootTCG)
	buf, dst := saveAndStartIncoming(t, d, spec, src)
	st, err := dst.Status(ctxFor(t, 10*time.Second))
	if err != nil || st.Status != "inmigrate" {
		t.Fatalf("status before the stream = %+v, %v; want inmigrate", st, err)
	}
	n, err := dst.StreamIn(ctxFor(t, 60*time.Second), bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("StreamIn: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("StreamIn fed %d bytes of %d", n, buf.Len())
	}
	st, err = dst.Status(ctxFor(t, 10*time.Second))
	if err != nil || st.Status != "paused" {
		t.Fatalf("status after the stream = %+v, %v; want paused", st, err)
	}
	con2 := openTestConsole(t, dst.Console())
	if err := dst.Resume(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	con2.waitRTC(t, eventWait)
}

// TestStreamInTruncatedRealQEMU: a stream cut short fails the restore with
// QEMU's reason; it does not hang and does not report success.
func TestStreamInTruncatedRealQEMU(t *testing.T) {
	d := newTestDriver(t, AccelTCG)
	spec := tinySpec(t)
	src := startTest(t, d, spec)
	buf, dst := saveAndStartIncoming(t, d, spec, src)
	_, err := dst.StreamIn(ctxFor(t, 60*time.Second), bytes.NewReader(buf.Bytes()[:buf.Len()/2]))
	if err == nil {
		t.Fatal("StreamIn of half a stream succeeded")
	}
	t.Logf("half a stream: %v", err)
}

// saveAndStartIncoming saves src into memory, ends it, and starts a QEMU
// for spec waiting for the stream.
func saveAndStartIncoming(t *testing.T, d *Driver, spec domains.StartSpec, src *Guest) (*bytes.Buffer, *Guest) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := src.StreamOut(ctxFor(t, 60*time.Second), &buf); err != nil {
		t.Fatalf("StreamOut: %v", err)
	}
	killAndDetach(t, src)
	waitDone(t, src, 10*time.Second)
	dst, err := d.StartIncoming(ctxFor(t, startBudget), spec)
	if err != nil {
		t.Fatalf("StartIncoming: %v", err)
	}
	t.Cleanup(func() { killAndDetach(t, dst) })
	return &buf, dst
}
