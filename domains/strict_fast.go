package domains

import (
	"encoding"
	"reflect"
	"strconv"
	"sync"
)

// The fast path of DecodeStrict. checkStrict walks the input through
// json.Decoder.Token, which allocates per token and re-derives each
// struct's fields per object: it was most of the CPU of a define and a
// third of an info's with 10,000 domains (BenchmarkServiceLoad). Every
// command body passes it, and nearly all are clean, so strictClean first
// scans the bytes once, without allocating, and answers only "clean"
// (checkStrict would accept them: then it is skipped) or "not sure":
// anything unusual (a syntax error, an escape or a non-ASCII byte in a
// key, a strict-check failure) goes to checkStrict, whose errors are thus
// unchanged. FuzzStrictClean holds the two to that.

// typeInfo is what the strict checks need of a type.
type typeInfo struct {
	self   bool                    // decodes itself (uuid, time): shape unknown
	text   reflect.Type            // decodes itself from a string, checked (UnmarshalText)
	fields map[string]reflect.Type // a struct's exact JSON keys
	elem   reflect.Type            // a slice's, array's or map's element
	isMap  bool
}

// typeInfos memoizes typeInfo per type, as encoding/json memoizes its
// field lists: derived from the type alone, never changed once stored.
var typeInfos sync.Map // reflect.Type -> *typeInfo

func infoOf(t reflect.Type) *typeInfo {
	if v, ok := typeInfos.Load(t); ok {
		return v.(*typeInfo)
	}
	ti := &typeInfo{}
	u := t
	for u.Kind() == reflect.Pointer {
		u = u.Elem()
	}
	pt := reflect.PointerTo(u)
	isJSON, isText := pt.Implements(jsonUnmarshaler), pt.Implements(textUnmarshaler)
	switch {
	case isText && !isJSON:
		ti.self, ti.text = true, u
	case isJSON:
		ti.self = true
	case u.Kind() == reflect.Struct:
		ti.fields = jsonFields(u)
	case u.Kind() == reflect.Map:
		ti.elem, ti.isMap = u.Elem(), true
	case u.Kind() == reflect.Slice || u.Kind() == reflect.Array:
		ti.elem = u.Elem()
	}
	v, _ := typeInfos.LoadOrStore(t, ti)
	return v.(*typeInfo)
}

// strictClean reports whether data is one JSON value, and nothing after
// it, that checkStrict would accept as t. false means "not sure".
func strictClean(data []byte, t reflect.Type) bool {
	s := scanner{b: data}
	s.space()
	if !s.value(t, 0) {
		return false
	}
	s.space()
	return s.i == len(s.b)
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one value of type t (nil: any, keys checked for repeats).
func (s *scanner) value(t reflect.Type, depth int) bool {
	if depth > maxDepth || s.i >= len(s.b) {
		return false
	}
	var ti *typeInfo
	if t != nil {
		ti = infoOf(t)
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(ti, depth)
	case c == '[':
		var elem reflect.Type
		if ti != nil && !ti.self && !ti.isMap {
			elem = ti.elem
		}
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(elem, depth+1) {
				return false
			}
			if more, ok := s.after(']'); !more {
				return ok
			}
		}
	case c == '"':
		str, plain, ok := s.str()
		if !ok {
			return false
		}
		if ti != nil && ti.text != nil {
			// Its decoder must accept it; an escaped or non-ASCII value is
			// left to checkStrict, which unescapes it.
			if !plain {
				return false
			}
			return reflect.New(ti.text).Interface().(encoding.TextUnmarshaler).UnmarshalText(str) == nil
		}
		return true
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return false
}

func (s *scanner) object(ti *typeInfo, depth int) bool {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if ti != nil && !ti.self {
		fields, elem = ti.fields, ti.elem
		if !ti.isMap {
			elem = nil
		}
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	var seen [16][]byte // keys so far; more than 16: not sure
	n := 0
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		key, plain, ok := s.str()
		if !ok || !plain || n == len(seen) {
			return false
		}
		for _, k := range seen[:n] {
			if string(k) == string(key) {
				return false
			}
		}
		seen[n] = key
		n++
		next := elem
		if fields != nil {
			ft, known := fields[string(key)]
			if !known {
				return false
			}
			next = ft
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		if !s.value(next, depth+1) {
			return false
		}
		if more, ok := s.after('}'); !more {
			return ok
		}
	}
}

// after scans what follows an element: a comma (more) or end (done, ok).
func (s *scanner) after(end byte) (more, ok bool) {
	s.space()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.space()
		return true, true
	case end:
		s.i++
		return false, true
	}
	return false, false
}

// str scans a string and returns its bytes between the quotes; plain
// says they are ASCII without escapes, so they are the string's value.
func (s *scanner) str() (b []byte, plain, ok bool) {
	start := s.i + 1
	plain = true
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], plain, true
		case c < 0x20:
			return nil, false, false
		case c == '\\':
			plain = false
			if i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+5 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+2 : i+6] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 5
			default:
				return nil, false, false
			}
		case c >= 0x80:
			plain = false
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number scans a JSON number; one a float64 cannot hold (1e400) is left
// to checkStrict, whose token reader refuses it.
func (s *scanner) number() bool {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	simple := true
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		simple = false
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	if simple && s.i-start <= 300 {
		return true // without an exponent, 300 digits are within float64's range
	}
	_, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
	return err == nil
}
