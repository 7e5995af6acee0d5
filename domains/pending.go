package domains

import (
	"encoding/json"
	"sort"
)

// Change is one config field that differs between what the running QEMU
// has and what the next start boots: a config defined (or a device
// attached with --config) while the guest runs. Values are compact JSON.
type Change struct {
	Field   string `json:"field"`
	Running string `json:"running"`
	Next    string `json:"next"`
}

// maxChangeValue bounds a value as shown (a disk list can be long).
const maxChangeValue = 200

// PendingChanges lists, by top-level config field, what applies at the
// next start and differs from what runs now; nil while shut off or when
// nothing differs.
func (d Domain) PendingChanges() []Change {
	if d.Running == nil {
		return nil
	}
	run, next := fieldsOf(*d.Running), fieldsOf(d.Config)
	keys := make(map[string]bool)
	for k := range run {
		keys[k] = true
	}
	for k := range next {
		keys[k] = true
	}
	var out []Change
	for k := range keys {
		if string(run[k]) != string(next[k]) {
			out = append(out, Change{Field: k, Running: shown(run[k]), Next: shown(next[k])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

func fieldsOf(c Config) map[string]json.RawMessage {
	b, _ := json.Marshal(c.Normalize())
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	return m
}

func shown(v json.RawMessage) string {
	if v == nil {
		return "(none)"
	}
	if len(v) > maxChangeValue {
		return string(v[:maxChangeValue]) + "..."
	}
	return string(v)
}
