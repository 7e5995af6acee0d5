package main

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// checkEventLine checks one text line of events or history: it names the
// domain (name, then UUID) and its time is in timeLayout, in UTC.
func checkEventLine(t *testing.T, line string, names map[string]string) {
	t.Helper()
	f := strings.Split(line, "\t")
	if len(f) < 7 {
		t.Fatalf("event line %q: %d fields, want 7 (seq, time, name, uuid, version, type, payload)", line, len(f))
	}
	ts, err := time.Parse(timeLayout, f[1])
	if err != nil || ts.Location() != time.UTC || ts.Format(timeLayout) != f[1] || len(f[1]) != len("2006-01-02T15:04:05.000000Z") {
		t.Errorf("event line %q: time %q is not RFC 3339 UTC with microseconds (%v)", line, f[1], err)
	}
	if want, ok := names[f[3]]; !ok || f[2] != want {
		t.Errorf("event line %q: domain %q for uuid %s, want %q", line, f[2], f[3], want)
	}
}

// TestCLIEventsNameTheDomain (issue 15, point 7): the text form of
// events, events --after, events --follow and history names each event's
// domain, a domain undefined since included, with one time format; the
// events come from the tiny guest booted and stopped.
func TestCLIEventsNameTheDomain(t *testing.T) {
	a := guestAgent(t, t.TempDir(), "tcg")
	names := map[string]string{}
	web := defineTiny(t, a, "web1", "{offset: utc}")
	names[web] = "web1"
	old := defineTiny(t, a, "old1", "{offset: utc}")
	names[old] = "old1"
	a.mustCLI("start", "web1")
	a.mustCLI("destroy", "web1")
	a.mustCLI("undefine", "old1")

	check := func(args ...string) []string {
		t.Helper()
		out := a.mustCLI(args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines {
			checkEventLine(t, l, names)
		}
		return lines
	}
	if lines := check("events"); len(lines) < 5 {
		t.Fatalf("events: %d lines, want defined x2, started, stopped, undefined", len(lines))
	}
	// Without the defined events in view, the names come from the agent:
	// old1 is undefined by now, so from the log as it stood.
	if lines := check("events", "--after", "2"); !strings.Contains(strings.Join(lines, "\n"), "\told1\t") {
		t.Fatalf("events --after 2 do not name old1:\n%s", strings.Join(lines, "\n"))
	}
	check("events", "--type", "undefined")
	if lines := check("history", "web1"); len(lines) < 3 {
		t.Fatalf("history web1: %d lines", len(lines))
	}

	// --follow: the past, then a domain defined while following.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := a.cliLines(ctx, "events", "--follow", "--after", "3")
	time.Sleep(500 * time.Millisecond) // let it catch up on the past
	late := defineTiny(t, a, "late1", "{offset: utc}")
	names[late] = "late1"
	for {
		select {
		case l, ok := <-got:
			if !ok {
				t.Fatal("events --follow ended")
			}
			checkEventLine(t, l, names)
			if strings.Contains(l, late) {
				return
			}
		case <-ctx.Done():
			t.Fatal("events --follow never showed late1's defined event")
		}
	}
}

// cliLines runs a verb that goes on printing (events --follow) and sends
// its stdout lines; the verb is killed at the test's end or ctx's.
func (a *agentProc) cliLines(ctx context.Context, args ...string) <-chan string {
	a.t.Helper()
	f := exec.CommandContext(ctx, binary, append([]string{"--nats-url", a.natsURL, "--host", a.host}, args...)...)
	stdout, err := f.StdoutPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { _ = f.Process.Kill(); _ = f.Wait() })
	got := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	return got
}
