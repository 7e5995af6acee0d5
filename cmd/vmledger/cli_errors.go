package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/store"
)

// codeOf is the exit code for err (docs/cli.md, Exit codes).
func codeOf(err error) int {
	if err == nil {
		return exitOK
	}
	var u usageError
	if errors.As(err, &u) || cobraUsage(err) {
		return exitUsage
	}
	var c corruptError
	if errors.As(err, &c) || errors.Is(err, store.ErrCorrupt) {
		return exitCorrupt // a damaged log: verify's finding, or a file refused at open
	}
	switch domains.CodeOf(err) {
	case domains.CodeInvalid:
		return exitUsage
	case domains.CodeNotFound:
		return exitNotFound
	case domains.CodeConflict:
		return exitConflict
	case domains.CodeUnavailable:
		return exitUnavailable
	}
	return exitInternal
}

// cobraUsage reports the usage errors cobra makes itself, outside the flag
// error function: an unknown verb, a required flag left out.
func cobraUsage(err error) bool {
	m := err.Error()
	return strings.HasPrefix(m, "unknown command ") || strings.HasPrefix(m, "required flag(s) ") ||
		strings.HasPrefix(m, "if any flags in the group ")
}

// errorReply is an error as --json prints it (on stderr, like the text
// form): the agent's code ("invalid", "not-found", ...), the message and
// the exit code.
type errorReply struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Exit    int    `json:"exit"`
	} `json:"error"`
}

// reportError prints err on w, as JSON when the verb was asked for JSON,
// and returns the exit code.
func reportError(w io.Writer, cmd *cobra.Command, args []string, err error) int {
	code := codeOf(err)
	if err == nil {
		return code
	}
	if !wantsJSON(cmd, args) {
		fmt.Fprintln(w, "error:", err)
		return code
	}
	var r errorReply
	r.Error.Code, r.Error.Message, r.Error.Exit = string(domains.CodeOf(err)), err.Error(), code
	if code == exitUsage {
		r.Error.Code = string(domains.CodeInvalid)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
	return code
}

// wantsJSON reports whether the verb takes --json and was given it; the
// flag may not be parsed yet when the error was in parsing (a bad flag
// before it), so the arguments are looked at too.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("json")
	if f == nil {
		return false
	}
	if f.Value.String() == "true" {
		return true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// guardGroups makes every verb that only groups others (job, log,
// save-image) refuse an unknown or missing sub-verb as a usage error:
// cobra would print the help and exit 0.
func guardGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		guardGroups(sub)
	}
	if !c.HasSubCommands() || c.Runnable() || !c.HasParent() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		slices.Sort(names)
		if len(args) == 0 {
			return usagef("%s needs a verb: %s (see --help)", cmd.CommandPath(), strings.Join(names, ", "))
		}
		return usagef("unknown command %s for %s: want %s (see --help)", domains.Quote(args[0]), cmd.CommandPath(), strings.Join(names, ", "))
	}
}

// flagValue matches pflag's message for a value it could not parse.
var flagValue = regexp.MustCompile(`^(invalid argument ".*" for ".*" flag): (.*)$`)

// flagError says what was wrong with a flag in the user's terms: pflag
// passes on strconv's and time's messages ("strconv.ParseUint: parsing
// ...").
func flagError(err error) error {
	m := flagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return usageError{err}
	}
	why := m[2]
	switch {
	case strings.Contains(why, "out of range"):
		why = "out of range"
	case strings.Contains(why, "ParseBool"):
		why = "want true or false"
	case strings.Contains(why, "ParseUint"):
		why = "want a whole number, at least 0"
	case strings.Contains(why, "ParseInt"):
		why = "want a whole number"
	case strings.Contains(why, "ParseFloat"):
		why = "want a number"
	case strings.HasPrefix(why, "time: "):
		why = "want a duration such as 500ms, 30s, 5m or 1h30m"
	}
	return usageError{fmt.Errorf("%s: %s", m[1], why)}
}
