package bustest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// DuplicateKeys returns the keys that occur more than once in one object
// of the JSON text line (at any depth), as "path.key"; an error when line
// is not one JSON object. Many log pipelines reject or mangle a record
// with a key twice, and encoding/json silently keeps the last.
func DuplicateKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var dups []string
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					dups = append(dups, path+key)
				}
				seen[key] = true
				if err := walk(path + key + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(path + "[]."); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
			return err
		}
		return nil
	}
	if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("{")) {
		return nil, fmt.Errorf("not a JSON object: %.200q", line)
	}
	if err := walk(""); err != nil {
		return nil, fmt.Errorf("not JSON (%v): %.200q", err, line)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON object: %.200q", line)
	}
	return dups, nil
}

// CheckLogLines checks every line of a JSON log: each must be one JSON
// object without duplicate keys. It returns one message per bad line.
func CheckLogLines(log []byte) []string {
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		dups, err := DuplicateKeys(line)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("line %d: %v", n, err))
		case len(dups) > 0:
			bad = append(bad, fmt.Sprintf("line %d: duplicate keys %s: %.300s", n, strings.Join(dups, ", "), line))
		}
	}
	return bad
}
