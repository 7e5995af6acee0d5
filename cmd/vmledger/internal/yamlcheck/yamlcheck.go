// Package yamlcheck reads the YAML (or JSON) documents users give the CLI
// (configs, device specs) strictly. It is its own package so that the
// decoder can be fuzzed without building the whole CLI (FuzzConfigYAML).
package yamlcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/vmledger/vmledger/domains"
)

// Check parses raw (YAML or JSON) and refuses what YAMLToJSON would
// let pass silently: a key given twice in one mapping (the last would
// win) and more than one document (all but the first would be ignored).
// It returns the document's tree (nil when empty), which has lines.
func Check(raw []byte) (*yamlv3.Node, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(raw))
	var doc yamlv3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, errors.New(Message(err))
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

// Message is a YAML library error without the library's prefixes.
func Message(err error) string {
	m := err.Error()
	m = strings.TrimPrefix(m, "error converting YAML to JSON: ")
	m = strings.TrimPrefix(m, "yaml: ")
	return m
}

