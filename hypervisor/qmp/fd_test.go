package qmp_test

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// TestGetFDPassesDescriptor: the descriptor arrives with the getfd command
// itself (SCM_RIGHTS on the command's bytes) and is the caller's pipe: what
// the peer writes into it comes out of the caller's read end.
func TestGetFDPassesDescriptor(t *testing.T) {
	write := func(f *os.File) error {
		_, err := f.WriteString("QEVM")
		return err
	}
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.ExpectFile("getfd", write, qmptest.Empty()),
		qmptest.ExpectArgs("closefd", `{"fdname": "mig"}`, qmptest.Empty()))
	c := dial(t, srv)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if err := c.GetFD(ctxTimeout(t, 5*time.Second), "mig", pw); err != nil {
		t.Fatalf("GetFD: %v", err)
	}
	pw.Close()
	if err := c.CloseFD(ctxTimeout(t, 5*time.Second), "mig"); err != nil {
		t.Fatalf("CloseFD: %v", err)
	}
	cmds := srv.Commands()
	if len(cmds) != 3 || string(cmds[1].Arguments) != `{"fdname":"mig"}` {
		t.Errorf("commands = %+v", cmds)
	}
	c.Close()
	srv.Close() // closes the peer's copy: the pipe reaches end of file
	got, err := io.ReadAll(pr)
	if err != nil || string(got) != "QEVM" {
		t.Errorf("read %q, %v through the passed pipe; want QEVM", got, err)
	}
}

// TestGetFDErrors: bad names are refused before anything is sent, and
// QEMU's refusal is returned as such.
func TestGetFDErrors(t *testing.T) {
	srv := qmptest.NewServer(t, qmptest.Handshake(),
		qmptest.ExpectFile("getfd", nil, qmptest.Fail("GenericError", "No file descriptor supplied via SCM_RIGHTS")))
	c := dial(t, srv)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	for _, name := range []string{"", "1abc", strings.Repeat("x", 65)} {
		if err := c.GetFD(ctx, name, f); err == nil {
			t.Errorf("GetFD(%q) succeeded", name)
		}
	}
	if err := c.GetFD(ctx, "ok", nil); err == nil {
		t.Error("GetFD with a nil file succeeded")
	}
	err = c.GetFD(ctx, "ok", f)
	if err == nil || !strings.Contains(err.Error(), "SCM_RIGHTS") {
		t.Errorf("GetFD = %v, want QEMU's refusal", err)
	}
	if n := len(srv.Commands()); n != 2 {
		t.Errorf("%d commands reached the peer, want 2 (handshake, one getfd)", n)
	}
}
