package main

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/yamlcheck"
	"github.com/vmledger/vmledger/domains"
)

// readYAMLInto reads a JSON or YAML file ('-': stdin) of at most max
// bytes, strictly (yamlcheck.Check), and hands it to decode as JSON. An error
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
	doc, err := yamlcheck.Check(raw)
	if err != nil {
		// "line N: ..." from the parser reads as the field errors do.
		if n, rest, ok := strings.Cut(err.Error(), ": "); ok && strings.HasPrefix(n, "line ") {
			return usagef("%s %s, %s: %s", what, path, n, rest)
		}
		return usagef("%s %s: %w", what, path, err)
	}
	js, err := yaml.YAMLToJSON(raw) // JSON is YAML, so this takes both
	if err != nil {
		return usagef("%s %s: %s", what, path, yamlcheck.Message(err))
	}
	if err := decode(js); err != nil {
		var fe *domains.FieldError
		if errors.As(err, &fe) {
			if line := lineOf(doc, fe.Path); line > 0 {
				return usagef("%s %s, line %d: %w", what, path, line, err)
			}
		}
		return usagef("%s %s: %w", what, path, err)
	}
	return nil
}

// lineOf is the line of the field at path ("disks[0].format", or
// "disks.format" with the index left out: the first element that has
// it) in doc; 0 when it is not there.
func lineOf(doc *yamlv3.Node, path string) int {
	if doc == nil || path == "" {
		return 0
	}
	n := doc
	if n.Kind == yamlv3.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return find(n, splitPath(path))
}

// segment is one step of a field path: a key, or a list index (key "").
type segment struct {
	key   string
	index int
}

func splitPath(path string) []segment {
	var out []segment
	for _, part := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, segment{key: key})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				return out
			}
			out = append(out, segment{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

func find(n *yamlv3.Node, path []segment) int {
	if len(path) == 0 {
		return n.Line
	}
	s := path[0]
	switch {
	case n.Kind == yamlv3.SequenceNode && s.key == "":
		if s.index < len(n.Content) {
			return find(n.Content[s.index], path[1:])
		}
	case n.Kind == yamlv3.SequenceNode:
		for _, c := range n.Content { // the index was left out
			if l := find(c, path); l > 0 {
				return l
			}
		}
	case n.Kind == yamlv3.MappingNode && s.key != "":
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == s.key {
				if len(path) == 1 {
					return n.Content[i].Line
				}
				return find(n.Content[i+1], path[1:])
			}
		}
	}
	return 0
}
