package domains

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteBoundsUserInput(t *testing.T) {
	long := strings.Repeat("<", 600<<10)
	cases := []struct {
		in, want string
	}{
		{"web1", `"web1"`},
		{"", `""`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("x", MaxQuoted), `"` + strings.Repeat("x", MaxQuoted) + `"`},
		{long, `"` + strings.Repeat("<", MaxQuoted) + `"... (614400 bytes)`},
		// A multi-byte character straddling the cut is not split.
		{strings.Repeat("x", MaxQuoted-1) + "é" + "tail", `"` + strings.Repeat("x", MaxQuoted-1) + `"... (` + "133 bytes)"},
	}
	for _, c := range cases {
		got := Quote(c.in)
		if got != c.want {
			t.Errorf("Quote(%d bytes) = %.200s, want %.200s", len(c.in), got, c.want)
		}
		if !utf8.ValidString(got) || len(got) > 4*MaxQuoted+32 {
			t.Errorf("Quote(%d bytes): %d bytes or invalid UTF-8", len(c.in), len(got))
		}
	}
}
