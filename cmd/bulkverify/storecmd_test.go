package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/store"
)

// newTestStore writes a store with a few verdicts in two namespaces and
// returns its path.
func newTestStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	for _, v := range []store.Verdict{
		{Namespace: "acme", Address: "ann@example.test", Status: "deliverable", Reason: "accepted", SMTPCode: 250, CheckedAt: now},
		{Namespace: "acme", Address: "bob@example.test", Status: "undeliverable", Reason: "mailbox_unknown", SMTPCode: 550,
			EnhancedCode: "5.1.1", Message: "=HYPERLINK(\"x\") no such user", CheckedAt: now.Add(-2 * time.Hour)},
		{Namespace: "acme", Address: "cy@other.test", Status: "risky", Reason: "accept_all", CatchAll: store.TriYes, CheckedAt: now},
		{Namespace: "globex", Address: "ann@example.test", Status: "deliverable", Reason: "accepted", TLS: store.TriYes, CheckedAt: now},
	} {
		if err := s.Put(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutDomain(ctx, store.DomainInfo{Domain: "other.test", CatchAll: store.TriYes, CatchAllAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStoreStats(t *testing.T) {
	path := newTestStore(t)
	code, stdout, stderr := runCLI(t, "", "store", "stats", "--store", path)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{path, "90 days", "namespace acme", "3 verdicts", "namespace globex", "1 verdicts", "deliverable 1", "domains", "1 with a catch-all answer"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stats do not say %q:\n%s", want, stdout)
		}
	}
}

func TestStoreExport(t *testing.T) {
	path := newTestStore(t)
	code, stdout, stderr := runCLI(t, "", "store", "export", "--store", path)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	rows := readCSV(t, stdout)
	if len(rows) != 4 {
		t.Fatalf("%d rows:\n%s", len(rows), stdout)
	}
	if r := rows[0]; r["namespace"] != "acme" || r["email"] != "ann@example.test" || r["status"] != "deliverable" || r["checked_at"] == "" {
		t.Errorf("first row %v", r)
	}
	// Server text is made safe for a spreadsheet, as in the results.
	if m := rows[1]["smtp_message"]; strings.HasPrefix(m, "=") {
		t.Errorf("formula reaches the export: %q", m)
	}
	if rows[2]["catch_all"] != "true" || rows[0]["catch_all"] != "" {
		t.Errorf("catch_all column: %q %q", rows[2]["catch_all"], rows[0]["catch_all"])
	}

	out := filepath.Join(t.TempDir(), "globex.jsonl")
	code, _, stderr = runCLI(t, "", "store", "export", "--store", path, "--format", "jsonl", "--namespace", "globex", "-o", out)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600 (it holds personal data)", fi.Mode().Perm())
	}
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != 1 || lines[0]["namespace"] != "globex" || lines[0]["tls"] != true {
		t.Errorf("globex export: %v", lines)
	}
}

func TestStoreForgetAndPrune(t *testing.T) {
	path := newTestStore(t)
	code, stdout, stderr := runCLI(t, "", "store", "forget", "--store", path, "Ann@EXAMPLE.test")
	if code != exitOK || !strings.Contains(stdout, "forgot 2 verdicts of Ann@example.test in all namespaces") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "store", "forget", "--store", path, "--domain", "other.test", "--namespace", "globex")
	if code != exitOK || !strings.Contains(stdout, "forgot 0 verdicts") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "store", "forget", "--store", path, "--domain", "other.test")
	if code != exitOK || !strings.Contains(stdout, "forgot 1 verdicts and 1 catch-all answers") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "store", "prune", "--store", path, "--older-than", "1h")
	if code != exitOK || !strings.Contains(stdout, "pruned 1 verdicts") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	_, stdout, _ = runCLI(t, "", "store", "export", "--store", path)
	if rows := readCSV(t, stdout); len(rows) != 0 {
		t.Errorf("left after forget and prune: %v", rows)
	}
}

func TestStoreCommandErrors(t *testing.T) {
	path := newTestStore(t)
	missing := filepath.Join(t.TempDir(), "none", "store.db")
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no subcommand", []string{"store"}, exitUsage, "Usage"},
		{"unknown subcommand", []string{"store", "frob"}, exitUsage, "unknown command"},
		{"forget without address", []string{"store", "forget", "--store", path}, exitUsage, "exactly one address"},
		{"stats with an argument", []string{"store", "stats", "x"}, exitUsage, "want no arguments"},
		{"bad format", []string{"store", "export", "--store", path, "--format", "xml"}, exitUsage, "xml"},
		{"bad namespace", []string{"store", "export", "--store", path, "--namespace", "a b"}, exitUsage, "namespace"},
		{"bad address", []string{"store", "forget", "--store", path, "a\x00b@x.test"}, exitUsage, "bad key"},
		{"missing store", []string{"store", "stats", "--store", missing}, exitOK, "no store at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d (want %d), stderr does not say %q:\n%s", code, tt.code, tt.want, stderr)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("stats created a store: %v", err)
	}
}

func TestStoreInUse(t *testing.T) {
	path := newTestStore(t)
	s, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _, stderr := runCLI(t, "", "store", "stats", "--store", path)
	if code != exitFatal || !strings.Contains(stderr, "in use by another bulkverify process") || !strings.Contains(stderr, path) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestStoreRunFlags(t *testing.T) {
	fs, rf := newRunFlagSet("verify", "", io.Discard)
	dir := t.TempDir()
	if err := fs.Parse([]string{"--store", filepath.Join(dir, "s.db"), "--store-namespace", "acme", "--max-age", "36h", "--refresh"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := rf.shared.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Store
	if !sc.Enabled || sc.Path != filepath.Join(dir, "s.db") || sc.Namespace != "acme" || sc.MaxAge != 36*time.Hour || !sc.Refresh {
		t.Errorf("store settings %+v", sc)
	}
	if ns := runNamespaces(sc); len(ns) != 1 || ns[0] != "acme" {
		t.Errorf("namespaces %v", ns)
	}
	s, err := openRunStore(sc)
	if err != nil || s == nil {
		t.Fatalf("openRunStore: %v", err)
	}
	s.Close()

	fs, rf = newRunFlagSet("verify", "", io.Discard)
	if err := fs.Parse([]string{"--no-store"}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = rf.shared.config(fs); err != nil {
		t.Fatal(err)
	}
	if s, err := openRunStore(cfg.Store); s != nil || err != nil {
		t.Errorf("--no-store opened %v, %v", s, err)
	}
	fs, rf = newRunFlagSet("verify", "", io.Discard)
	if err := fs.Parse([]string{"--store-namespace", "no good"}); err != nil {
		t.Fatal(err)
	}
	if _, err = rf.shared.config(fs); err == nil || exitCode(context.Background(), err) != exitUsage {
		t.Errorf("bad namespace flag: %v", err)
	}
}
