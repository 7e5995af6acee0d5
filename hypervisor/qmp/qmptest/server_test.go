package qmptest_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/qmp/qmptest"
)

// recorder captures the server's test errors instead of failing this test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

func TestScript(t *testing.T) {
	tests := []struct {
		name    string
		script  []qmptest.Step
		send    []string // client lines, each followed by reading one line if wantRead
		want    []string // lines the client must read, in order
		wantErr string   // substring of the server's test error; "" for none
	}{
		{
			name:   "handshake and expect",
			script: []qmptest.Step{qmptest.Handshake(), qmptest.ExpectArgs("x", `{"a": 1}`, qmptest.Return(5))},
			send:   []string{`{"execute": "qmp_capabilities", "id": 1}`, `{"execute": "x", "arguments": {"a": 1}, "id": 2}`},
			want:   []string{qmptest.DefaultGreeting, `{"id":1,"return":{}}`, `{"id":2,"return":5}`},
		},
		{
			name:    "wrong command",
			script:  []qmptest.Step{qmptest.Expect("x", qmptest.Empty())},
			send:    []string{`{"execute": "y", "id": 1}`},
			wantErr: "got command y, want x",
		},
		{
			name:    "wrong arguments",
			script:  []qmptest.Step{qmptest.ExpectArgs("x", `{"a": 1}`, qmptest.Empty())},
			send:    []string{`{"execute": "x", "arguments": {"a": 2}, "id": 1}`},
			wantErr: "arguments",
		},
		{
			name:    "command after script",
			script:  nil,
			send:    []string{`{"execute": "x", "id": 1}`},
			wantErr: "unexpected command after script: x",
		},
		{
			name:   "out of order and fail",
			script: []qmptest.Step{qmptest.Receive("a"), qmptest.Receive("b"), qmptest.ReplyTo("b", qmptest.Fail("GenericError", "no")), qmptest.ReplyTo("a", qmptest.Empty())},
			send:   []string{`{"execute": "a", "id": 1}`, `{"execute": "b", "id": 2}`},
			want:   []string{`{"error":{"class":"GenericError","desc":"no"},"id":2}`, `{"id":1,"return":{}}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			srv := qmptest.NewServer(rec, tt.script...)
			conn, err := net.Dial("unix", srv.Path)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range tt.send {
				fmt.Fprintln(conn, line)
			}
			r := bufio.NewReader(conn)
			for _, want := range tt.want {
				got, err := r.ReadString('\n')
				if err != nil || strings.TrimSpace(got) != want {
					t.Errorf("read %q, %v; want %q", got, err, want)
				}
			}
			conn.Close()
			// The server reports asynchronously; give it a moment.
			for deadline := time.Now().Add(5 * time.Second); tt.wantErr != "" &&
				!strings.Contains(rec.errors(), tt.wantErr) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			srv.Close()
			errs := rec.errors()
			if tt.wantErr == "" && errs != "" {
				t.Errorf("server errors: %s", errs)
			}
			if tt.wantErr != "" && !strings.Contains(errs, tt.wantErr) {
				t.Errorf("server errors %q, want %q", errs, tt.wantErr)
			}
		})
	}
}
