package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/domains/api"
)

// job info and job abort from the CLI on a domain without a job: the
// answer says so (text and --json) and abort fails as not found (exit 3).
// Jobs that run are shown in domains/owner (TestAsyncJobKeepsDomainWatchable).
func TestCLIJobVerbsWithoutJob(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state")
	a.mustCLI("define", writeFile(t, dir, "web1.json", webJSON))

	if out := a.mustCLI("job", "info", "web1"); strings.TrimSpace(out) != "no job" {
		t.Fatalf("job info: %q", out)
	}
	var r api.JobReply
	out := a.mustCLI("job", "info", "web1", "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Job != nil || !strings.Contains(out, `"job": null`) {
		t.Fatalf("job info --json: %q %v", out, err)
	}
	if out, errs, code := a.cli("job", "abort", "web1"); code != exitNotFound || !strings.Contains(errs, "has no job running") {
		t.Fatalf("job abort without a job: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := a.cli("job", "info", "nope"); code != exitNotFound {
		t.Fatalf("job info of an unknown domain: exit %d %s", code, errs)
	}
}
