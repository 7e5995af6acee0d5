package domains

// StartOptions tune Start.
type StartOptions struct {
	Paused bool // leave the vCPUs stopped after boot (virsh start --paused)
	// ForceBoot boots afresh and discards a managed save image (virsh
	// start --force-boot); without it, start restores one.
	ForceBoot bool `json:"force_boot,omitempty"`
}
