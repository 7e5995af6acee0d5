package libvirtxml

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/domains"
)

// FuzzConvert: no XML makes Convert panic; what it refuses is refused as
// invalid; a config it returns encodes as JSON (define sends it so).
func FuzzConvert(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`<domain type="kvm"><name>a</name><memory unit="KiB">65536</memory></domain>`))
	f.Add([]byte(`<domain><devices><disk type="file"><source file="/x"/><target dev="vda"/></disk></devices></domain>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Convert(b)
		if err != nil {
			if !errors.Is(err, domains.ErrInvalid) {
				t.Fatalf("error not invalid: %v", err)
			}
			return
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("converted config does not encode: %v", err)
		}
	})
}
