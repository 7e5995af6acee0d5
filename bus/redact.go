package bus

import (
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// redacted replaces user information (a token, or a password) wherever a
// URL or an error is shown.
const redacted = "***"

// RedactURL returns urls (one NATS URL or a comma-separated list) with the
// user information of each hidden: nats://TOKEN@h:4222 becomes
// nats://***@h:4222 and nats://user:pass@h nats://user:***@h. A bare user
// part is a token in NATS, so it is hidden whole. nats.go's own
// Redacted() hides only passwords and would print a token. Text that does
// not parse as a URL is treated the same way, by its shape.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// userInfo finds the user information of one URL: u[start:end] (without
// the '@'); ok is false when there is none.
func userInfo(u string) (start, end int, ok bool) {
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + 3
	}
	auth := len(u)
	if j := strings.IndexAny(u[start:], "/?#"); j >= 0 {
		auth = start + j
	}
	at := strings.LastIndex(u[start:auth], "@")
	return start, start + at, at >= 0
}

func redactOne(u string) string {
	start, end, ok := userInfo(u)
	if !ok {
		return u
	}
	hidden := redacted
	if user, _, ok := strings.Cut(u[start:end], ":"); ok {
		hidden = user + ":" + redacted
	}
	return u[:start] + hidden + u[end:]
}

// urlSecrets lists the secrets in urls (tokens, passwords; raw and
// percent-decoded), so an error that quotes them (url.Parse does) can be
// scrubbed.
func urlSecrets(urls string) []string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		start, end, ok := userInfo(u)
		if !ok {
			continue
		}
		secret := u[start:end]
		if _, pw, ok := strings.Cut(secret, ":"); ok {
			secret = pw
		}
		out = append(out, secret)
		if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
			out = append(out, dec)
		}
	}
	return out
}

// minScrub is the shortest secret scrubbed by substring: replacing every
// "a" of a message would mangle it while hiding nothing worth hiding. URLs
// are redacted by structure whatever their secret's length.
const minScrub = 4

// scrub removes urls' user information and the other secrets from msg.
func scrub(msg, urls string, secrets ...string) string {
	for _, u := range strings.Split(urls, ",") {
		if r := redactOne(u); r != u {
			msg = strings.ReplaceAll(msg, u, r)
		}
	}
	for _, s := range append(urlSecrets(urls), secrets...) {
		if len(s) >= minScrub {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}

// scrubbedError is an error whose text has its secrets removed. It still
// unwraps to the cause, so errors.Is(err, nats.ErrAuthorization) holds.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

// Wire bounds for error messages: what a reply quotes is bounded at its
// source (domains.Quote), and this is the backstop for every message that
// reaches the bus, so no error reply can approach the max payload.
const (
	maxMessageHead = 1536
	maxMessageTail = 512
)

// boundMessage cuts the middle out of a long message, keeping its start
// (what failed) and its end (usually why), on character boundaries.
func boundMessage(s string) string {
	if len(s) <= maxMessageHead+maxMessageTail {
		return s
	}
	head, tail := maxMessageHead, len(s)-maxMessageTail
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + " [... " + strconv.Itoa(tail-head) + " bytes cut ...] " + s[tail:]
}

// headerSafe makes a message fit a NATS header value: no CR or LF, which
// would end the header early and let user input forge headers.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
