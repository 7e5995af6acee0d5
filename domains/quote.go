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
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
