package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The agent confines every file a command names to its --allow-dir
// directories (docs/security.md). Test agents of this build allow:
//   - testFiles, one directory per test binary run, under which diskDir
//     gives each test a fresh directory for disks, initrds and configs
//     (the Linux guest is built there too: VMLEDGER_TEST_FILES);
//   - /boot, for the host's kernel the Linux guest boots;
//   - <state-dir>/images, the default, unless the test names its own
//     --allow-dir.
//
// A t.TempDir() is outside all of them: tests of refusals use one.
var testFiles string

// setupTestFiles makes testFiles; TestMain calls it and the returned
// cleanup after the run.
func setupTestFiles() func() {
	dir, err := os.MkdirTemp("", "vmledger-files-")
	if err != nil {
		panic(err)
	}
	testFiles = dir
	os.Setenv("VMLEDGER_TEST_FILES", dir)
	return func() { os.RemoveAll(dir) }
}

// diskDir is a fresh directory the test agents allow.
func diskDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(testFiles, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// allowArgs are the --allow-dir flags startAgentBin adds.
func allowArgs(t testing.TB, stateDir string, extra []string) []string {
	t.Helper()
	args := []string{"--allow-dir", testFiles, "--allow-dir", "/boot"}
	if !slices.Contains(extra, "--allow-dir") {
		images := filepath.Join(stateDir, "images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--allow-dir", images)
	}
	return args
}
