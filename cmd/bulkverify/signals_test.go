package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/configs"
)

// The list flags reach the config over the file's settings, and a bad list
// file stops the run with a usage error naming the file and line.
func TestSignalsFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	disp := write("disp.txt", "throwaway.example\n")
	free := write("free.txt", "corp-free.example\n")
	roles := write("roles.txt", "ceo\n")
	cfgFile := write("c.yaml", "signals:\n  disposable_file: other.txt\n  role_mode: replace\n")

	fs, rf := newRunFlagSet("verify", "", io.Discard)
	if _, err := parseInterspersed(fs, []string{"--config", cfgFile, "--disposable-list", disp, "--free-list", free,
		"--role-list", roles, "--report", "out.html", "in.csv"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := rf.shared.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Signals; s.DisposableFile != disp || s.FreeFile != free || s.RoleFile != roles || s.RoleMode != "replace" || rf.report != "out.html" {
		t.Fatalf("signals config %+v, report %q", s, rf.report)
	}
	set, err := loadSignals(cfg, time.Now(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f := set.Of("ceo", "throwaway.example", true); !f.Disposable || !f.Role {
		t.Errorf("user lists not loaded: %+v", f)
	}
	if set.IsRole("info") {
		t.Error("role_mode replace from the config file was not applied")
	}

	bad := write("bad.txt", "ok.example\nuser@bad.example\n")
	in := write("in.csv", "email\nalice@acme.test\n")
	code, _, stderr := runCLI(t, "", "verify", "--sandbox", "--disposable-list", bad, in)
	if code != exitUsage || !strings.Contains(stderr, bad) || !strings.Contains(stderr, "line 2") {
		t.Errorf("bad list: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "find", "--sandbox", "--role-list", filepath.Join(dir, "missing.txt"), in)
	if code != exitUsage || !strings.Contains(stderr, "missing.txt") {
		t.Errorf("missing role list: exit %d, stderr %q", code, stderr)
	}
}

func TestSignalsStaleWarning(t *testing.T) {
	cfg := configs.Default()
	set, err := loadSignals(cfg, time.Time{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	date := set.Lists()[0].Date
	for _, tc := range []struct {
		now    time.Time
		maxAge time.Duration
		file   string
		warn   bool
	}{
		{date.Add(59 * 24 * time.Hour), cfg.Signals.DisposableMaxAge, "", false},
		{date.Add(61 * 24 * time.Hour), cfg.Signals.DisposableMaxAge, "", true},
		{date.Add(600 * 24 * time.Hour), 0, "", false},
	} {
		c := cfg
		c.Signals.DisposableMaxAge = tc.maxAge
		var stderr bytes.Buffer
		if _, err := loadSignals(c, tc.now, &stderr); err != nil {
			t.Fatal(err)
		}
		got := stderr.String()
		if warned := strings.Contains(got, "warning:"); warned != tc.warn {
			t.Errorf("now %v, max age %v: stderr %q, want warning %v", tc.now, tc.maxAge, got, tc.warn)
		}
		if tc.warn && (!strings.Contains(got, date.Format(time.DateOnly)) || !strings.Contains(got, "61 days") ||
			!strings.Contains(got, "--disposable-list")) {
			t.Errorf("warning %q should give the list's date, its age and the remedy", got)
		}
	}
}
