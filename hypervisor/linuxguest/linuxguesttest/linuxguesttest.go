// Package linuxguesttest gives tests the Linux guest, built once per test
// binary run into a temporary directory: Image(t) in any test, Cleanup()
// at the end of TestMain.
package linuxguesttest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/hypervisor/linuxguest"
)

// buildTimeout bounds the one build (a few seconds on an idle machine;
// the machines the tests run on are shared).
const buildTimeout = 2 * time.Minute

// cache is the one build of this test binary run. A package-level value
// because the build is shared by every test of the binary, which is the
// point; it is written once, under once.
var cache struct {
	once sync.Once
	dir  string
	img  linuxguest.Image
	err  error
}

// Image returns the built guest, building it on first use. Without the
// Debian packages it skips the test, except under CI=true, where that is a
// broken runner and fails it (.ci/do installs them).
func Image(t testing.TB) linuxguest.Image {
	t.Helper()
	cache.once.Do(func() {
		// Under VMLEDGER_TEST_FILES when set: the directory a test agent
		// allows (--allow-dir) for the files its guests use.
		cache.dir, cache.err = os.MkdirTemp(os.Getenv("VMLEDGER_TEST_FILES"), "vmledger-linuxguest-")
		if cache.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cache.img, cache.err = linuxguest.Build(ctx, cache.dir)
	})
	if cache.err != nil {
		if errors.Is(cache.err, os.ErrNotExist) && os.Getenv("CI") != "true" {
			t.Skipf("Linux guest: %v (apt-get install linux-image-cloud-amd64 busybox-static)", cache.err)
		}
		t.Fatalf("Linux guest: %v", cache.err)
	}
	return cache.img
}

// Cleanup removes the build; call it from TestMain after m.Run.
func Cleanup() {
	if cache.dir != "" {
		os.RemoveAll(cache.dir)
	}
}
