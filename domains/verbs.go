package domains

import "time"

// StartOptions tune Start.
type StartOptions struct {
	Paused bool // leave the vCPUs stopped after boot (virsh start --paused)
	// ForceBoot boots afresh and discards a managed save image (virsh
	// start --force-boot); without it, start restores one.
	ForceBoot bool `json:"force_boot,omitempty"`
}

// DeviceOptions are attach-device's and detach-device's flags, with
// virsh's meanings: Live changes the running QEMU only, Config the
// persistent config only, Persistent both (the config alone when shut
// off); none of them: the running QEMU when the domain runs, else the
// config. Timeout (detach, live): after it, a detach the guest has not
// completed is recorded as failed; 0 waits for the guest for ever.
type DeviceOptions struct {
	Live       bool          `json:"live,omitempty"`
	Config     bool          `json:"config,omitempty"`
	Persistent bool          `json:"persistent,omitempty"`
	Timeout    time.Duration `json:"timeout,omitempty"`
}

// Targets resolves the flags for a domain that is (or is not) active:
// whether to change the running QEMU and the persistent config.
func (o DeviceOptions) Targets(active bool) (live, persist bool, err error) {
	n := 0
	for _, b := range []bool{o.Live, o.Config, o.Persistent} {
		if b {
			n++
		}
	}
	switch {
	case n > 1:
		return false, false, Errorf(CodeInvalid, "--live, --config and --persistent exclude each other")
	case o.Live && !active:
		return false, false, Errorf(CodeConflict, "--live: the domain is not running")
	case o.Live:
		return true, false, nil
	case o.Config:
		return false, true, nil
	case o.Persistent:
		return active, true, nil
	}
	return active, !active, nil
}
