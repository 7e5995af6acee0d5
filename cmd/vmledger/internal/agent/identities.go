package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/bus"
	"github.com/vmledger/vmledger/domains/api"
)

// IdentityDir holds one nkey seed per role (<role>.nk, 0600) for the
// embedded NATS server (docs/bus.md, Identities). Handing out
// readonly.nk lets someone watch without letting them command.
const IdentityDir = "nats-users"

// IdentityFile is the seed file of role in stateDir.
func IdentityFile(stateDir string, r bus.Role) string {
	return filepath.Join(stateDir, IdentityDir, string(r)+".nk")
}

// ReadVerbs are the verbs that change nothing, open to bus.RoleReadOnly.
func ReadVerbs() []string {
	return []string{api.VerbList, api.VerbInfo, api.VerbConfig, api.VerbJobInfo, api.VerbVCPUInfo, api.VerbDomTime}
}

// loadOrCreateIdentities reads each role's seed, making the missing ones
// on first start. A seed file others may read is refused, as the token is.
func (a *agent) loadOrCreateIdentities(stateDir string) ([]bus.Identity, error) {
	dir := filepath.Join(stateDir, IdentityDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("NATS identities: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("NATS identities: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	if err := a.private(dir, fi, "chmod 700 "+dir+" and remove the files in it (new keys are made at the next start)"); err != nil {
		return nil, err
	}
	var ids []bus.Identity
	for _, r := range bus.Roles() {
		seed, err := a.readOrCreateSeed(IdentityFile(stateDir, r))
		if err != nil {
			return nil, err
		}
		pub, err := bus.PublicKey(seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w; remove the file to get a new one", IdentityFile(stateDir, r), err)
		}
		ids = append(ids, bus.Identity{Role: r, NKey: pub})
	}
	return ids, nil
}

func (a *agent) readOrCreateSeed(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err == nil {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", path)
		}
		if err := a.private(path, fi, "rm "+path+" (a new key is made at the next start, and its holders must get it again)"); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read NATS identity: %w", err)
		}
		return trimSeed(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("NATS identity: %w", err)
	}
	seed, err := bus.NewSeed()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create NATS identity: %w", err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("write NATS identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("write NATS identity: %w", err)
	}
	return seed, f.Close()
}

func trimSeed(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
