package main

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// completions runs cobra's hidden __complete as a shell does on TAB and
// returns the offered words and the directive line.
func completions(t *testing.T, run func(args ...string) (string, string, int), args ...string) ([]string, string) {
	t.Helper()
	out, errs, code := run(append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %v: exit %d: %s", args, code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var words []string
	for _, l := range lines[:len(lines)-1] {
		w, _, _ := strings.Cut(l, "\t") // drop the description
		words = append(words, w)
	}
	return words, lines[len(lines)-1]
}

// Issue 15, point 6: TAB completes verbs, domain names (asked of a real
// agent), states and event types; without an agent it offers nothing and
// fails nothing.
func TestShellCompletion(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state")
	a.mustCLI("define", writeFile(t, dir, "web1.json", webJSON))
	a.mustCLI("define", writeFile(t, dir, "db1.yaml", dbYAML))
	for _, tc := range []struct {
		args []string
		want []string // exactly these words
	}{
		{[]string{"sta"}, []string{"start"}},
		{[]string{"start", ""}, []string{"db1", "web1"}},
		{[]string{"info", "w"}, []string{"web1"}},
		{[]string{"history", "d"}, []string{"db1"}},
		{[]string{"list", "--state", "r"}, []string{"running"}},
		{[]string{"list", "--state", "sh"}, []string{"shut off"}},
		{[]string{"events", "--type", "started,stop"}, []string{"started,stopped"}},
		{[]string{"events", "--domain", ""}, []string{"db1", "web1"}},
	} {
		got, dir := completions(t, a.cli, tc.args...)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("complete %q = %q, want %q", tc.args, got, tc.want)
		}
		if tc.args[0] != "sta" && dir != ":4" {
			t.Errorf("complete %q: directive %s, want :4 (no file completion)", tc.args, dir)
		}
	}
	// Every verb is offered at the top level.
	verbs, _ := completions(t, a.cli, "")
	for _, v := range []string{"define", "start", "events", "version", "completion"} {
		if !slices.Contains(verbs, v) {
			t.Errorf("top-level completion lacks %q: %q", v, verbs)
		}
	}
	// No agent: nothing offered, exit 0, no error on the terminal.
	out, errs, code := runCLI(t, "--nats-url", "nats://127.0.0.1:1", "--host", "testhost", "__complete", "start", "")
	if code != 0 || strings.TrimSpace(out) != ":4" || strings.Contains(errs, "error") {
		t.Errorf("without an agent: exit %d, stdout %q, stderr %q; want exit 0 and only the directive", code, out, errs)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := runCLI(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, script does not call __complete", sh, code)
		}
	}
}

// Issue 15, point 5 (version): --version and the version verb report the
// module, version and VCS revision this binary was built with, exactly as
// the toolchain reads them back from it (`go version -m`). A build in a
// git worktree or under GOFLAGS=-buildvcs=false carries no revision (the
// toolchain does not stamp one), and then "unknown" is the right answer.
func TestVersion(t *testing.T) {
	m, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	stamped := map[string]string{"revision": "unknown"}
	for _, line := range strings.Split(string(m), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			stamped["module"], stamped["version"] = f[1], f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			stamped["revision"] = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	if stamped["revision"] == "unknown" {
		t.Logf("this build carries no VCS stamp (worktree or -buildvcs=false): checking the unknown case")
	}
	out, _, code := runCLI(t, "version", "--json")
	var v struct{ Module, Version, Revision string }
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("version --json: exit %d: %s", code, out)
	}
	if v.Module != "github.com/vmledger/vmledger" || v.Module != stamped["module"] || v.Version != stamped["version"] || v.Revision != stamped["revision"] {
		t.Errorf("version --json = %+v, want %v", v, stamped)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, _, code := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "revision "+v.Revision) || !strings.HasPrefix(out, "vmledger "+v.Version+" ") {
			t.Errorf("%v: exit %d, %q; want version %s and revision %s", args, code, out, v.Version, v.Revision)
		}
	}
}
