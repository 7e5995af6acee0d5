package main

import (
	"errors"
	"io"
	"os"
	"strings"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/yamlinput"
	"github.com/vmledger/vmledger/domains"
)

// readYAMLInto reads a JSON or YAML file ('-': stdin) of at most max
// bytes, strictly (yamlinput.Parse), and hands it to decode as JSON. An error
// about one field (domains.FieldError) is told with the field's line, so
// a typo in a YAML file is found where the user wrote it.
func readYAMLInto(what, path string, stdin io.Reader, max int64, decode func(js []byte) error) error {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return usagef("read %s: %w", what, err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return usagef("read %s: %w", what, err)
	}
	if int64(len(raw)) > max {
		return usagef("%s %s: larger than %d bytes", what, path, max)
	}
	js, doc, err := yamlinput.Parse(raw) // strict: cmd/vmledger/internal/yamlinput
	if err != nil {
		// "line N: ..." from the parser reads as the field errors do.
		if n, rest, ok := strings.Cut(err.Error(), ": "); ok && strings.HasPrefix(n, "line ") {
			return usagef("%s %s, %s: %s", what, path, n, rest)
		}
		return usagef("%s %s: %w", what, path, err)
	}
	if err := decode(js); err != nil {
		var fe *domains.FieldError
		if errors.As(err, &fe) {
			if line := doc.Line(fe.Path); line > 0 {
				return usagef("%s %s, line %d: %w", what, path, line, err)
			}
		}
		return usagef("%s %s: %w", what, path, err)
	}
	return nil
}
