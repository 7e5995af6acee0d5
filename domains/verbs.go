package domains

// StartOptions tune Start.
type StartOptions struct {
	Paused bool // leave the vCPUs stopped after boot (virsh start --paused)
}
