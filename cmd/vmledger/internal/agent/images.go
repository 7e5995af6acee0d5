package agent

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/confine"
)

// ImagesDir and ManagedSaveDir are, inside the state directory, the
// default allowed directory for save images and the agent's own place
// for managed save images.
const (
	ImagesDir      = "images"
	ManagedSaveDir = "managedsave"
)

// imageDirs makes the default directories and checks the allowed ones
// (`--allow-dir`): each must exist and be a directory.
func (a *agent) imageDirs() (*confine.Dirs, string, error) {
	managed := filepath.Join(a.cfg.StateDir, ManagedSaveDir)
	dirs := a.cfg.AllowDirs
	if len(dirs) == 0 {
		dirs = []string{filepath.Join(a.cfg.StateDir, ImagesDir)}
		if err := os.MkdirAll(dirs[0], 0o700); err != nil {
			return nil, "", fmt.Errorf("images directory: %w", err)
		}
	}
	if err := os.MkdirAll(managed, 0o700); err != nil {
		return nil, "", fmt.Errorf("managed save directory: %w", err)
	}
	d, err := confine.New(dirs)
	if err != nil {
		return nil, "", domains.Errorf(domains.CodeInvalid, "--allow-dir: %w", err)
	}
	for _, dev := range a.cfg.AllowDevices {
		if err := d.AllowDevice(dev); err != nil {
			return nil, "", domains.Errorf(domains.CodeInvalid, "--allow-device: %w", err)
		}
	}
	return d, managed, nil
}
