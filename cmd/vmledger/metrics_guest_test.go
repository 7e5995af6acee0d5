package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// metricValue returns the value of the one sample matching re (a regexp
// of the sample's name and labels) in a scrape, or fails.
func metricValue(t *testing.T, body, re string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("scrape lacks %s:\n%s", re, body)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Issue 15, points 9 and 10: an agent with a real tiny guest, scraped and
// linted (promlint: the names follow Prometheus conventions). Per-domain
// state with a series per state, the QEMU process's CPU time and RSS,
// per-verb command counts and latency by result code, build info, relay
// lag; /readyz once serving. Its log has one line per command with the
// domain's name and UUID, command ID, result and duration_ms, sub-second
// timestamps, and a failed start carries QEMU's own message.
func TestAgentMetricsAndLogsWithGuest(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	run := shortRunDir(t)
	a := startAgentEnv(t, dir+"/state", nil, "--accel", "tcg", "--run-dir", run, "--metrics-addr", "127.0.0.1:0")
	a.runDir = run
	base := "http://" + a.metrics
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("readyz of a serving agent: %d %q", code, body)
	}
	id := defineTiny(t, a, "tiny1", "{offset: utc}")
	a.mustCLI("start", "tiny1")
	if _, _, code := a.cli("start", "nosuch"); code != exitNotFound {
		t.Fatalf("start nosuch: exit %d, want %d", code, exitNotFound)
	}
	// A failed start: QEMU cannot open the disk (an allowed file, not the
	// qcow2 its config says: a missing one the agent refuses itself,
	// docs/security.md); its own words must reach the client and the
	// agent's log.
	notQcow2 := writeFile(t, diskDir(t), "notqcow2.img", "not a qcow2 image")
	bad := writeFile(t, dir, "bad.yaml", "name: bad1\nmemory_mib: 16\nvcpus: 1\ndisks: [{target: hda, path: "+notQcow2+", format: qcow2, bus: ide}]\n")
	a.mustCLI("define", bad)
	_, errs, code := a.cli("start", "bad1")
	if code == 0 {
		t.Fatal("start of a domain whose disk is missing succeeded")
	}

	var body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body = httpGet(t, base+"/metrics")
		// The guest burns CPU from its first instruction; wait until /proc shows some.
		cpu := regexp.MustCompile(`(?m)^vmledger_domain_qemu_cpu_seconds_total\{name="tiny1",uuid="` + id + `"\} (\S+)$`).FindStringSubmatch(body)
		if (cpu != nil && cpu[1] != "0" && strings.Contains(body, "vmledger_relay_lag_events 0")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	series := func(state string) string {
		return `vmledger_domain_state\{name="tiny1",state="` + regexp.QuoteMeta(state) + `",uuid="` + id + `"\}`
	}
	for re, want := range map[string]float64{
		series("running"):  1,
		series("shut off"): 0,
		series("paused"):   0,
		`vmledger_commands_total\{code="ok",verb="start"\}`:                             1,
		`vmledger_commands_total\{code="not-found",verb="start"\}`:                      1,
		`vmledger_command_duration_seconds_count\{code="ok",verb="define"\}`:            2,
		`vmledger_command_duration_seconds_bucket\{code="ok",verb="start",le="\+Inf"\}`: 1,
		`vmledger_relay_lag_events`:                                                     0,
		`vmledger_build_info\{goversion="go[^"]+",revision="[^"]+",version="[^"]+"\}`:   1,
	} {
		if got := metricValue(t, body, re); got != want {
			t.Errorf("%s = %v, want %v", re, got, want)
		}
	}
	if got := metricValue(t, body, `vmledger_domain_state\{name="bad1",state="shut off",uuid="[^"]+"\}`); got != 1 {
		t.Errorf("bad1 shut off = %v, want 1", got)
	}
	if cpu := metricValue(t, body, `vmledger_domain_qemu_cpu_seconds_total\{name="tiny1",uuid="`+id+`"\}`); cpu <= 0 {
		t.Errorf("QEMU CPU time %v, want > 0", cpu)
	}
	// 16 MiB of guest RAM plus QEMU itself: at least a few MiB resident.
	if rss := metricValue(t, body, `vmledger_domain_qemu_resident_memory_bytes\{name="tiny1",uuid="`+id+`"\}`); rss < 4<<20 {
		t.Errorf("QEMU RSS %v, want at least 4 MiB", rss)
	}
	if strings.Contains(body, `vmledger_domain_qemu_cpu_seconds_total{name="bad1"`) {
		t.Error("a shut-off domain has a QEMU CPU series")
	}
	a.mustCLI("destroy", "tiny1")

	// The log: read it after the commands, line by line.
	var started, failed, destroyed bool
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,}`)
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if ts, _ := l["time"].(string); !stamp.MatchString(ts) {
			t.Errorf("log line without a sub-second timestamp: %s", line)
		}
		for k := range l {
			if k == "took" || k == "duration" || k == "elapsed" {
				t.Errorf("duration key %q without its unit: %s", k, line)
			}
		}
		if l["message"] != "command" {
			continue
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("command line without duration_ms: %s", line)
		}
		switch {
		case l["verb"] == "start" && l["domain"] == "tiny1":
			started = l["uuid"] == id && l["result"] == "ok" && l["command_id"] != "" && l["level"] == "info"
		case l["verb"] == "start" && l["domain"] == "bad1":
			msg, _ := l["error"].(string)
			failed = l["result"] != "ok" && l["level"] != "info" && strings.Contains(msg, "not in qcow2 format") && strings.Contains(msg, "qemu.log")
		case l["verb"] == "destroy" && l["domain"] == "tiny1":
			destroyed = l["uuid"] == id && l["result"] == "ok"
		}
	}
	if !started || !failed || !destroyed {
		t.Errorf("command log lines: start %v, failed start with QEMU's message %v, destroy %v (client saw: %s)", started, failed, destroyed, errs)
	}
}
