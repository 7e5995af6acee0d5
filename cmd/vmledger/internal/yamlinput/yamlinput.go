// Package yamlinput turns a JSON or YAML document from the user (a
// config, a device spec) into JSON, strictly: what YAML would let pass
// silently (a key given twice, a second document) is an error. It is its
// own package so that it can be fuzzed without the CLI (FuzzConfigYAML).
package yamlinput

import (
	"bytes"
	"errors"
	"io"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// ToJSON checks raw (Check) and converts it to JSON. JSON is YAML, so
// this takes both.
func ToJSON(raw []byte) ([]byte, error) {
	if err := Check(raw); err != nil {
		return nil, err
	}
	return yaml.YAMLToJSON(raw)
}

// Check refuses what YAMLToJSON would let pass silently: a key given
// twice in one mapping (the last would win) and more than one document
// (all but the first would be ignored).
func Check(raw []byte) error {
	dec := yamlv2.NewDecoder(bytes.NewReader(raw))
	dec.SetStrict(true) // duplicate keys are errors
	var doc any
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := dec.Decode(&doc); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document (a config file holds one)")
	}
	return nil
}
