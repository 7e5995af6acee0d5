// Package yamlinput turns a JSON or YAML document from the user (a
// config, a device spec) into JSON, strictly: what YAML would let pass
// silently (a key given twice, a second document) is an error, and the
// document's tree is kept so that an error about a field can name its
// line. It is its own package so that it can be fuzzed without the CLI
// (FuzzConfigYAML).
package yamlinput

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/domains"
)

// Doc is a parsed document, for the lines of its fields.
type Doc struct{ root *yamlv3.Node }

// Parse checks raw (YAML or JSON: JSON is YAML) and converts it to JSON.
// An error names its line where the parser knows it ("line N: ...").
func Parse(raw []byte) ([]byte, *Doc, error) {
	doc, err := checkYAML(raw)
	if err != nil {
		return nil, nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, nil, errors.New(yamlMessage(err))
	}
	return js, &Doc{doc}, nil
}

// Line is the line of the field at path ("disks[0].format", or
// "disks.format" with the index left out: the first element that has
// it); 0 when it is not there.
func (d *Doc) Line(path string) int {
	if d == nil {
		return 0
	}
	return lineOf(d.root, path)
}

// checkYAML parses raw (YAML or JSON) and refuses what YAMLToJSON would
// let pass silently: a key given twice in one mapping (the last would
// win) and more than one document (all but the first would be ignored).
// It returns the document's tree (nil when empty), which has lines.
func checkYAML(raw []byte) (*yamlv3.Node, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(raw))
	var doc yamlv3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, errors.New(yamlMessage(err))
	}
	var next yamlv3.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document (a config file holds one)")
	}
	if err := duplicateKeys(&doc, ""); err != nil {
		return nil, err
	}
	return &doc, nil
}

// duplicateKeys finds the first key given twice in one mapping.
func duplicateKeys(n *yamlv3.Node, path string) error {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			if err := duplicateKeys(c, path); err != nil {
				return err
			}
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			if err := duplicateKeys(c, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case yamlv3.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			at := k.Value
			if path != "" {
				at = path + "." + k.Value
			}
			if first, ok := seen[k.Value]; ok {
				return fmt.Errorf("line %d: key %s given twice (first on line %d)", k.Line, domains.Quote(at), first)
			}
			seen[k.Value] = k.Line
			if err := duplicateKeys(n.Content[i+1], at); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlMessage is a YAML library error without the library's prefixes.
func yamlMessage(err error) string {
	m := err.Error()
	m = strings.TrimPrefix(m, "error converting YAML to JSON: ")
	m = strings.TrimPrefix(m, "yaml: ")
	return m
}

// lineOf is Doc.Line of doc.
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
