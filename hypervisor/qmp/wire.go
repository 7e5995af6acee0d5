package qmp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// msgKind is what a decoded line turned out to be.
type msgKind int

const (
	kindGreeting msgKind = iota + 1
	kindReply
	kindEvent
)

// message is one decoded line from the peer. Only the fields of its kind are set.
type message struct {
	kind msgKind

	greeting Greeting

	id     uint64          // reply
	ret    json.RawMessage // reply: the "return" value (nil on error)
	qmpErr *Error          // reply: the "error" object (nil on success)

	event Event
}

// wireLine is the union of every top-level member QMP uses. Pointers and raw
// messages let the decoder tell "absent" from "zero".
type wireLine struct {
	QMP       *wireGreeting   `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *wireError      `json:"error"`
	ID        json.RawMessage `json:"id"`
	Event     *string         `json:"event"`
	Timestamp *wireTimestamp  `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

type wireGreeting struct {
	Version *struct {
		QEMU *struct {
			Major *int `json:"major"`
			Minor *int `json:"minor"`
			Micro *int `json:"micro"`
		} `json:"qemu"`
		Package string `json:"package"`
	} `json:"version"`
	Capabilities *[]string `json:"capabilities"`
}

type wireError struct {
	Class *string `json:"class"`
	Desc  string  `json:"desc"`
}

type wireTimestamp struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

// decodeLine classifies one line. It is strict about the members that decide
// what a line is and lenient about everything else, so that a newer QEMU that
// adds members keeps working while a corrupted stream is caught.
func decodeLine(line []byte) (message, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return message{}, fmt.Errorf("not a JSON object: %s", quote(line))
	}
	var w wireLine
	if err := json.Unmarshal(line, &w); err != nil {
		return message{}, fmt.Errorf("invalid JSON (%v): %s", err, quote(line))
	}
	kinds := 0
	for _, present := range []bool{w.QMP != nil, w.Return != nil || w.Error != nil, w.Event != nil} {
		if present {
			kinds++
		}
	}
	if kinds != 1 {
		return message{}, fmt.Errorf("not exactly one of greeting, reply, event: %s", quote(line))
	}
	switch {
	case w.QMP != nil:
		g, err := w.QMP.validate()
		if err != nil {
			return message{}, fmt.Errorf("bad greeting (%v): %s", err, quote(line))
		}
		return message{kind: kindGreeting, greeting: g}, nil
	case w.Event != nil:
		ev, err := w.event()
		if err != nil {
			return message{}, fmt.Errorf("bad event (%v): %s", err, quote(line))
		}
		return message{kind: kindEvent, event: ev}, nil
	default:
		m, err := w.reply()
		if err != nil {
			return message{}, fmt.Errorf("bad reply (%v): %s", err, quote(line))
		}
		return m, nil
	}
}

func (g *wireGreeting) validate() (Greeting, error) {
	if g.Version == nil || g.Version.QEMU == nil {
		return Greeting{}, errors.New("missing version.qemu")
	}
	q := g.Version.QEMU
	if q.Major == nil || q.Minor == nil || q.Micro == nil {
		return Greeting{}, errors.New("version.qemu needs major, minor and micro")
	}
	if g.Capabilities == nil {
		return Greeting{}, errors.New("missing capabilities")
	}
	return Greeting{
		Version: Version{
			Major: *q.Major, Minor: *q.Minor, Micro: *q.Micro,
			Package: g.Version.Package,
		},
		Capabilities: *g.Capabilities,
	}, nil
}

func (w *wireLine) event() (Event, error) {
	if *w.Event == "" {
		return Event{}, errors.New("empty event name")
	}
	if w.Return != nil || w.ID != nil {
		return Event{}, errors.New("event with reply members")
	}
	ev := Event{Name: *w.Event}
	// QEMU always sends a timestamp; {-1,-1} is its "clock unavailable".
	if ts := w.Timestamp; ts != nil && ts.Seconds >= 0 && ts.Microseconds >= 0 {
		ev.Timestamp = time.Unix(ts.Seconds, ts.Microseconds*int64(time.Microsecond)).UTC()
	}
	if len(w.Data) > 0 && !bytes.Equal(w.Data, []byte("null")) {
		ev.Data = w.Data
	}
	return ev, nil
}

func (w *wireLine) reply() (message, error) {
	if w.Return != nil && w.Error != nil {
		return message{}, errors.New("both return and error")
	}
	// This client numbers every command, so an id-less reply means QEMU could
	// not parse a command we sent: the stream is out of step with us.
	if w.ID == nil {
		return message{}, errors.New("reply without id")
	}
	id, err := strconv.ParseUint(string(w.ID), 10, 64)
	if err != nil {
		return message{}, fmt.Errorf("id %s is not one this client sends", w.ID)
	}
	m := message{kind: kindReply, id: id}
	if w.Error != nil {
		if w.Error.Class == nil || *w.Error.Class == "" {
			return message{}, errors.New("error without class")
		}
		m.qmpErr = &Error{Class: *w.Error.Class, Desc: w.Error.Desc}
		return m, nil
	}
	m.ret = w.Return
	return m, nil
}

// errLineTooLong is returned by readLine for a line over the client's limit.
var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. Unlike bufio.Scanner it
// has no fixed token size; max bounds memory against a runaway peer. The
// returned slice is only valid until the next read from r.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte // only used when a line spans more than one buffer
	for {
		chunk, err := r.ReadSlice('\n')
		n := len(chunk)
		if err == nil {
			n-- // the newline does not count
		}
		if len(buf)+n > max {
			return nil, fmt.Errorf("%w: more than %d bytes", errLineTooLong, max)
		}
		switch {
		case err == nil:
			if len(buf) == 0 { // common case: the whole line was in the buffer
				return chunk[:len(chunk)-1], nil
			}
			buf = append(buf, chunk[:len(chunk)-1]...)
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		default:
			return nil, err
		}
	}
}
