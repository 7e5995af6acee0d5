package owner

import (
	"crypto/sha256"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/vmledger/vmledger/domains"
)

// storedResult is what the log keeps under a command ID; sequences are
// rebuilt from the record's first sequence.
type storedResult struct {
	Domain uuid.UUID     `json:"domain"`
	Name   string        `json:"name"`
	Count  int           `json:"count"`
	State  domains.State `json:"state"`
	Job    string        `json:"job,omitempty"`
	// Define's outcome (domains.Result).
	Updated   bool `json:"updated,omitempty"`
	Unchanged bool `json:"unchanged,omitempty"`
}

func encodeResult(r domains.Result) []byte {
	b, _ := json.Marshal(storedResult{Domain: r.Domain, Name: r.Name, Count: len(r.Seqs), State: r.State, Job: r.Job, Updated: r.Updated, Unchanged: r.Unchanged})
	return b
}

func decodeResult(rec domains.CommandRecord) (domains.Result, error) {
	var s storedResult
	if err := json.Unmarshal(rec.Result, &s); err != nil {
		return domains.Result{}, domains.Errorf(domains.CodeInternal, "stored command result: %w", err)
	}
	r := domains.Result{Domain: s.Domain, Name: s.Name, State: s.State, Seqs: make([]uint64, s.Count), Job: s.Job, Updated: s.Updated, Unchanged: s.Unchanged}
	for i := range r.Seqs {
		r.Seqs[i] = rec.FirstSeq + uint64(i)
	}
	return r, nil
}

// requestDigest identifies a command's request: its verb, the domain as
// named and the canonical JSON of its arguments (struct fields in order,
// map keys sorted). A command ID is bound to it.
func requestDigest(verb, ref string, args any) []byte {
	b, _ := json.Marshal(args) // configs and options always marshal
	h := sha256.New()
	h.Write([]byte(verb))
	h.Write([]byte{0})
	h.Write([]byte(ref))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

// reusedID is the conflict of a command ID sent again with another
// request (docs/bus.md).
func reusedID(cmdID string) error {
	return domains.Errorf(domains.CodeConflict, "command ID %s was already used for a different request (verb, domain or body differ): use a new ID for a new request", domains.Quote(cmdID))
}
