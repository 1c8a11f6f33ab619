package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCLI runs the real CLI in-process and returns its exit code and streams.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	isolateStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func readCSV(t *testing.T, text string) []map[string]string {
	t.Helper()
	records, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, text)
	}
	var rows []map[string]string
	for _, rec := range records[1:] {
		m := map[string]string{}
		for i, name := range records[0] {
			m[name] = rec[i]
		}
		rows = append(rows, m)
	}
	return rows
}

func TestSandboxExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.csv")
	// The input file comes first and the flag after it, as users type it.
	code, _, stderr := runCLI(t, "", "verify", "--sandbox", "../../examples/leads.csv", "-o", out, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile("../../examples/leads.csv")
	if err != nil {
		t.Fatal(err)
	}
	inRows := readCSV(t, string(in))
	rows := readCSV(t, string(data))
	if len(rows) != len(inRows) {
		t.Fatalf("%d output rows for %d input rows", len(rows), len(inRows))
	}
	// Input columns come first, untouched (by position: the result columns
	// include an "email" of their own).
	inRecords, _ := csv.NewReader(bytes.NewReader(in)).ReadAll()
	outRecords, _ := csv.NewReader(bytes.NewReader(data)).ReadAll()
	seen := map[int]bool{}
	for i, r := range rows {
		n, err := strconv.Atoi(r["row"])
		if err != nil || n < 1 || n > len(inRows) || seen[n] {
			t.Fatalf("bad or repeated row number %q", r["row"])
		}
		seen[n] = true
		for col, v := range inRecords[n] {
			if got := outRecords[i+1][col]; got != v {
				t.Errorf("row %d: input column %s = %q in the output, was %q", n, inRecords[0][col], got, v)
			}
		}
		if r["status"] == "" || r["reason"] == "" || r["checked_at"] == "" {
			t.Errorf("row %d incomplete: %v", n, r)
		}
	}
	statuses := map[string]bool{}
	reasons := map[string]bool{}
	for _, r := range rows {
		statuses[r["status"]] = true
		reasons[r["reason"]] = true
	}
	for _, s := range []string{"deliverable", "undeliverable", "risky", "unknown", "invalid"} {
		if !statuses[s] {
			t.Errorf("the example world produced no %q row", s)
		}
	}
	for _, r := range []string{"null_mx", "nxdomain", "syntax", "mailbox_unknown", "policy_block"} {
		if !reasons[r] {
			t.Errorf("the example world produced no %q reason", r)
		}
	}
	if !strings.Contains(stderr, "SMTP connections") {
		t.Errorf("no summary on stderr:\n%s", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	noColumn := filepath.Join(dir, "names.csv")
	if err := os.WriteFile(noColumn, []byte("first_name,last_name\nAda,Lovelace\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCSV := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badCSV, []byte("email,name\na@b.test,\"ok\"\nc@d.test,x\"y\"z\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(badConfig, []byte("smtp:\n  helo: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "Usage"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"no input", []string{"verify"}, "want exactly one input file"},
		{"two inputs", []string{"verify", "a.csv", "b.csv"}, "want exactly one input file"},
		{"unknown flag", []string{"verify", "--frob", "x.csv"}, "frob"},
		{"missing file", []string{"verify", filepath.Join(dir, "missing.csv")}, "no such file"},
		{"no address column", []string{"verify", "--sandbox", noColumn}, "first_name"},
		{"malformed CSV", []string{"verify", "--sandbox", badCSV}, "line 3"},
		{"bad config", []string{"verify", "--config", badConfig, "x.csv"}, "helo"},
		{"bad format", []string{"verify", "--format", "xml", "x.csv"}, "xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not mention %q:\n%s", tt.want, stderr)
			}
		})
	}
}

func TestStdinToStdout(t *testing.T) {
	code, stdout, stderr := runCLI(t, "\ufeffName,E-Mail\r\nAlice,alice@acme.test\r\nBroken,not-an-address\r\n",
		"verify", "-", "--sandbox", "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	rows := readCSV(t, stdout)
	if len(rows) != 2 {
		t.Fatalf("%d rows:\n%s", len(rows), stdout)
	}
	byRow := map[string]map[string]string{}
	for _, r := range rows {
		byRow[r["row"]] = r
	}
	if r := byRow["1"]; r["Name"] != "Alice" || r["status"] != "deliverable" {
		t.Errorf("row 1: %v", r)
	}
	if r := byRow["2"]; r["Name"] != "Broken" || r["status"] != "invalid" || r["reason"] != "syntax" {
		t.Errorf("row 2: %v", r)
	}
}

func TestConfigCommandPrintsDefaults(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "config")
	if code != exitOK || !strings.Contains(stdout, "helo_name:") || !strings.Contains(stdout, "max_connections_per_mx:") {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}
}

func TestFindSandboxExample(t *testing.T) {
	dir := t.TempDir()
	out, cands := filepath.Join(dir, "found.csv"), filepath.Join(dir, "candidates.csv")
	code, _, stderr := runCLI(t, "", "find", "--sandbox", "../../examples/people.csv", "-o", out, "--candidates", cands, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, string(data))
	if len(rows) != 9 {
		t.Fatalf("%d rows", len(rows))
	}
	byRow := map[string]map[string]string{}
	for _, r := range rows {
		byRow[r["row"]] = r
	}
	want := map[string]string{
		"1": "ada.lovelace@acme.test high", "3": "jose.nunez@acme.test high", "5": "mbolton@initech.test high",
		"4": "pgibbons@initech.test medium", "7": "any.body@catchall.test low", "8": " ", "9": " ",
	}
	for row, w := range want {
		if got := byRow[row]["email"] + " " + byRow[row]["confidence"]; got != w {
			t.Errorf("row %s: %q, want %q", row, got, w)
		}
	}
	if data, err := os.ReadFile(cands); err != nil || len(readCSV(t, string(data))) < 100 {
		t.Errorf("candidate file: %v, %d bytes", err, len(data))
	}
}

func TestFindNeedsNames(t *testing.T) {
	code, _, stderr := runCLI(t, "email,domain\na@b.test,b.test\n", "find", "--sandbox", "-")
	if code != exitUsage || !strings.Contains(stderr, "no name column") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
