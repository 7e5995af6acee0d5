package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/domains/api"
)

// mustRun runs an offline verb that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("vmledger %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// wantRun runs a verb that must fail with code and say want on stderr.
func wantRun(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	out, errs, got := runCLI(t, args...)
	if got != code || !strings.Contains(errs, want) || !strings.HasPrefix(errs, "error: ") {
		t.Errorf("vmledger %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, want, out, errs)
	}
}

func inspectDomains(t *testing.T, dir string) string {
	t.Helper()
	var in struct {
		LastSeq uint64           `json:"last_seq"`
		Domains []domains.Domain `json:"domains"`
	}
	out := mustRun(t, "log", "inspect", "--state-dir", dir, "--json")
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(in)
	return string(b)
}

// Acceptance b: export then import into a fresh directory gives identical
// sequences, versions and projections; log verify passes on both; tampered
// exports are refused with the line number and leave nothing behind; the
// log verbs refuse while an agent holds the file.
func TestLogExportImportVerify(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	seedLifecycle(t, dir) // start, RTC, pause, resume, stop... of life1
	a := startAgent(t, dir)
	a.mustCLI("define", writeFile(t, root, "web.json", webJSON))
	a.mustCLI("define", writeFile(t, root, "db.yaml", dbYAML))
	a.mustCLI("define", writeFile(t, root, "web2.json", strings.Replace(webJSON, `"memory_mib": 64`, `"memory_mib": 96`, 1)))
	a.mustCLI("undefine", "db1")
	list := a.mustCLI("list", "--json")

	// While the agent holds the file: exit 4, and the message says why.
	for _, verb := range []string{"inspect", "export", "verify"} {
		wantRun(t, exitConflict, "held by a running agent", "log", verb, "--state-dir", dir)
	}
	a.stop() // takes a last snapshot: verify compares it with a replay

	out := mustRun(t, "log", "verify", "--state-dir", dir)
	if !strings.Contains(out, "Result:     OK") || !strings.Contains(out, "equals a fresh replay") {
		t.Fatalf("log verify:\n%s", out)
	}
	exp := filepath.Join(root, "export.jsonl")
	mustRun(t, "log", "export", "--state-dir", dir, "-o", exp)
	data, err := os.ReadFile(exp)
	if err != nil {
		t.Fatal(err)
	}
	if stdout := mustRun(t, "log", "export", "--state-dir", dir); stdout != string(data) {
		t.Fatal("export to stdout and to -o differ")
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 14 {
		t.Fatalf("%d lines exported, want 14:\n%s", len(lines), data)
	}

	fresh := filepath.Join(root, "fresh")
	if out := mustRun(t, "log", "import", exp, "--state-dir", fresh); !strings.Contains(out, "imported 14 events") {
		t.Fatalf("log import: %s", out)
	}
	mustRun(t, "log", "verify", "--state-dir", fresh)
	if again := mustRun(t, "log", "export", "--state-dir", fresh); again != string(data) {
		t.Fatalf("the imported log exports differently:\n%s\nwant:\n%s", again, data)
	}
	if got, want := inspectDomains(t, fresh), inspectDomains(t, dir); got != want {
		t.Fatalf("projections differ:\n%s\n%s", got, want)
	}
	// An agent on the imported log serves the same domains.
	b := startAgent(t, fresh)
	if got := b.mustCLI("list", "--json"); got != list {
		t.Fatalf("list on the imported log:\n%s\nwant:\n%s", got, list)
	}
	b.stop()

	// From stdin too.
	stdinDir := filepath.Join(root, "stdin")
	if _, errs, code := runCLIStdin(t, string(data), "log", "import", "-", "--state-dir", stdinDir); code != 0 {
		t.Fatalf("import from stdin: %d %s", code, errs)
	}
	mustRun(t, "log", "verify", "--state-dir", stdinDir)

	// Never into a directory that holds something.
	wantRun(t, exitConflict, "not empty", "log", "import", exp, "--state-dir", dir)

	// Tampered exports: refused with the line number; nothing is left.
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	tampered := []struct {
		name string
		edit func(l []string) []string
		line int
	}{
		{"gap", func(l []string) []string { return append(l[:4:4], l[5:]...) }, 5},
		{"reordered", func(l []string) []string { l[4], l[5] = l[5], l[4]; return l }, 5},
		{"broken payload", func(l []string) []string {
			l[7] = strings.Replace(l[7], `"payload":{`, `"payload":{"bogus":1,`, 1)
			return l
		}, 8},
		{"torn line", func(l []string) []string { l[10] = l[10][:len(l[10])/2]; return l }, 11},
	}
	for _, tc := range tampered {
		in := writeFile(t, root, tc.name+".jsonl", strings.Join(tc.edit(append([]string(nil), lines...)), "\n")+"\n")
		for _, target := range []string{filepath.Join(root, "new-"+strings.ReplaceAll(tc.name, " ", "-")), empty} {
			wantRun(t, exitUsage, fmt.Sprintf("line %d:", tc.line), "log", "import", in, "--state-dir", target)
			ents, err := os.ReadDir(target)
			if target != empty && !os.IsNotExist(err) {
				t.Errorf("%s: a refused import left %s behind (%v)", tc.name, target, ents)
			}
			if target == empty && len(ents) != 0 {
				t.Errorf("%s: a refused import left %v in an empty directory", tc.name, ents)
			}
		}
	}

	// A damaged log: verify says what and exits 6.
	damaged := filepath.Join(root, "damaged")
	mustRun(t, "log", "import", exp, "--state-dir", damaged)
	db, err := bolt.Open(filepath.Join(damaged, agent.DBFile), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("events")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 6}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, _, code := runCLI(t, "log", "verify", "--state-dir", damaged)
	if code != exitCorrupt || !strings.Contains(out, "sequence 7 follows 5: a gap of 1") {
		t.Fatalf("verify of a damaged log: exit %d\n%s", code, out)
	}
	var rep struct {
		Problems []string `json:"problems"`
	}
	out, _, code = runCLI(t, "log", "verify", "--state-dir", damaged, "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitCorrupt || len(rep.Problems) == 0 {
		t.Fatalf("verify --json: %d %v %s", code, err, out)
	}

	// No log there at all: not found.
	wantRun(t, exitNotFound, "no event log", "log", "inspect", "--state-dir", filepath.Join(root, "nothing"))
	var lr api.ListReply
	if err := json.Unmarshal([]byte(list), &lr); err != nil || len(lr.Domains) != 2 || lr.LastSeq != 14 {
		t.Fatalf("list before export: %v %s", err, list)
	}
}

// Human output of inspect: a summary and the domains table.
func TestLogInspectText(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	steps := seedLifecycle(t, dir)
	out := mustRun(t, "log", "inspect", "--state-dir", dir)
	for _, want := range []string{"Events:", "10", "1 defined, 0 undefined", "rtc-changed 2", "life1", "shut off"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "log", "inspect", "--state-dir", dir, "--at", fmt.Sprint(steps[3].seq))
	if !strings.Contains(out, "As of:") || !strings.Contains(out, "paused") {
		t.Errorf("inspect --at:\n%s", out)
	}
	wantRun(t, exitUsage, "--at", "log", "inspect", "--state-dir", dir, "--at", "soon")
}

// runCLIStdin is runCLI with stdin.
func runCLIStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}
