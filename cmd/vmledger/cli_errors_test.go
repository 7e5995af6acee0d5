package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// goIsm matches what only a Go programmer reads: package prefixes of
// library errors, Go type names, reflection words, fmt's bad verbs.
var goIsm = regexp.MustCompile(`(^|[\s(])(json|yaml): |\*?domains\.|\bstruct\b|[Uu]nmarshal|strconv\.|\btime: |reflect|map\[|interface ?\{|\[\]|%!|Go value|main\.`)

// TestCLIErrorsInUsersTerms runs a table of bad inputs through the built
// binary (against a real agent where the agent answers) and checks that
// each one exits with the documented code, says what it should (a YAML
// typo: the field and its line) and contains no Go-isms.
func TestCLIErrorsInUsersTerms(t *testing.T) {
	a := startAgent(t, t.TempDir())
	dir := t.TempDir()
	a.mustCLI("define", writeFile(t, dir, "ok.yaml", "name: web1\nmemory_mib: 16\n"))
	file := func(name, content string) string { return writeFile(t, dir, name, content) }
	cases := []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"yaml typo", []string{"define", file("typo.yaml", "name: a\nmemory_mib: 16\nvcpu: 1\n")}, 2, []string{"line 3", `"vcpu"`}},
		{"nested typo", []string{"define", file("nested.yaml", "name: a\nmemory_mib: 16\ndisks:\n  - target: hda\n    pth: /x\n")}, 2, []string{"line 5", `"disks[0].pth"`}},
		{"wrong case", []string{"define", file("case.yaml", "name: a\nMemory_MiB: 16\n")}, 2, []string{"line 2", `"memory_mib"`}},
		{"text for a number", []string{"define", file("type.yaml", "name: a\nmemory_mib: lots\n")}, 2, []string{"line 2", "memory_mib", "whole number", "got text"}},
		{"negative vcpus", []string{"define", file("neg.yaml", "name: a\nmemory_mib: 16\nvcpus: -2\n")}, 2, []string{"line 3", "vcpus"}},
		{"list for text", []string{"define", file("list.yaml", "name: a\nmemory_mib: 16\ndisks:\n  - {target: [1]}\n")}, 2, []string{"line 4", "target", "got a list"}},
		{"bad uuid", []string{"define", file("uuid.yaml", "name: a\nmemory_mib: 16\nuuid: not-a-uuid\n")}, 2, []string{"line 3", "uuid", `"not-a-uuid"`}},
		{"key twice", []string{"define", file("twice.yaml", "name: a\nmemory_mib: 16\nname: b\n")}, 2, []string{"line 3", `"name" given twice`, "line 1"}},
		{"yaml syntax", []string{"define", file("syntax.yaml", "name: a\n  memory_mib: : 16\n")}, 2, []string{"line 2"}},
		{"json typo", []string{"define", file("typo.json", "{\n  \"name\": \"a\",\n  \"memory_mb\": 16\n}\n")}, 2, []string{"line 3", `"memory_mb"`}},
		{"json type", []string{"define", file("type.json", `{"name": "a", "clock": {"offset": 3}}`)}, 2, []string{"clock.offset", "wants text, got a number"}},
		{"invalid config", []string{"define", file("zero.yaml", "name: a\nmemory_mib: 0\n")}, 2, []string{"memory"}},
		{"spec typo", []string{"attach-device", "web1", file("spec.yaml", "kind: nic\nid: n1\nmodle: e1000\n")}, 2, []string{"line 3", `"modle"`}},
		{"spec type", []string{"attach-device", "web1", file("spec2.yaml", "kind: memory\nid: m1\nsize_mib: big\n")}, 2, []string{"line 3", "size_mib"}},
		{"missing file", []string{"define", filepath.Join(dir, "nope.yaml")}, 2, []string{"nope.yaml"}},
		{"unknown domain", []string{"start", "nosuch"}, 3, []string{`"nosuch" not found`}},
		{"unknown verb", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}},
		{"unknown sub-verb", []string{"job", "frobnicate"}, 2, []string{`"frobnicate"`, "abort, info"}},
		{"group alone", []string{"log"}, 2, []string{"needs a verb"}},
		{"bad flag", []string{"list", "--frobnicate"}, 2, []string{"--frobnicate"}},
		{"too many args", []string{"info", "a", "b"}, 2, []string{"takes 1 argument"}},
		{"number flag", []string{"events", "--after", "ten"}, 2, []string{"--after", "whole number"}},
		{"duration flag", []string{"console", "web1", "--for", "3"}, 2, []string{"--for", "duration"}},
		{"global duration", []string{"--timeout", "soon", "list"}, 2, []string{"--timeout", "duration"}},
		{"bool flag", []string{"list", "--json=maybe"}, 2, []string{"true or false"}},
		{"bad point", []string{"info", "web1", "--at", "yesterday"}, 2, []string{"RFC 3339"}},
		{"bad event type", []string{"events", "--type", "exploded"}, 2, []string{`"exploded"`}},
		{"bad event type, no agent", []string{"history", "web1", "--type", "exploded", "--nats-url", "nats://127.0.0.1:1"}, 2, []string{`"exploded"`}},
		{"bad regex", []string{"console", "web1", "--send", "x", "--until", "(("}, 2, []string{"--until"}},
		{"bad address", []string{"dump-read", filepath.Join(dir, "nope"), "zz", "4"}, 2, []string{`"zz"`}},
		{"state of a shut-off domain", []string{"suspend", "web1"}, 4, []string{"web1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := a.cli(c.args...)
			if code != c.code {
				t.Errorf("vmledger %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, out, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("vmledger %s: stderr %q lacks %q", strings.Join(c.args, " "), errs, w)
				}
			}
			if m := goIsm.FindString(errs); m != "" {
				t.Errorf("vmledger %s: stderr has the Go-ism %q: %s", strings.Join(c.args, " "), m, errs)
			}
			// The same input under --json: one JSON object on stderr.
			if !hasFlag(c.args, "json") && c.name != "bool flag" {
				_, jerrs, jcode := a.cli(append(c.args, "--json")...)
				if verbTakesJSON(c.args) {
					checkJSONError(t, c.args, jerrs, jcode)
				}
			}
		})
	}
}

func hasFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--"+name) })
}

// verbTakesJSON reports whether the verb args name has a --json flag.
func verbTakesJSON(args []string) bool {
	c, _, err := newRoot().Find(args)
	return err == nil && c.Flags().Lookup("json") != nil
}

// checkJSONError checks that a failed run under --json printed its error
// as one JSON object with the code, a message and the exit code.
func checkJSONError(t *testing.T, args []string, stderr string, code int) {
	t.Helper()
	if code == 0 {
		t.Errorf("vmledger %s --json: exit 0, want a failure", strings.Join(args, " "))
		return
	}
	var r errorReply
	dec := json.NewDecoder(strings.NewReader(stderr))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		t.Errorf("vmledger %s --json: stderr is not one JSON error object (%v):\n%s", strings.Join(args, " "), err, stderr)
		return
	}
	if r.Error.Exit != code || r.Error.Message == "" || r.Error.Code == "" {
		t.Errorf("vmledger %s --json: error %+v, exit %d", strings.Join(args, " "), r.Error, code)
	}
}

// leaves are the verbs (commands that run) under c, by path.
func leaves(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range c.Commands() {
		if s.Hidden || s.Name() == "help" || s.Name() == "completion" {
			continue
		}
		if s.HasSubCommands() {
			out = append(out, leaves(s)...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// verbPath is a verb as docs/cli.md names it ("job info").
func verbPath(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), "vmledger ")
}

// noJSONVerbs are the verbs docs/cli.md says take no --json: the sentence
// "Every verb takes `--json` except ..." lists them in backquotes.
func noJSONVerbs(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "Every verb takes `--json` except ")
	if !ok {
		t.Fatal("docs/cli.md lacks the sentence \"Every verb takes `--json` except ...\"")
	}
	sentence, _, _ := strings.Cut(rest, ".")
	var out []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(sentence, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestCLIEveryVerbTakesJSON: every verb but the ones docs/cli.md names
// has --json, and each of those named has none (so the list stays true).
func TestCLIEveryVerbTakesJSON(t *testing.T) {
	except := noJSONVerbs(t)
	for _, c := range leaves(newRoot()) {
		has := c.Flags().Lookup("json") != nil
		doc := !slices.Contains(except, verbPath(c))
		if has != doc {
			t.Errorf("verb %q: --json %v, docs/cli.md says %v", verbPath(c), has, doc)
		}
	}
}

// TestCLIJSONErrorsEveryVerb runs every verb that takes --json, with
// --json, so that it fails (a domain or file that does not exist, or
// an agent that is not there), and checks the error is JSON.
func TestCLIJSONErrorsEveryVerb(t *testing.T) {
	a := startAgent(t, t.TempDir())
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "x")
	fill := map[string]string{"DOMAIN": "nosuch", "ID": "dev0", "ADDR": "0", "LEN": "16"}
	for _, c := range leaves(newRoot()) {
		if c.Flags().Lookup("json") == nil {
			continue
		}
		var args []string
		args = append(args, strings.Fields(verbPath(c))...)
		for _, w := range strings.Fields(c.Use)[1:] {
			if strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") || strings.Contains(w, "|") {
				break
			}
			v, ok := fill[w]
			if !ok {
				v = missing // FILE, CONFIG, SPEC, PATH
			}
			args = append(args, v)
		}
		if c.Flags().Lookup("state-dir") != nil {
			args = append(args, "--state-dir", missing)
		}
		args = append(args, "--json")
		t.Run(verbPath(c), func(t *testing.T) {
			out, errs, code := a.cli(args...)
			if code == 0 {
				// Verbs that succeed on an empty agent (list, hosts,
				// events) fail without one.
				full := append([]string{"--nats-url", "nats://127.0.0.1:1", "--timeout", "5s"}, args...)
				out, errs, code = runCLI(t, full...)
			}
			if code == 0 {
				// A verb that needs neither (version): an argument too many.
				args = append(args, "extra-argument")
				out, errs, code = a.cli(args...)
			}
			if code == 0 {
				t.Fatalf("vmledger %s: exit 0 even without an agent or with an argument too many\nstdout: %s", strings.Join(args, " "), out)
			}
			checkJSONError(t, args, errs, code)
		})
	}
}
