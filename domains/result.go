package domains

import "github.com/google/uuid"

// Result is a command's reply. A retry with the same command ID gets the
// same Result, byte for byte.
type Result struct {
	Domain uuid.UUID `json:"domain"`
	Name   string    `json:"name"`
	Seqs   []uint64  `json:"seqs"`
	State  State     `json:"state"`
	// Job is the ID of the asynchronous job the command started.
	Job string `json:"job,omitempty"`
	// Define only: Updated when an existing domain got a new config,
	// Unchanged when the config was the one it had (no event).
	Updated   bool `json:"updated,omitempty"`
	Unchanged bool `json:"unchanged,omitempty"`
}
