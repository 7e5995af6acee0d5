package qmp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

const greeting72 = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}`

func TestDecodeLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    msgKind
		wantErr string // substring; "" means success
		check   func(t *testing.T, m message)
	}{
		{name: "greeting", line: greeting72, want: kindGreeting, check: func(t *testing.T, m message) {
			v := m.greeting.Version
			if v.Major != 7 || v.Minor != 2 || v.Micro != 22 || !strings.HasPrefix(v.Package, "Debian") {
				t.Errorf("version = %+v", v)
			}
			if len(m.greeting.Capabilities) != 1 || m.greeting.Capabilities[0] != "oob" {
				t.Errorf("capabilities = %v", m.greeting.Capabilities)
			}
		}},
		{name: "greeting no capabilities", line: `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}}}`, wantErr: "missing capabilities"},
		{name: "greeting no version", line: `{"QMP": {"capabilities": []}}`, wantErr: "missing version.qemu"},
		{name: "greeting partial version", line: `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`, wantErr: "major, minor and micro"},
		{name: "return", line: `{"return": {"status": "running"}, "id": 7}`, want: kindReply, check: func(t *testing.T, m message) {
			if m.id != 7 || string(m.ret) != `{"status": "running"}` || m.qmpErr != nil {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "return null", line: `{"return": null, "id": 1}`, want: kindReply},
		{name: "max id", line: `{"return": {}, "id": 18446744073709551615}`, want: kindReply, check: func(t *testing.T, m message) {
			if m.id != 1<<64-1 {
				t.Errorf("id = %d", m.id)
			}
		}},
		{name: "error", line: `{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}`, want: kindReply, check: func(t *testing.T, m message) {
			if m.qmpErr == nil || m.qmpErr.Class != "CommandNotFound" || m.ret != nil {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "error without class", line: `{"id": 3, "error": {"desc": "x"}}`, wantErr: "error without class"},
		{name: "reply without id", line: `{"error": {"class": "GenericError", "desc": "JSON parse error"}}`, wantErr: "reply without id"},
		{name: "string id", line: `{"return": {}, "id": "abc"}`, wantErr: "not one this client sends"},
		{name: "negative id", line: `{"return": {}, "id": -1}`, wantErr: "not one this client sends"},
		{name: "both return and error", line: `{"return": {}, "error": {"class": "X"}, "id": 1}`, wantErr: "both return and error"},
		{name: "event", line: `{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`, want: kindEvent, check: func(t *testing.T, m message) {
			if m.event.Name != "SHUTDOWN" || m.event.Timestamp.UnixMicro() != 1700000000250000 || !json.Valid(m.event.Data) {
				t.Errorf("got %+v", m.event)
			}
		}},
		{name: "event without data", line: `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}`, want: kindEvent, check: func(t *testing.T, m message) {
			if m.event.Data != nil {
				t.Errorf("data = %s, want nil", m.event.Data)
			}
		}},
		{name: "event unknown clock", line: `{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP"}`, want: kindEvent, check: func(t *testing.T, m message) {
			if !m.event.Timestamp.IsZero() {
				t.Errorf("timestamp = %v, want zero", m.event.Timestamp)
			}
		}},
		{name: "empty event name", line: `{"event": ""}`, wantErr: "empty event name"},
		{name: "event with id", line: `{"event": "STOP", "id": 1}`, wantErr: "reply members"},
		{name: "event and return", line: `{"event": "STOP", "return": {}}`, wantErr: "not exactly one"},
		{name: "extra members ignored", line: `{"return": {}, "id": 1, "future": true}`, want: kindReply},
		{name: "trailing whitespace", line: "{\"return\": {}, \"id\": 1}\r", want: kindReply},
		{name: "not JSON", line: `garbage`, wantErr: "not a JSON object"},
		{name: "array", line: `[1, 2]`, wantErr: "not a JSON object"},
		{name: "empty object", line: `{}`, wantErr: "not exactly one"},
		{name: "truncated", line: `{"return": {`, wantErr: "invalid JSON"},
		{name: "two objects", line: `{"return": {}, "id": 1} {"return": {}, "id": 2}`, wantErr: "invalid JSON"},
		{name: "wrong type", line: `{"event": 5}`, wantErr: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeLine([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if m.kind != tt.want {
				t.Fatalf("kind = %d, want %d", m.kind, tt.want)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func TestDecodeLineQuotesHugeGarbage(t *testing.T) {
	_, err := decodeLine(bytes.Repeat([]byte("x"), 2<<20))
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "2097152 bytes") {
		t.Fatalf("err = %.400v", err)
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("a", 1000)
	tests := []struct {
		name    string
		input   string
		max     int
		want    []string
		wantErr error
	}{
		{name: "short lines", input: "a\nbc\n\n", max: 100, want: []string{"a", "bc", ""}, wantErr: io.EOF},
		{name: "spans buffers", input: long + "\nx\n", max: 2000, want: []string{long, "x"}, wantErr: io.EOF},
		{name: "exactly max", input: long + "\n", max: 1000, want: []string{long}, wantErr: io.EOF},
		{name: "over max", input: long + "a\n", max: 1000, wantErr: errLineTooLong},
		{name: "over max without newline", input: long + "a", max: 1000, wantErr: errLineTooLong},
		{name: "partial line at EOF", input: "abc", max: 100, wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.input), 16) // force chunking
			var got []string
			var err error
			for {
				var line []byte
				line, err = readLine(r, tt.max)
				if err != nil {
					break
				}
				got = append(got, string(line))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

type pathArgs struct {
	Path string `json:"path"`
}

func TestEncodeCommand(t *testing.T) {
	var nilArgs *pathArgs
	tests := []struct {
		name    string
		cmd     string
		args    any
		want    string
		wantErr string
	}{
		{name: "no args", cmd: "cont", want: `{"execute":"cont","id":5}`},
		{name: "struct args", cmd: "qom-get", args: pathArgs{"/machine"}, want: `{"execute":"qom-get","arguments":{"path":"/machine"},"id":5}`},
		{name: "map args", cmd: "x", args: map[string]int{"a": 1}, want: `{"execute":"x","arguments":{"a":1},"id":5}`},
		{name: "typed nil", cmd: "x", args: nilArgs, want: `{"execute":"x","id":5}`},
		{name: "raw args", cmd: "x", args: json.RawMessage(`{"b":true}`), want: `{"execute":"x","arguments":{"b":true},"id":5}`},
		{name: "array args", cmd: "x", args: []int{1}, wantErr: "must encode to a JSON object"},
		{name: "string args", cmd: "x", args: "s", wantErr: "must encode to a JSON object"},
		{name: "unencodable", cmd: "x", args: map[string]any{"f": func() {}}, wantErr: "encode arguments"},
		{name: "empty name", cmd: "", wantErr: "empty command name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeCommand(tt.cmd, tt.args, 5)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want+"\n" {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// FuzzDecode checks that no input makes the line decoder panic, and that
// whatever it accepts is internally consistent (the reader relies on it).
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		greeting72,
		`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 0}}, "capabilities": []}}`,
		`{"return": {}, "id": 1}`,
		`{"return": {"status": "prelaunch", "singlestep": false, "running": false}, "id": 2}`,
		`{"return": null, "id": 3}`,
		`{"id": 1, "error": {"class": "GenericError", "desc": "x"}}`,
		`{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'garbage'"}}`,
		`{"timestamp": {"seconds": 1795239806, "microseconds": 325588}, "event": "RESUME"}`,
		`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RTC_CHANGE", "data": {"offset": -3600, "qom-path": "/machine/unattached/device[10]"}}`,
		`{"event": "STOP", "data": null}`,
		`{"return": {}, "id": "x"}`,
		`{"return": {}, "id": 1.5}`,
		`{"return": {}, "error": null, "id": 1}`,
		`{"QMP": null}`,
		`garbage`, ``, `{`, `[]`, `null`, `{"id": 99999999999999999999999}`,
		"{\"return\": \"\xff\xfe\", \"id\": 1}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeLine(line)
		if err != nil {
			if len(err.Error()) > 1000 {
				t.Errorf("error message of %d bytes: lines must be quoted truncated", len(err.Error()))
			}
			return
		}
		switch m.kind {
		case kindGreeting:
		case kindReply:
			if (m.ret == nil) == (m.qmpErr == nil) {
				t.Errorf("reply must have exactly one of return and error: %+v", m)
			}
			if m.qmpErr != nil && m.qmpErr.Class == "" {
				t.Errorf("error without class accepted")
			}
		case kindEvent:
			if m.event.Name == "" {
				t.Errorf("event without name accepted")
			}
		default:
			t.Fatalf("accepted with kind %d", m.kind)
		}
		// Surrounding whitespace never changes the verdict.
		if _, err := decodeLine(append(append([]byte(" "), line...), "\r\n"...)); err != nil {
			t.Errorf("padded line rejected: %v", err)
		}
	})
}
