package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

const webJSON = `{
  "name": "web1",
  "uuid": "6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11",
  "memory_mib": 64,
  "vcpus": 1,
  "clock": {"offset": "variable", "adjustment": 3600, "basis": "utc"}
}`

const dbYAML = `name: db1
memory_mib: 128
vcpus: 2
machine: q35
clock:
  offset: localtime
`

// Acceptance a: the built binary, an agent with embedded NATS, and define,
// list, info, config, undefine from the CLI with their outputs and exit codes.
func TestCLIDefineListInfoConfigUndefine(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state")
	web := writeFile(t, dir, "web1.json", webJSON)
	db := writeFile(t, dir, "db1.yaml", dbYAML)

	out := a.mustCLI("define", web)
	if !strings.Contains(out, "Domain web1 defined") || !strings.Contains(out, "seq 1") {
		t.Fatalf("define output: %q", out)
	}
	out = a.mustCLI("define", db, "--json")
	var res domains.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Name != "db1" || len(res.Seqs) != 1 || res.Seqs[0] != 2 {
		t.Fatalf("define --json: %v %+v", err, res)
	}

	out = a.mustCLI("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "db1 ") || !strings.HasPrefix(lines[2], "web1 ") {
		t.Fatalf("list output:\n%s", out)
	}
	if !strings.Contains(lines[2], "shut off") {
		t.Fatalf("list state: %q", lines[2])
	}
	var lr api.ListReply
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &lr); err != nil || len(lr.Domains) != 2 || lr.LastSeq != 2 {
		t.Fatalf("list --json: %v %+v", err, lr)
	}

	out = a.mustCLI("info", "web1")
	for _, want := range []string{"Name:", "web1", "6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11", "shut off", "64 MiB", "variable, adjustment +3600s, basis utc"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	var d domains.Domain
	if err := json.Unmarshal([]byte(a.mustCLI("info", "6f1b9a52-2f4e-4d0b-9d7e-0a5c3e1f2b11", "--json")), &d); err != nil || d.Config.Name != "web1" || d.Version != 1 {
		t.Fatalf("info --json by uuid: %v %+v", err, d)
	}

	var c domains.Config
	if err := json.Unmarshal([]byte(a.mustCLI("config", "db1")), &c); err != nil {
		t.Fatal(err)
	}
	if c.MemoryMiB != 128 || c.VCPUs != 2 || c.Machine != "q35" || c.Clock.Offset != "localtime" {
		t.Fatalf("config db1: %+v", c)
	}
	if y := a.mustCLI("config", "db1", "--yaml"); !strings.Contains(y, "memory_mib: 128") {
		t.Fatalf("config --yaml:\n%s", y)
	}

	// Exit codes a script can rely on.
	checkExit(t, a, 3, "info", "nosuch")
	checkExit(t, a, 3, "undefine", "nosuch")
	if out := a.mustCLI("define", web); !strings.Contains(out, "nothing changed") { // same config again: a no-op
		t.Fatalf("define of the same config again: %q", out)
	}
	checkExit(t, a, 2, "info") // missing argument: usage
	checkExit(t, a, 2, "list", "--bogus-flag")
	checkExit(t, a, 2, "define", writeFile(t, dir, "bad.json", `{"name":"x","memory_mib":0,"vcpus":1}`))
	checkExit(t, a, 2, "define", writeFile(t, dir, "typo.json", `{"name":"x","memroy_mib":64,"vcpus":1}`))

	out = a.mustCLI("undefine", "web1")
	if !strings.Contains(out, "Domain web1 undefined") {
		t.Fatalf("undefine output: %q", out)
	}
	checkExit(t, a, 3, "info", "web1")
	if out := a.mustCLI("list"); strings.Contains(out, "web1") || !strings.Contains(out, "db1") {
		t.Fatalf("list after undefine:\n%s", out)
	}

	// No agent: unavailable.
	_, _, code := runCLI(t, "--nats-url", "nats://127.0.0.1:1", "--timeout", "2s", "list")
	if code != 5 {
		t.Fatalf("list without agent: exit %d, want 5", code)
	}
}

func checkExit(t testing.TB, a *agentProc, want int, args ...string) {
	t.Helper()
	out, errs, code := a.cli(args...)
	if code != want {
		t.Errorf("vmledger %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	if code != 0 && !strings.HasPrefix(errs, "error: ") {
		t.Errorf("vmledger %s: stderr should start with 'error: ': %q", strings.Join(args, " "), errs)
	}
}

// Acceptance e: the same command ID twice acts once, and both replies are
// the same.
func TestCLICommandIDIdempotent(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state")
	web := writeFile(t, dir, "web1.json", webJSON)
	first := a.mustCLI("define", web, "--command-id", "retry-1", "--json")
	second := a.mustCLI("define", web, "--command-id", "retry-1", "--json")
	if first != second {
		t.Fatalf("replies differ:\n%s\n%s", first, second)
	}
	var lr api.ListReply
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &lr); err != nil || lr.LastSeq != 1 {
		t.Fatalf("after retry: %v last seq %d, want 1", err, lr.LastSeq)
	}
	// Without the same ID, the same config again is a no-op (virsh
	// define): it says so and appends nothing.
	if out := a.mustCLI("define", web); !strings.Contains(out, "nothing changed") {
		t.Fatalf("define of the same config, another ID: %q", out)
	}
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &lr); err != nil || lr.LastSeq != 1 {
		t.Fatalf("after the same define again: %v last seq %d, want 1", err, lr.LastSeq)
	}
}
