package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

type wireReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func rawRequest(t *testing.T, nc *nats.Conn, subject, body string) wireReply {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var r wireReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply to %s is not JSON: %q", subject, msg.Data)
	}
	return r
}

func lastSeq(t *testing.T, nc *nats.Conn) uint64 {
	t.Helper()
	r := rawRequest(t, nc, "vmledger.cmd.testhost.list", `{}`)
	var lr struct {
		LastSeq uint64 `json:"last_seq"`
	}
	if r.Error != nil || json.Unmarshal(r.Result, &lr) != nil {
		t.Fatalf("list: %+v", r)
	}
	return lr.LastSeq
}

// Acceptance f: bad input gets a clear {code, message} and appends nothing.
func TestBadInputChangesNothing(t *testing.T) {
	a := startAgent(t, t.TempDir())
	nc, err := nats.Connect(a.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ok := rawRequest(t, nc, "vmledger.cmd.testhost.define", `{"config":{"name":"web1","uuid":"6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}}`)
	if ok.Error != nil {
		t.Fatalf("valid define failed: %+v", ok.Error)
	}
	before := lastSeq(t, nc)

	cfg := func(override string) string {
		return `{"config":{"name":"web2","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}` + override + `}}`
	}
	cases := []struct {
		name, verb, body, code, mention string
	}{
		{"malformed json", "define", `{"config": {`, "invalid", "malformed"},
		{"not an object", "define", `[1,2]`, "invalid", "malformed"},
		{"trailing data", "list", `{} {}`, "invalid", "after"},
		{"unknown field", "start", `{"domain":"web1","bogus":1}`, "invalid", "bogus"},
		{"unknown verb", "frobnicate", `{}`, "invalid", "frobnicate"},
		{"zero memory", "define", cfg(`,"memory_mib":0`), "invalid", "memory_mib"},
		{"duplicate name", "define", `{"config":{"name":"web1","uuid":"0b7d7d64-8c4c-4f5e-9a53-2b7e8f0e6d41","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}}`, "conflict", "web1"},
		{"bad uuid", "define", cfg(`,"uuid":"not-a-uuid"`), "invalid", "uuid"},
		{"unknown clock offset", "define", `{"config":{"name":"web2","memory_mib":64,"vcpus":1,"clock":{"offset":"martian"}}}`, "invalid", "clock.offset"},
		{"clock given twice", "define", cfg(`,"clock":{"offset":"localtime"}`), "invalid", "given twice"},
		{"name with dot", "define", `{"config":{"name":"a.b","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}}`, "invalid", "NATS"},
		{"name with wildcard", "define", `{"config":{"name":"web>","memory_mib":64,"vcpus":1,"clock":{"offset":"utc"}}}`, "invalid", "name"},
		{"hostile disk path", "define", cfg(`,"disks":[{"target":"vda","path":"../../etc/shadow"}]`), "invalid", "path"},
		{"relative kernel", "define", cfg(`,"os":{"kernel":"vmlinuz"}`), "invalid", "os.kernel"},
		{"initrd without kernel", "define", cfg(`,"os":{"initrd":"/i.gz"}`), "invalid", "need a kernel"},
		{"cmdline with newline", "define", cfg(`,"os":{"kernel":"/k","cmdline":"quiet\ninit=/x"}`), "invalid", "os.cmdline"},
		{"unknown feature", "define", cfg(`,"features":["smm"]`), "invalid", "features[0]"},
		{"missing domain", "undefine", `{"domain":"nosuch"}`, "not-found", "nosuch"},
		{"missing domain start", "start", `{"domain":"nosuch"}`, "not-found", "nosuch"},
		{"no domain given", "info", `{}`, "invalid", "domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rawRequest(t, nc, "vmledger.cmd.testhost."+c.verb, c.body)
			if r.Error == nil {
				t.Fatalf("no error; result %s", r.Result)
			}
			if r.Error.Code != c.code || !strings.Contains(strings.ToLower(r.Error.Message), strings.ToLower(c.mention)) {
				t.Fatalf("error %+v, want code %q mentioning %q", *r.Error, c.code, c.mention)
			}
			if got := lastSeq(t, nc); got != before {
				t.Fatalf("last seq %d after bad input, want %d", got, before)
			}
		})
	}
}
