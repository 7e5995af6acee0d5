package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The agent's Prometheus endpoint counts appends, times them and shows the
// relay's lag.
func TestAgentMetrics(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir+"/state", "--metrics-addr", "127.0.0.1:0")
	if a.metrics == "" {
		t.Fatal("agent did not report its metrics address")
	}
	a.mustCLI("define", writeFile(t, dir, "web1.json", webJSON))
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + a.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, "vmledger_relay_lag_events 0") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, re := range []string{
		`(?m)^vmledger_events_appended_total 1$`,
		`(?m)^vmledger_append_latency_seconds_count 1$`,
		`(?m)^vmledger_relay_lag_events 0$`,
		`(?m)^vmledger_last_seq 1$`,
		`(?m)^vmledger_domains 1$`,
		`(?m)^vmledger_domain_events_total\{type="defined"\} 1$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("metrics lack %s", re)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
