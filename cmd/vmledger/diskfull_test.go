package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/store/storetest"
)

// bigDefine is a config whose disk path makes its defined event ~2.5 KB,
// so that a few defines need new pages of the log. The directories exist
// and are allowed (define checks a disk's directory, docs/security.md).
func bigDefine(t *testing.T, dir, name string) string {
	deep := filepath.Join(diskDir(t), strings.Repeat(strings.Repeat("b", 200)+"/", 12))
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(deep, strings.Repeat("a", 60)+".qcow2")
	return writeFile(t, dir, name+".json", fmt.Sprintf(
		`{"name":%q,"memory_mib":64,"vcpus":1,"disks":[{"target":"vda","path":%q,"format":"qcow2","bus":"virtio"}]}`, name, path))
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Issue 7, defect 9: an agent whose state directory is on a full disk (a
// 2 MiB tmpfs, filled up) refuses the define that hits ENOSPC and every
// later one, and says so: an error-level log line, vmledger_store_healthy 0
// and vmledger_store_failures_total 1 in its metrics, 503 with the reason
// on /healthz and /readyz. Once the filler file is deleted it recovers without a
// restart: /healthz answers 200, a define succeeds with the next
// sequence, and log verify passes on the file afterwards.
func TestAgentDiskFullRecovers(t *testing.T) {
	root := storetest.Tmpfs(t, "2m")
	work := t.TempDir()
	state := filepath.Join(root, "state")
	a := startAgent(t, state, "--metrics-addr", "127.0.0.1:0")
	a.mustCLI("define", bigDefine(t, work, "web0"))
	metrics, health := "http://"+a.metrics+"/metrics", "http://"+a.metrics+"/healthz"
	if code, body := httpGet(t, health); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz before: %d %q", code, body)
	}
	filler := filepath.Join(root, "filler")
	if _, err := storetest.Fill(filler); err != nil {
		t.Fatal(err)
	}
	defined := 1
	var errs string
	for i := 1; i < 100; i++ {
		out, e, code := a.cli("define", bigDefine(t, work, fmt.Sprintf("web%d", i)))
		if code == 0 {
			defined++
			continue
		}
		if code != exitUnavailable || !strings.Contains(e, "no space left on device") {
			t.Fatalf("define on a full disk: exit %d\nstdout: %s\nstderr: %s", code, out, e)
		}
		errs = e
		break
	}
	if errs == "" {
		t.Fatal("100 defines on a full disk all succeeded")
	}
	if _, e, code := a.cli("define", bigDefine(t, work, "still-full")); code != exitUnavailable {
		t.Fatalf("define while the disk is still full: exit %d: %s", code, e)
	}
	code, body := httpGet(t, health)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Fatalf("healthz while broken: %d %q", code, body)
	}
	// Issue 15, point 9: not ready while the store is broken.
	if code, body := httpGet(t, "http://"+a.metrics+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Errorf("readyz while broken: %d %q, want 503 with the reason", code, body)
	}
	_, m := httpGet(t, metrics)
	for _, re := range []string{`(?m)^vmledger_store_healthy 0$`, `(?m)^vmledger_store_failures_total 1$`} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("metrics while broken lack %s", re)
		}
	}
	if log := a.stderr.String(); !regexp.MustCompile(`"level":"error".*no space left on device.*"message":"event log: a commit failed`).MatchString(log) {
		t.Errorf("no error-level log line for the failed commit:\n%s", log)
	}

	if err := storetest.Free(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := httpGet(t, health); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz still failing 60s after the disk was freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := httpGet(t, "http://"+a.metrics+"/readyz"); code != http.StatusOK {
		t.Errorf("readyz after recovery: %d %q", code, body)
	}
	out := a.mustCLI("define", bigDefine(t, work, "after"))
	if want := fmt.Sprintf("seq %d)", defined+1); !strings.Contains(out, want) {
		t.Fatalf("define after recovery: %q, want %s", out, want)
	}
	if _, m := httpGet(t, metrics); !regexp.MustCompile(`(?m)^vmledger_store_healthy 1$`).MatchString(m) {
		t.Errorf("metrics after recovery:\n%s", m)
	}
	if !strings.Contains(a.stderr.String(), "event log: recovered") {
		t.Errorf("no log line for the recovery")
	}
	list := a.mustCLI("list")
	for _, name := range []string{"web0", "after"} {
		if !strings.Contains(list, name) {
			t.Errorf("list lacks %s:\n%s", name, list)
		}
	}
	a.stop()
	if out := mustRun(t, "log", "verify", "--state-dir", state); !strings.Contains(out, "Result:     OK") {
		t.Fatalf("log verify:\n%s", out)
	}
}
