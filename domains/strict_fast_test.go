package domains

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// strictProbe has a field of each kind the strict checks treat apart.
type strictProbe struct {
	Name  string            `json:"name"`
	N     uint64            `json:"n"`
	F     float64           `json:"f"`
	Raw   json.RawMessage   `json:"raw"`
	At    time.Time         `json:"at"`
	Any   any               `json:"any"`
	Bytes []byte            `json:"bytes"`
	Props map[string]string `json:"props"`
	Cfg   *Config           `json:"cfg"`
	List  []Config          `json:"list"`
	Pair  [2]int            `json:"pair"`
	Skip  string            `json:"-"`
}

var strictTypes = []reflect.Type{reflect.TypeFor[*Config](), reflect.TypeFor[*strictProbe](),
	reflect.TypeFor[*map[string]any](), reflect.TypeFor[*[]Config]()}

// The fast path takes the usual clean bodies, leaves everything unusual
// to checkStrict, and changes no outcome: DecodeStrict gives the same
// value or the same error with it as without it.
func TestStrictClean(t *testing.T) {
	cases := []struct {
		in    string
		clean bool // for strictProbe
	}{
		{`{"name":"web"}`, true},
		{` {"name":"web","n":3,"f":-1.5e3,"raw":{"a":[1,2,{"b":null}]},"any":[true,false,null,"x"],"props":{"k":"v","K":"w"}} `, true},
		{`{"at":"2026-12-02T01:00:00Z","bytes":"aGk=","pair":[1,2],"list":[{"name":"a","disks":[{"target":"hda","path":"/x"}]}]}`, true},
		{`{"cfg":{"name":"a","uuid":"6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60","serial":{}}}`, true},
		{`{}`, true},
		{`{"name":"a","name":"b"}`, false},       // twice
		{`{"NAME":"a"}`, false},                  // case
		{`{"colour":"red"}`, false},              // unknown
		{`{"Skip":"x"}`, false},                  // json:"-"
		{`{"raw":{"a":1,"a":2}}`, false},         // twice, below a RawMessage
		{`{"props":{"k":"1","k":"2"}}`, false},   // twice in a map
		{`{"name":"a"} x`, false},                // trailing
		{`{"name":"a"}{}`, false},                // trailing
		{`{"n\u0061me":"a"}`, false},             // an escaped key: left to checkStrict
		{`{"cfg":{"uuid":"not-a-uuid"}}`, false}, // its own decoder refuses it
		{`{"cfg":{"uuid":"6f1c3c1e\u002d4b9a-4f57-9f0e-1d2c3b4a5f60"}}`, false},
		{`{"f":1e400}`, false}, // no float64 holds it
		{`{"any":` + strings.Repeat("9", 400) + `}`, false},
		{`{"name":"a",}`, false},
		{`{"name":"a"`, false},
		{`{"name":"a\x01"}`, false},
		{`{"n":01}`, false},
		{`{"n":-}`, false},
		{`{"n":1.}`, false},
		{`{"any":tru}`, false},
		{``, false},
		{`{"any":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, false}, // deeper than maxDepth
		{`{"raw":{"a0":0,"a1":0,"a2":0,"a3":0,"a4":0,"a5":0,"a6":0,"a7":0,"a8":0,"a9":0,"b0":0,"b1":0,"b2":0,"b3":0,"b4":0,"b5":0}}`, true},
		{`{"raw":{"a0":0,"a1":0,"a2":0,"a3":0,"a4":0,"a5":0,"a6":0,"a7":0,"a8":0,"a9":0,"b0":0,"b1":0,"b2":0,"b3":0,"b4":0,"b5":0,"b6":0}}`, false}, // over 16 keys: not sure
	}
	for _, c := range cases {
		if got := strictClean([]byte(c.in), reflect.TypeFor[*strictProbe]()); got != c.clean {
			t.Errorf("strictClean(%.80s) = %v, want %v", c.in, got, c.clean)
		}
		var fast, slow strictProbe
		ef, es := DecodeStrict([]byte(c.in), &fast), decodeStrict([]byte(c.in), &slow, false)
		if (ef == nil) != (es == nil) || (ef != nil && ef.Error() != es.Error()) {
			t.Errorf("%.80s: DecodeStrict %v, without the fast path %v", c.in, ef, es)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("%.80s: decoded %+v, without the fast path %+v", c.in, fast, slow)
		}
	}
}

// FuzzStrictClean: what the fast path calls clean, checkStrict accepts.
func FuzzStrictClean(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"name":"a","name":"b"}`, `{"raw":{"a":[1,{"b":2}]}}`,
		`{"cfg":{"uuid":"6f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60"}}`, `[{"name":"a","disks":[{"target":"vda"}]}]`,
		`{"f":1e400}`, `{"n\u0061me":"a"}`, `{"props":{"k":"1"}}`} {
		f.Add([]byte(s))
	}
	// The cases the fast path must leave to checkStrict, or judge as it does.
	nest := func(n int) string { return `{"any":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}` }
	for _, s := range []string{
		`{"name":"a","n\u0061me":"b"}`, `{"props":{"k":"1","\u006b":"2"}}`, `{"raw":{"a":{"b":1,"b":2}}}`, // twice, one escaped
		`{"NAME":"a"}`, `{"nope":1}`, `{"cfg":{"name":"a","extra":true}}`, `[{"name":"a","Name":"b"}]`, // unknown
		nest(30), nest(31), nest(32), nest(33), strings.Repeat("[", 33) + strings.Repeat("]", 33), strings.Repeat("[", 34) + strings.Repeat("]", 34), // around maxDepth
		`{"f":-1e400}`, `{"f":1e-400}`, `{"n":18446744073709551616}`, `{"any":` + strings.Repeat("9", 300) + `}`,
		`{"any":` + strings.Repeat("9", 310) + `}`, `{"any":0.` + strings.Repeat("1", 400) + `}`, `{"f":1E+2}`, // huge numbers
		"{\"name\":\"\xff\"}", "{\"\xff\":1}", "{\"props\":{\"\xc3\xa9\":\"\xed\xa0\x80\"}}", // invalid UTF-8, non-ASCII key
		`{"name":"\ud800"}`, `{"name":"a\/b\n"}`, `{"at":"2026-12-02T01:00:00\u005a"}`, `{"cfg":{"uuid":"\u0036f1c3c1e-4b9a-4f57-9f0e-1d2c3b4a5f60"}}`, // escapes
		"\xef\xbb\xbf{\"name\":\"a\"}", "\ufeff{}", // a BOM
		`{} {}`, `{}x`, "{}\x00", `{}]`, ` {} `, "{}\f", `"x"`, `null`, ` `, // trailing data, top-level scalars
		`{"raw":{` + strings.Repeat(`"k":0,`, 20) + `"k":0}}`, `{"name":"` + strings.Repeat("x", 1<<16) + `"}`, // over 16 keys, long
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ty := range strictTypes {
			if strictClean(b, ty) {
				if err := checkStrictAll(b, ty); err != nil {
					t.Fatalf("clean for the fast path as %v, refused by checkStrict: %v\n%q", ty, err, b)
				}
			}
		}
	})
}
