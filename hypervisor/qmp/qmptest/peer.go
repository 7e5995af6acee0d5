package qmptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Command is a command as the fake received it.
type Command struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        json.RawMessage `json:"id,omitempty"`
	// Files are the descriptors (SCM_RIGHTS) that arrived with the bytes
	// read up to the end of this command. The server closes them when the
	// connection ends; a step that keeps one must Dup it.
	Files []*os.File `json:"-"`
}

// Peer is the server side of one connection, as seen by a Step.
type Peer struct {
	srv    *Server
	conn   net.Conn
	r      *bufio.Reader
	fds    *fdReader
	held   []Command // received by Receive, not yet answered
	hungUp bool
}

// ReadCommand reads and records the next command.
func (p *Peer) ReadCommand() (Command, error) {
	line, err := p.r.ReadBytes('\n')
	if err != nil {
		return Command{}, fmt.Errorf("reading command: %w", err)
	}
	var c Command
	if err := json.Unmarshal(line, &c); err != nil {
		return Command{}, fmt.Errorf("command is not JSON (%v): %q", err, line)
	}
	if c.Execute == "" {
		return Command{}, fmt.Errorf("command without execute: %q", line)
	}
	c.Files = p.fds.take()
	p.srv.mu.Lock()
	p.srv.received = append(p.srv.received, c)
	p.srv.mu.Unlock()
	return c, nil
}

// WriteLine sends line followed by a newline, in one write.
func (p *Peer) WriteLine(line []byte) error {
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if _, err := p.conn.Write(buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Reply answers c with r, echoing c's id.
func (p *Peer) Reply(c Command, r Reply) error {
	line, err := r.encode(c.ID)
	if err != nil {
		return err
	}
	return p.WriteLine(line)
}

// Hangup closes the connection; the script ends after the current step.
func (p *Peer) Hangup() error {
	p.hungUp = true
	return p.conn.Close()
}

// Reply is what the fake answers to a command.
type Reply struct {
	ret        any
	class      string
	desc       string
	isErr      bool
	overrideID json.RawMessage
}

// Return answers {"return": v}.
func Return(v any) Reply { return Reply{ret: v} }

// Empty answers {"return": {}}, QEMU's reply to most action commands.
func Empty() Reply { return Reply{ret: struct{}{}} }

// Fail answers {"error": {"class": class, "desc": desc}}.
func Fail(class, desc string) Reply { return Reply{class: class, desc: desc, isErr: true} }

// WithID returns r sent with id (raw JSON, e.g. `999` or `"x"`) instead of
// the command's id, to test a client's handling of bogus ids. An empty id
// omits the member.
func (r Reply) WithID(id string) Reply {
	r.overrideID = json.RawMessage(id)
	if id == "" {
		r.overrideID = json.RawMessage{}
	}
	return r
}

func (r Reply) encode(id json.RawMessage) ([]byte, error) {
	if r.overrideID != nil {
		id = r.overrideID
	}
	msg := map[string]any{}
	if len(id) > 0 {
		msg["id"] = id
	}
	if r.isErr {
		msg["error"] = map[string]string{"class": r.class, "desc": r.desc}
	} else {
		msg["return"] = r.ret
	}
	line, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode reply: %w", err)
	}
	return line, nil
}

// fdReader reads the connection with recvmsg so that descriptors passed
// with SCM_RIGHTS are kept (a plain read would make the kernel discard
// them), as QEMU's monitor does. Descriptors are attached to the command
// whose line completes after they arrived: the client sends them with the
// command's first bytes.
type fdReader struct {
	conn net.Conn
	mu   sync.Mutex
	got  []*os.File // received, not yet taken by a command
	all  []*os.File // every one received, closed at the end
}

func (r *fdReader) Read(b []byte) (int, error) {
	uc, ok := r.conn.(*net.UnixConn)
	if !ok {
		return r.conn.Read(b)
	}
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := uc.ReadMsgUnix(b, oob)
	if oobn > 0 {
		r.keep(oob[:oobn])
	}
	if n < 0 { // recvmsg's -1 on error
		n = 0
	}
	return n, err
}

func (r *fdReader) keep(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			f := os.NewFile(uintptr(fd), fmt.Sprintf("qmptest-fd-%d", fd))
			r.got = append(r.got, f)
			r.all = append(r.all, f)
		}
	}
}

func (r *fdReader) take() []*os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *fdReader) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.all {
		f.Close()
	}
	r.all = nil
}
