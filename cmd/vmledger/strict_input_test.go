package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/domains"
)

// A command ID reused for a different request is a conflict that says so
// and acts on nothing; the same request again gets the first reply; many
// different requests in flight with one ID: one runs (issue 7, defect 1).
func TestCLICommandIDReuse(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	defineTiny(t, a, "web1", "{offset: utc}")
	a.mustCLI("start", "web1")
	dir := t.TempDir()
	cfgA := writeFile(t, dir, "a.yaml", "name: a\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\n")
	first := a.mustCLI("define", cfgA, "--command-id", "X", "--json")

	out, errs, code := a.cli("destroy", "web1", "--command-id", "X")
	if code != 4 || !strings.Contains(errs, "already used for a different request") {
		t.Fatalf("destroy with a used ID: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if st := infoOf(t, a, "web1").State; st != domains.StateRunning {
		t.Fatalf("web1 is %s after the refused destroy", st)
	}
	if again := a.mustCLI("define", cfgA, "--command-id", "X", "--json"); again != first {
		t.Fatalf("retry of the same define:\n%s\nwant the first reply\n%s", again, first)
	}

	// Parallel defines of different names with one ID, as raw requests.
	nc := natsConn(t, a)
	const n = 50
	var wg sync.WaitGroup
	replies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"command_id":"Y","config":{"name":"p%d","memory_mib":16,"vcpus":1,"clock":{"offset":"utc"}}}`, i)
			msg, err := nc.Request("vmledger.cmd."+a.host+".define", []byte(body), 30*time.Second)
			if err != nil {
				replies[i] = "request: " + err.Error()
				return
			}
			replies[i] = string(msg.Data)
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range replies {
		switch {
		case strings.HasPrefix(r, `{"result"`):
			ok++
		case !strings.Contains(r, "already used for a different request"):
			t.Fatalf("unexpected reply: %s", r)
		}
	}
	if names := listNames(t, a); ok != 1 || len(names) != 3 {
		t.Fatalf("%d of %d defines succeeded, domains %v; want 1 and 3 (web1, a, one p)", ok, n, names)
	}
}

func listNames(t testing.TB, a *agentProc) []string {
	t.Helper()
	var list struct {
		Domains []struct{ Name string } `json:"domains"`
	}
	if err := json.Unmarshal([]byte(a.mustCLI("list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list.Domains {
		names = append(names, d.Name)
	}
	return names
}

// A name that parses as a UUID is refused, so no domain can stand in for
// another in info or undefine (issue 7, defect 2).
func TestCLINameThatIsAUUID(t *testing.T) {
	a := startAgent(t, t.TempDir())
	dir := t.TempDir()
	var res domains.Result
	out := a.mustCLI("define", writeFile(t, dir, "web1.yaml", "name: web1\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\n"), "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{res.Domain.String(), strings.ReplaceAll(res.Domain.String(), "-", "")} {
		cfg := writeFile(t, dir, "imp.yaml", "name: "+name+"\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\n")
		out, errs, code := a.cli("define", cfg)
		if code != 2 || !strings.Contains(errs, "must not parse as a UUID") {
			t.Fatalf("define named %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errs)
		}
	}
	if d := infoOf(t, a, res.Domain.String()); d.Config.Name != "web1" {
		t.Fatalf("info by UUID found %q", d.Config.Name)
	}
}

// Config files are read strictly: keys in another case, a key given
// twice, a second YAML document, the all-zero UUID, and configs the
// machine type cannot run are refused with exit 2 and define nothing
// (issue 7, defects 10 and 11).
func TestCLIDefineRefusesLaxConfigs(t *testing.T) {
	a := startAgent(t, t.TempDir())
	dir := t.TempDir()
	const base = "memory_mib: 16\nvcpus: 1\nclock: {offset: utc}\n"
	for name, cfg := range map[string]string{
		"key-case":        "name: a\nNAME: b\n" + base,
		"duplicate-key":   "name: a\nname: b\n" + base,
		"json-duplicate":  `{"name":"a","name":"b","memory_mib":16,"vcpus":1,"clock":{"offset":"utc"}}`,
		"second-document": "name: a\n" + base + "---\nname: b\n" + base,
		"zero-uuid":       "name: a\nuuid: 00000000-0000-0000-0000-000000000000\n" + base,
		"1024-vcpus":      "name: a\nmemory_mib: 16\nvcpus: 1024\nclock: {offset: utc}\n",
		"256-vcpus-q35":   "name: a\nmachine: q35\nmemory_mib: 16\nvcpus: 256\nclock: {offset: utc}\n",
		"too-much-ram":    "name: a\nmemory_mib: 2000000\nvcpus: 1\nclock: {offset: utc}\n",
		"read-only-ide":   "name: a\n" + base + "disks: [{target: hda, path: /x.iso, readonly: true}]\n",
		"long-path":       "name: a\n" + base + "disks: [{target: vda, path: /" + strings.Repeat("a", 5000) + "}]\n",
	} {
		// Each case its own names, so one wrongly accepted cannot make
		// the others fail for the wrong reason (a taken name).
		cfg = strings.NewReplacer("name: a", "name: a-"+name, "name: b", "name: b-"+name, `"name":"a"`, `"name":"a-`+name+`"`,
			`"name":"b"`, `"name":"b-`+name+`"`).Replace(cfg)
		out, errs, code := a.cli("define", writeFile(t, dir, "c.yaml", cfg))
		if code != 2 || len(errs) > 2048 {
			t.Errorf("%s: exit %d (want 2), stderr of %d bytes\nstdout: %s\nstderr: %.500s", name, code, len(errs), out, errs)
		}
	}
	if n := len(listNames(t, a)); n != 0 {
		t.Fatalf("%d refused configs were defined", n)
	}
}

// A hard link to the event log (or a symbolic link to one) is refused as
// a guest disk at start, and the log says the domain never ran (issue 7,
// defect 6).
func TestCLIStartRefusesHardLinkToLog(t *testing.T) {
	state := t.TempDir()
	a := guestAgent(t, state, "tcg")
	dir := diskDir(t)
	img := filepath.Join(dir, "x.img")
	if err := os.Link(filepath.Join(state, "events.db"), img); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "y.img")
	if err := os.Symlink(filepath.Join(state, "nats.token"), sym); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{img, sym} {
		name := fmt.Sprintf("ln%d", i)
		cfg := "name: " + name + "\nmemory_mib: 16\nvcpus: 1\nclock: {offset: utc}\ndisks: [{target: vda, path: " + p + ", format: raw}]\n"
		if p == sym {
			// A symlink out of the allowed directories is refused at
			// define already (docs/security.md).
			if _, errs, code := a.cli("define", writeFile(t, dir, name+".yaml", cfg)); code != 2 || !strings.Contains(errs, "symlink out of the allowed directories") {
				t.Fatalf("define with disk %s: exit %d %s", p, code, errs)
			}
			continue
		}
		a.mustCLI("define", writeFile(t, dir, name+".yaml", cfg))
		out, errs, code := a.cli("start", name)
		if code != 2 || !strings.Contains(errs, "guests may not use") {
			t.Fatalf("start with disk %s: exit %d\nstdout: %s\nstderr: %s", p, code, out, errs)
		}
		if d := infoOf(t, a, name); d.State != domains.StateShutoff || d.Version != 1 {
			t.Fatalf("after the refused start: %s at version %d", d.State, d.Version)
		}
	}
}
