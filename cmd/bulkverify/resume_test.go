package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A nightly job killed with SIGKILL mid-run, then resumed, ends with every
// input row exactly once in its output.
func TestResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	isolateStore(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bulkverify")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	in, out := filepath.Join(dir, "big.csv"), filepath.Join(dir, "out.csv")
	var b strings.Builder
	b.WriteString("id,email\n")
	const n = 600
	for i := 1; i <= n; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "%d,alice@acme.test\n", i) // duplicates across the cut
		case 1:
			fmt.Fprintf(&b, "%d,user%d@acme.test\n", i, i)
		default:
			fmt.Fprintf(&b, "%d,user%d@globex.test\n", i, i)
		}
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// 100 RCPT/s per host: a few seconds of work, flushed to disk every
	// second, so the kill lands with some rows written and many not.
	cmd := exec.Command(bin, "verify", "--sandbox", in, "-o", out, "--rcpt-rate", "100", "--progress", "off")
	cmd.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(out)
		if strings.Count(string(data), "\n") > 60 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the first run wrote nothing in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	before, _ := os.ReadFile(out)
	if strings.Count(string(before), "\n") >= n+1 {
		t.Fatal("the first run finished before it was killed; the test proves nothing")
	}

	code, _, stderr := runCLI(t, "", "verify", "--sandbox", in, "-o", out, "--resume", "--progress", "off", "--rcpt-rate", "0")
	if code != exitOK {
		t.Fatalf("resume: exit %d\n%s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, string(data))
	seen := map[int]int{}
	for _, r := range rows {
		row, _ := strconv.Atoi(r["row"])
		seen[row]++
		id, _ := strconv.Atoi(r["id"])
		if id != row {
			t.Errorf("row %d carries the input of row %d", row, id)
		}
		want := "undeliverable"
		if strings.HasPrefix(r["email"], "alice@") {
			want = "deliverable"
		}
		if r["status"] != want {
			t.Errorf("row %d %s: %s", row, r["email"], r["status"])
		}
	}
	for i := 1; i <= n; i++ {
		if seen[i] != 1 {
			t.Errorf("row %d is in the output %d times", i, seen[i])
		}
	}
	if len(rows) != n {
		t.Errorf("%d rows for %d input rows", len(rows), n)
	}
}

func TestKeepOrderAndSummary(t *testing.T) {
	dir := t.TempDir()
	out, sum := filepath.Join(dir, "out.csv"), filepath.Join(dir, "summary.json")
	code, _, stderr := runCLI(t, "", "verify", "--sandbox", "../../examples/leads.csv", "-o", out,
		"--keep-order", "--summary", sum, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	data, _ := os.ReadFile(out)
	for i, r := range readCSV(t, string(data)) {
		if r["row"] != strconv.Itoa(i+1) {
			t.Fatalf("line %d holds row %s: not in input order", i+2, r["row"])
		}
	}
	var s struct {
		Rows     int            `json:"rows"`
		ByStatus map[string]int `json:"by_status"`
	}
	raw, err := os.ReadFile(sum)
	if err != nil || json.Unmarshal(raw, &s) != nil || s.Rows != 27 || s.ByStatus["deliverable"] == 0 {
		t.Errorf("summary: %v %s", err, raw)
	}
}

func TestResumeNeedsAFile(t *testing.T) {
	code, _, stderr := runCLI(t, "", "verify", "--sandbox", "--resume", "../../examples/leads.csv")
	if code != exitUsage || !strings.Contains(stderr, "--resume needs an output file") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
}
