package domains

// SaveOptions are save's and managedsave's parameters.
type SaveOptions struct {
	Path        string `json:"path,omitempty"`
	Compression string `json:"compression,omitempty"` // zstd (default), snappy, none
	// Running or Paused override the state the restore leaves the guest
	// in (default: as it was when saved).
	Running bool `json:"running,omitempty"`
	Paused  bool `json:"paused,omitempty"`
	Managed bool `json:"managed,omitempty"`
}

// RestoreOptions are restore's parameters.
type RestoreOptions struct {
	Path    string `json:"path"`
	Running bool   `json:"running,omitempty"`
	Paused  bool   `json:"paused,omitempty"`
	Managed bool   `json:"managed,omitempty"` // the image is the domain's managed save
}
