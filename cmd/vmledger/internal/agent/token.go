package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the embedded NATS server's token, in the state directory.
// Like libvirt's root-owned socket, whoever may read the state directory
// may command the agent; other local users reach only a closed port.
const TokenFile = "nats.token"

// loadOrCreateToken reads the token, or makes one (0600) on first start.
// A token file others may read is refused (see private).
func (a *agent) loadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	fi, err := os.Lstat(path)
	if err == nil {
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s: not a regular file", path)
		}
		if err := a.private(path, fi, "rm "+path+" (a new token is made at the next start, and clients must get it again)"); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("%s: token too short (%d bytes); remove the file to get a new one", path, len(tok))
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read NATS token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create NATS token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}
