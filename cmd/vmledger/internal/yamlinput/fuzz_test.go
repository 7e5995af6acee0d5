package yamlinput_test

import (
	"errors"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/yamlinput"
	"github.com/vmledger/vmledger/domains"
)

// FuzzConfigYAML: a config file in YAML (or JSON) never panics the
// decoder; a refused one is refused as invalid with a bounded message;
// an accepted one, printed as `config --yaml` prints it, is accepted
// again as the same config (define reads what config prints).
func FuzzConfigYAML(f *testing.F) {
	for _, s := range []string{
		"name: a\nmemory_mib: 16\n", "name: a\nname: b\n", "name: a\n---\nname: b\n",
		"disks:\n- target: vda\n  path: /x\n", "devices:\n- id: d\n  driver: x\n  props: {a: b}\n",
		`{"name":"a","clock":{"offset":"variable","adjustment":3}}`, "name: &x a\nhost: *x\n",
		"name: [1, 2]\n", "? [a]\n: b\n", "name: 0x10\nvcpus: 1e3\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		js, _, err := yamlinput.Parse(raw)
		if err != nil {
			return // YAML's own message; the CLI bounds the file to 1 MiB
		}
		c, err := domains.DecodeConfig(js)
		if err != nil {
			if !errors.Is(err, domains.ErrInvalid) || len(err.Error()) > 2048 {
				t.Fatalf("error not invalid or too long: %.300v", err)
			}
			return
		}
		y, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not print as YAML: %v", err)
		}
		js2, _, err := yamlinput.Parse(y)
		if err != nil {
			t.Fatalf("printed YAML refused: %v\n%s", err, y)
		}
		c2, err := domains.DecodeConfig(js2)
		if err != nil {
			t.Fatalf("printed config refused: %v\n%s", err, y)
		}
		if !reflect.DeepEqual(c.Normalize(), c2.Normalize()) {
			t.Fatalf("YAML round trip changed the config:\n%+v\n%+v\n%s", c, c2, y)
		}
	})
}
