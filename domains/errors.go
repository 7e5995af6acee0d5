package domains

import (
	"errors"
	"fmt"
)

// Code classifies an error for the wire and for CLI exit codes. The strings
// are part of the API.
type Code string

const (
	CodeInvalid     Code = "invalid"     // malformed or unacceptable input
	CodeNotFound    Code = "not-found"   // no such domain
	CodeConflict    Code = "conflict"    // exists already, wrong state, version race
	CodeUnavailable Code = "unavailable" // a dependency (hypervisor, bus) is not there
	CodeInternal    Code = "internal"    // a bug or an I/O failure
)

// Error is an error with a code. It crosses the bus as {code, message} and
// is rebuilt on the other side, so errors.Is works against the sentinels.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.err }

// Is matches any *Error with the same code, so errors.Is(err, ErrNotFound)
// holds for every not-found error, local or decoded from a reply.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; they carry no message.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrConflict    = &Error{Code: CodeConflict}
	ErrUnavailable = &Error{Code: CodeUnavailable}
	ErrInternal    = &Error{Code: CodeInternal}
)

// Errorf makes a coded error; a %w verb keeps the cause for errors.Is.
func Errorf(code Code, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	// Keep the formatted error itself as the cause: it unwraps to every %w
	// operand (errors.Unwrap would drop them when there are several).
	return &Error{Code: code, Message: err.Error(), err: err}
}

// CodeOf returns the code of err, CodeInternal when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
