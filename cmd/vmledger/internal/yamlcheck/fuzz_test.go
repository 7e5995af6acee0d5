package yamlcheck_test

import (
	"errors"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/yamlcheck"
	"github.com/vmledger/vmledger/domains"
)

// FuzzConfigYAML: a config file in YAML (or JSON), as define reads it
// (Check, then YAMLToJSON and DecodeConfig, as readYAMLInto does), never panics; a refused
// one is refused as invalid with a bounded message; an accepted one,
// printed as `config --yaml` prints it, is accepted again as the same
// config (define reads what config prints).
func FuzzConfigYAML(f *testing.F) {
	for _, s := range []string{
		"name: a\nmemory_mib: 16\n", "name: a\nname: b\n", "name: a\n---\nname: b\n",
		"disks:\n- target: vda\n  path: /x\n", "devices:\n- id: d\n  driver: x\n  props: {a: b}\n",
		`{"name":"a","clock":{"offset":"variable","adjustment":3}}`, "name: &x a\nhost: *x\n",
		"name: [1, 2]\n", "? [a]\n: b\n", "name: 0x10\nvcpus: 1e3\n", "",
	} {
		f.Add([]byte(s))
	}
	decode := func(raw []byte) (domains.Config, bool, error) {
		if _, err := yamlcheck.Check(raw); err != nil {
			return domains.Config{}, false, nil // YAML's own message; the CLI bounds the file to 1 MiB
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return domains.Config{}, false, nil
		}
		c, err := domains.DecodeConfig(js)
		return c, err == nil, err
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, ok, err := decode(raw)
		if !ok {
			if err != nil && (!errors.Is(err, domains.ErrInvalid) || len(err.Error()) > 2048) {
				t.Fatalf("error not invalid or too long: %.300v", err)
			}
			return
		}
		y, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not print as YAML: %v", err)
		}
		c2, ok, err := decode(y)
		if !ok {
			t.Fatalf("printed config refused (%v):\n%s", err, y)
		}
		if !reflect.DeepEqual(c.Normalize(), c2.Normalize()) {
			t.Fatalf("YAML round trip changed the config:\n%+v\n%+v\n%s", c, c2, y)
		}
	})
}
