package domains

import "fmt"

// Payloads that carry a whole Config (defined, config-updated, and a device
// inside device-attached) keep it as JSON inside the binary frame: they are
// rare, and JSON lets the config schema grow without a codec change. The
// frequent events are plain binary. Each type's layout is its row in the
// catalogue (registry.go).

// done reports the reader's first error, or trailing bytes: a payload must
// use its frame exactly, whichever schema version decoded it.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrCorrupt)
	}
	return nil
}
