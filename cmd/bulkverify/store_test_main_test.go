package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/store"
)

// The store is on by default and lives in the user's cache directory: no
// test may write there. TestMain points the cache directory at a directory
// of its own for the whole process, and isolateStore gives each test that
// runs the CLI a default store of its own inside it, so that one test's
// verdicts are never reused by another. TestMain fails the run if anything
// was written to the real cache directory's bulkverify/ meanwhile.
func TestMain(m *testing.M) {
	realDir := ""
	if d, err := os.UserCacheDir(); err == nil {
		realDir = filepath.Join(d, "bulkverify")
	}
	before := cacheState(realDir)
	root, err := os.MkdirTemp("", "bulkverify-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv(testCacheRoot, root)
	os.Setenv("XDG_CACHE_HOME", filepath.Join(root, "shared"))
	if p, err := store.DefaultPath(); err != nil || !strings.HasPrefix(p, root) {
		// Not a system that reads XDG_CACHE_HOME (macOS): the home
		// directory decides.
		os.Setenv("HOME", filepath.Join(root, "home"))
	}
	code := m.Run()
	os.RemoveAll(root)
	if after := cacheState(realDir); after != before {
		fmt.Fprintf(os.Stderr, "tests wrote to the real cache directory %s: %s, was %s\n", realDir, after, before)
		code = 1
	}
	os.Exit(code)
}

// testCacheRoot names the environment variable that holds TestMain's
// directory.
const testCacheRoot = "BULKVERIFY_TEST_CACHE_ROOT"

// cacheState describes dir's files, to tell whether anything changed.
func cacheState(dir string) string {
	if dir == "" {
		return "none"
	}
	var b strings.Builder
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %d %s;", path, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		}
		return nil
	})
	return b.String()
}

// isolateStore gives the calling test a default store of its own (the same
// one for all of its runs, so that a second run may reuse the first's
// verdicts). Real binaries started afterwards inherit it.
func isolateStore(t *testing.T) {
	t.Helper()
	root := os.Getenv(testCacheRoot)
	if root == "" {
		t.Fatal("TestMain did not set up the cache directory")
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ' ' {
			return '_'
		}
		return r
	}, t.Name())
	t.Setenv("XDG_CACHE_HOME", filepath.Join(root, "tests", name))
	if os.Getenv("HOME") != "" && strings.HasPrefix(os.Getenv("HOME"), root) {
		t.Setenv("HOME", filepath.Join(root, "tests", name, "home"))
	}
}
