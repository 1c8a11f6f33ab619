package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/store"
)

// bigSandboxInput is n rows "id,email" over the sandbox world: consecutive
// rows at different addresses of acme.test and globex.test, every third a
// duplicate of alice@acme.test.
func bigSandboxInput(n int) string {
	var b strings.Builder
	b.WriteString("id,email\n")
	for i := 1; i <= n; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "%d,alice@acme.test\n", i)
		case 1:
			fmt.Fprintf(&b, "%d,user%d@acme.test\n", i, i)
		default:
			fmt.Fprintf(&b, "%d,user%d@globex.test\n", i, i)
		}
	}
	return b.String()
}

// checkRows asserts that out holds rows 1..n once each, each with its own
// input, and the verdicts of the sandbox world.
func checkRows(t *testing.T, out string, n int, inOrder bool) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, string(data))
	seen := map[int]int{}
	for i, r := range rows {
		row, _ := strconv.Atoi(r["row"])
		seen[row]++
		if inOrder && row != i+1 {
			t.Fatalf("line %d holds row %d: not in input order", i+2, row)
		}
		if id, _ := strconv.Atoi(r["id"]); id != row {
			t.Errorf("row %d carries the input of row %d", row, id)
		}
		want := "undeliverable"
		if strings.HasPrefix(r["email"], "alice@") {
			want = "deliverable"
		}
		if r["status"] != want || (r["source"] != "probed" && r["source"] != "stored") {
			t.Errorf("row %d %s: %s, source %q", row, r["email"], r["status"], r["source"])
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
	return rows
}

// Far more rows than limits.memory_rows, in input order: every row once,
// in order, with its verdict.
func TestKeepOrderFarAboveMemoryRows(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	in := writeFile(t, dir, "in.csv", bigSandboxInput(n))
	cfg := writeFile(t, dir, "c.yaml", "limits:\n  memory_rows: 50\n  temp_dir: "+strconv.Quote(dir)+"\n")
	out, sum := filepath.Join(dir, "out.csv"), filepath.Join(dir, "sum.json")
	code, _, stderr := runCLI(t, "", "verify", "--sandbox", in, "-o", out, "--keep-order", "--config", cfg,
		"--store", filepath.Join(dir, "store.db"), "--summary", sum, "--progress", "off", "--rcpt-rate", "0")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	checkRows(t, out, n, true)
	raw, _ := os.ReadFile(sum)
	if !strings.Contains(string(raw), `"partitions"`) || strings.Contains(string(raw), `"partitions": 1,`) {
		t.Errorf("the input did not spill: summary %s", raw)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "bulkverify-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// kill -9 in the middle of a run far above memory_rows, with the store on,
// then --resume: every row once, and the store opens cleanly and serves
// what the killed run committed.
func TestKillWithStoreThenResume(t *testing.T) {
	bin := buildBinary(t)
	isolateStore(t)
	dir := t.TempDir()
	const n = 1500
	in := writeFile(t, dir, "in.csv", bigSandboxInput(n))
	cfg := writeFile(t, dir, "c.yaml", "limits:\n  memory_rows: 100\n")
	out, st := filepath.Join(dir, "out.csv"), filepath.Join(dir, "store.db")
	// 100 RCPT/s per host: five seconds of work, flushed (output and
	// store) every second, so the kill lands with rows written and
	// verdicts committed, and many not.
	cmd := exec.Command(bin, "verify", "--sandbox", in, "-o", out, "--config", cfg, "--store", st,
		"--rcpt-rate", "100", "--progress", "off")
	cmd.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(signalGuard)
	for {
		data, _ := os.ReadFile(out)
		if strings.Count(string(data), "\n") > 600 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the first run wrote nothing in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if data, _ := os.ReadFile(out); strings.Count(string(data), "\n") >= n+1 {
		t.Fatal("the first run finished before it was killed; the test proves nothing")
	}

	// The store opens cleanly after the kill.
	s, err := store.Open(st, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("the store does not open after kill -9: %v", err)
	}
	stats, err := s.Stats(t.Context())
	s.Close()
	if err != nil {
		t.Fatalf("the store cannot be read after kill -9: %v", err)
	}

	held := 0
	for _, ns := range stats.Namespaces {
		held += ns.Verdicts
	}
	if held == 0 {
		t.Error("the killed run committed no verdict in its seconds of work")
	}

	code, _, stderr := runCLI(t, "", "verify", "--sandbox", in, "-o", out, "--resume", "--config", cfg, "--store", st,
		"--progress", "off", "--rcpt-rate", "0")
	if code != exitOK {
		t.Fatalf("resume: exit %d\n%s", code, stderr)
	}
	checkRows(t, out, n, false)
	code, stdout, stderr := runCLI(t, "", "store", "stats", "--store", st)
	if code != exitOK {
		t.Fatalf("store stats after the resumed run: exit %d\n%s", code, stderr)
	}
	t.Logf("after the kill the store held %d verdicts; now:\n%s", held, stdout)
}
