package qemu

import "testing"

// vcpuinfo's facts come from /proc/PID/task/TID/stat, whose command name
// may hold spaces and parentheses.
func TestParseTaskStat(t *testing.T) {
	rest := " 1 2 3 4 5 6 7 8 9 10 150 50 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 3 37 38"
	for _, c := range []struct {
		line    string
		state   string
		cpu     int
		seconds float64
	}{
		{"4242 (CPU 0/KVM) R" + rest, "running", 3, 2},
		{"4242 (a) b) (c) S" + rest, "sleeping", 3, 2},
		{"4242 (x) t" + rest, "stopped", 3, 2},
		{"4242 (x) R 1 2", "", -1, 0},
		{"garbage", "", -1, 0},
	} {
		st, cpu, sec := parseTaskStat(c.line)
		if st != c.state || cpu != c.cpu || sec != c.seconds {
			t.Errorf("%q: %q cpu %d %.2fs, want %q cpu %d %.2fs", c.line, st, cpu, sec, c.state, c.cpu, c.seconds)
		}
	}
}
