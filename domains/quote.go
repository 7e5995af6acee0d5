package domains

import (
	"strconv"
	"unicode/utf8"
)

// MaxQuoted is how many bytes of user input an error message quotes: a
// name of 600 KB must not come back as a 600 KB error (which would also
// exceed what one NATS reply can carry).
const MaxQuoted = 128

// Quote is %q for user input in error messages: the input quoted, but at
// most MaxQuoted bytes of it, cut on a character boundary and followed by
// its full length. Every error that names what the user sent uses it.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(prefix(s, MaxQuoted)) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// prefix is s cut to at most n bytes on a rune boundary.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
