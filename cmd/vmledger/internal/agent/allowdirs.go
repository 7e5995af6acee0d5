package agent

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/domains"
	"github.com/vmledger/vmledger/hypervisor/confine"
)

// ImagesDir is the default allowed directory inside the state directory
// (agent --allow-dir); DumpsDir is where on_crash writes its dumps.
const (
	ImagesDir = "images"
	DumpsDir  = "dumps"
)

// allowedDirs are the directories user paths (dump files, save images)
// must lie in: --allow-dir, or <state-dir>/images, made if missing.
func (a *agent) allowedDirs() (*confine.Dirs, error) {
	dirs := a.cfg.AllowDirs
	if len(dirs) == 0 {
		def := filepath.Join(a.cfg.StateDir, ImagesDir)
		if err := os.MkdirAll(def, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", def, err)
		}
		dirs = []string{def}
	}
	d, err := confine.New(dirs)
	if err != nil {
		return nil, domains.Errorf(domains.CodeInvalid, "--allow-dir: %w", err)
	}
	return d, nil
}
