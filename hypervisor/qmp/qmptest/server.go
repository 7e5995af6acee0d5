// Package qmptest provides a scriptable fake QMP peer, in the manner of
// net/http/httptest: a Server listens on a unix socket in a test's temporary
// directory, accepts one client and plays a script of Steps against it.
//
// It does not import package qmp, so qmp's own tests can use it.
package qmptest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// Server is a fake QEMU monitor socket.
type Server struct {
	// Path is the unix socket to dial.
	Path string

	t  testing.TB
	ln net.Listener

	mu       sync.Mutex
	conn     net.Conn
	received []Command

	closeOnce  sync.Once
	stopped    chan struct{} // Close was called
	done       chan struct{} // the server goroutine returned
	scriptDone chan struct{} // the last step returned
}

// NewServer starts a server that plays steps against the first client.
// After the last step it keeps reading until the client hangs up and reports
// any further command as a test error. Close is registered with t.Cleanup.
// A script usually starts with Handshake().
func NewServer(t testing.TB, steps ...Step) *Server {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("qmptest: listen: %v", err)
	}
	s := &Server{
		Path:       path,
		t:          t,
		ln:         ln,
		stopped:    make(chan struct{}),
		done:       make(chan struct{}),
		scriptDone: make(chan struct{}),
	}
	go s.serve(steps)
	t.Cleanup(s.Close)
	return s
}

// socketPath keeps the path under the 108-byte sun_path limit even for long
// test names or a long TMPDIR.
func socketPath(t testing.TB) string {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	if len(path) < 100 {
		return path
	}
	dir, err := os.MkdirTemp("/tmp", "qmpt")
	if err != nil {
		t.Fatalf("qmptest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "qmp.sock")
}

// Close stops the server: it stops listening, hangs up on the client and
// waits for the script to stop. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stopped)
		s.ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	})
	<-s.done
}

// ScriptDone is closed when the last step has returned.
func (s *Server) ScriptDone() <-chan struct{} { return s.scriptDone }

// Commands returns every command received so far, in order.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.received...)
}

func (s *Server) isStopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

func (s *Server) serve(steps []Step) {
	defer close(s.done)
	defer s.closeScriptDone()
	conn, err := s.ln.Accept()
	if err != nil {
		if !s.isStopped() {
			s.t.Errorf("qmptest: accept: %v", err)
		}
		return
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	defer conn.Close()
	if s.isStopped() { // Close raced with Accept and missed the conn
		return
	}

	fr := &fdReader{conn: conn}
	defer fr.closeAll()
	p := &Peer{srv: s, conn: conn, fds: fr, r: bufio.NewReader(fr)}
	for i, step := range steps {
		if err := step(p); err != nil {
			if !s.isStopped() && !p.hungUp {
				s.t.Errorf("qmptest: step %d: %v", i, err)
			}
			return
		}
		if p.hungUp {
			return
		}
	}
	s.closeScriptDone()
	// Drain: the client may still send commands the script did not expect.
	for {
		c, err := p.ReadCommand()
		if err != nil {
			if !s.isStopped() && !isEOF(err) {
				s.t.Errorf("qmptest: after script: %v", err)
			}
			return
		}
		s.t.Errorf("qmptest: unexpected command after script: %s", c.Execute)
	}
}

func (s *Server) closeScriptDone() {
	select {
	case <-s.scriptDone:
	default:
		close(s.scriptDone)
	}
}

// isEOF tells a client hanging up (normal at the end of a script) from a
// real failure.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
