package domains

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/google/uuid"
)

// DecodeStrict decodes one JSON value into v and refuses what
// encoding/json lets through silently: a key that matches a field only
// when case is ignored ({"NAME": ...} for "name"), a key given twice (json
// keeps the last), unknown fields, and anything after the value. An empty
// input is an error. Errors are coded invalid and quote keys bounded.
func DecodeStrict(data []byte, v any) error { return decodeStrict(data, v, true) }

// decodeStrict is DecodeStrict; fast false skips its fast path (tests).
func decodeStrict(data []byte, v any, fast bool) error {
	if t := reflect.TypeOf(v); t == nil || !fast || !strictClean(data, t) { // strict_fast.go
		if err := checkStrictAll(data, t); err != nil {
			return err
		}
	}
	// The shape is exact; now let encoding/json fill v (and type-check it).
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Errorf(CodeInvalid, "%w", describeJSON(err))
	}
	return nil
}

// checkStrictAll is the strict check of the whole input, with its errors.
func checkStrictAll(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := checkStrict(dec, t, "", 0); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Errorf(CodeInvalid, "%w", describeJSON(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(CodeInvalid, "data after the JSON value")
	}
	return nil
}

// DecodeConfig decodes a config strictly (DecodeStrict). A config without
// "uuid" gets one at define; an explicit all-zero UUID is refused here, as
// it would otherwise be silently replaced.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := DecodeStrict(data, &c); err != nil {
		return Config{}, err
	}
	if c.UUID != uuid.Nil {
		return c, nil
	}
	var probe struct {
		UUID json.RawMessage `json:"uuid"`
	}
	// Keys are exact by now, so this finds the keys or nothing.
	if json.Unmarshal(data, &probe) != nil {
		return c, nil
	}
	if probe.UUID != nil {
		return Config{}, Errorf(CodeInvalid, "%w", &FieldError{Path: "uuid", Msg: fmt.Sprintf("uuid %s: the all-zero UUID is not a domain's UUID (leave uuid out to have one generated)", Quote(string(probe.UUID)))})
	}
	return c, nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// maxDepth bounds nesting: configs nest four levels, and a megabyte of
// '[' must not become a million stack frames.
const maxDepth = 32

// checkStrict reads one value from dec, checking object keys against t
// (nil: any value, keys only checked for repeats).
func checkStrict(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested more than %d levels deep", maxDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var text reflect.Type // decodes itself from a string: checked here
	if t != nil && reflect.PointerTo(t).Implements(textUnmarshaler) && !reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		text = t
	}
	if t != nil && (reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)) {
		t = nil // decodes itself (uuid, time): shape unknown here
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if s, ok := tok.(string); ok && text != nil {
		// Its own decoder's error names neither the field nor the value
		// as the user wrote it ("invalid UUID length: 3"): say which here.
		if err := reflect.New(text).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("%s %s: %v", path, Quote(s), err)}
		}
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: encoding/json checks its type
	}
	if d == '[' {
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkStrict(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	var fields map[string]reflect.Type // exact key -> field type; nil: any key
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		at := path + "." + key
		if path == "" {
			at = key
		}
		if seen[key] {
			return &FieldError{Path: at, Msg: fmt.Sprintf("key %s given twice", Quote(at))}
		}
		seen[key] = true
		next := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return &FieldError{Path: at, Msg: fmt.Sprintf("unknown field %s%s", Quote(at), caseHint(fields, key))}
			}
			next = ft
		}
		if err := checkStrict(dec, next, at, depth+1); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

// jsonFields maps the exact JSON names of t's exported fields to their
// types, following embedded structs as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && f.Tag.Get("json") == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// caseHint names the field a wrongly cased key was probably meant for.
func caseHint(fields map[string]reflect.Type, key string) string {
	for k := range fields {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf(" (keys are case-sensitive: did you mean %q?)", k)
		}
	}
	return ""
}

// FieldError is an input error at one field. Path is the field as the
// input spells it ("disks[0].format"; a type error may leave out list
// indices: "disks.format"), so a reader of a YAML file can find its line.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Msg }

// describeJSON turns encoding/json's errors into bounded messages in the
// input's terms: no Go types, and the same words for JSON and YAML.
func describeJSON(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		return &FieldError{Path: te.Field, Msg: fmt.Sprintf("field %s: wants %s, got %s", Quote(te.Field), kindWord(te.Type), valueWord(te.Value))}
	}
	m := strings.TrimPrefix(err.Error(), "json: ")
	// Ours are bounded already; a field's own decoder (time, uuid) may
	// repeat the whole value.
	if len(m) > 4*MaxQuoted {
		return errors.New(prefix(m, 4*MaxQuoted) + "...")
	}
	return errors.New(m)
}

// kindWord names what a field of type t takes, in a config file's words.
func kindWord(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, at least 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping (key: value)"
	}
	return "another value"
}

// valueWord names what encoding/json found ("string", "number -1", ...).
func valueWord(v string) string {
	switch {
	case v == "string":
		return "text"
	case v == "object":
		return "a mapping"
	case v == "array":
		return "a list"
	case v == "bool":
		return "true or false"
	case v == "number":
		return "a number"
	case strings.HasPrefix(v, "number "):
		return "the number " + prefix(strings.TrimPrefix(v, "number "), MaxQuoted)
	}
	return prefix(v, MaxQuoted)
}
