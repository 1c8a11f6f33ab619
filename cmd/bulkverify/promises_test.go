package main

// Tests of README promises that the other tests leave out, each driving the
// real CLI (run) against a simulated world of its own, so that what the
// servers saw can be counted.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
)

// cliWorld: fast.test answers at once, grey.test greylists every first
// attempt for an hour (so every retry is refused too), tarpit.test holds
// every RCPT for an hour.
func cliWorld() mailsim.World {
	mx := func(host string) []mailsim.MX { return []mailsim.MX{{Preference: 10, Host: host}} }
	return mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx.fast.test", IP: "127.0.9.1"},
			{Name: "mx.grey.test", IP: "127.0.9.2"},
			{Name: "mx.tarpit.test", IP: "127.0.9.3", RcptDelay: time.Hour},
		},
		Domains: []mailsim.Domain{
			{Name: "fast.test", MX: mx("mx.fast.test"), Mailboxes: []string{"ann", "ben", "cid", "dee"}},
			{Name: "grey.test", MX: mx("mx.grey.test"), Mailboxes: []string{"gus"}, Greylist: time.Hour},
			{Name: "tarpit.test", MX: mx("mx.tarpit.test"), Mailboxes: []string{"tom"}},
		},
	}
}

// startWorld runs w until the test ends. mailsim's hosts do not offer
// SMTPUTF8.
func startWorld(t *testing.T, w mailsim.World) *mailsim.Sim {
	t.Helper()
	sim, err := mailsim.Start(t.Context(), w, mailsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// simArgs points the CLI at sim.
// simArgs point a run at sim. The preflight is off: a test world has no
// canary domains (the sandbox has; the preflight has tests of its own).
func simArgs(sim *mailsim.Sim) []string {
	return []string{"--resolver", sim.DNSAddr(), "--port", strconv.Itoa(sim.SMTPPort()),
		"--helo", "probe.cli.test", "--progress", "off", "--no-preflight"}
}

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// byRow indexes output rows by their "row" column, failing on a repeat.
func byRow(t *testing.T, rows []map[string]string) map[string]map[string]string {
	t.Helper()
	m := map[string]map[string]string{}
	for _, r := range rows {
		if _, dup := m[r["row"]]; dup {
			t.Errorf("row %s written twice", r["row"])
		}
		m[r["row"]] = r
	}
	return m
}

// README: unknown / smtputf8_unsupported is a UTF-8 local part, and the
// server does not offer SMTPUTF8. The address is not sent at all.
func TestSMTPUTF8Unsupported(t *testing.T) {
	t.Setenv("BULKVERIFY_CONFIG", "")
	sim := startWorld(t, cliWorld())
	code, stdout, stderr := runCLI(t, "email\njörg@fast.test\nann@fast.test\n",
		append([]string{"verify", "-", "--max-wait", "0"}, simArgs(sim)...)...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rows := byRow(t, readCSV(t, stdout))
	if len(rows) != 2 {
		t.Fatalf("%d rows:\n%s", len(rows), stdout)
	}
	r := rows["1"]
	if r["email"] != "jörg@fast.test" || r["status"] != "unknown" || r["reason"] != "smtputf8_unsupported" ||
		r["smtp_code"] != "" || r["attempts"] != "0" {
		t.Errorf("UTF-8 local part: %v, want unknown/smtputf8_unsupported, the address kept, no code, 0 attempts", r)
	}
	if r := rows["2"]; r["status"] != "deliverable" {
		t.Errorf("ann: %v", r)
	}
	// The catch-all check and ann; jörg was never put in a RCPT.
	if got := sim.Commands("mx.fast.test", "RCPT"); got != 2 {
		t.Errorf("%d RCPT at the host, want 2: the UTF-8 address must not be sent", got)
	}
}

// README: flags override the config file, --config or $BULKVERIFY_CONFIG,
// and $BULKVERIFY_CONFIG is read when there is no --config. The SMTP port
// tells which setting won: at the world's port the address is deliverable,
// at a closed one the connection fails.
func TestFlagsOverrideConfig(t *testing.T) {
	sim := startWorld(t, cliWorld())
	dir := t.TempDir()
	closed := closedPort(t, "127.0.9.1")
	config := func(name string, port int) string {
		// No delayed retries: a refused connection is final at once. No
		// preflight: the test world has no canary domains.
		return writeFile(t, dir, name, fmt.Sprintf("smtp:\n  helo_name: probe.cli.test\n  port: %d\n"+
			"dns:\n  resolver: %q\nretry:\n  max_wait: 0s\negress:\n  preflight: false\n", port, sim.DNSAddr()))
	}
	good, bad := config("good.yaml", sim.SMTPPort()), config("bad.yaml", closed)
	in := writeFile(t, dir, "in.csv", "email\nann@fast.test\n")
	simPort, closedArg := strconv.Itoa(sim.SMTPPort()), strconv.Itoa(closed)
	tests := []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"$BULKVERIFY_CONFIG is read", good, nil, "deliverable/accepted"},
		{"$BULKVERIFY_CONFIG is read (closed port)", bad, nil, "unknown/connection_failed"},
		{"--config overrides $BULKVERIFY_CONFIG", bad, []string{"--config", good}, "deliverable/accepted"},
		{"--config overrides $BULKVERIFY_CONFIG (closed port)", good, []string{"--config", bad}, "unknown/connection_failed"},
		{"a flag overrides $BULKVERIFY_CONFIG", good, []string{"--port", closedArg}, "unknown/connection_failed"},
		{"a flag overrides --config", "", []string{"--config", bad, "--port", simPort}, "deliverable/accepted"},
		{"a flag overrides --config (closed port)", "", []string{"--config", good, "--port", closedArg}, "unknown/connection_failed"},
		{"a flag overrides both", bad, []string{"--config", bad, "--port", simPort}, "deliverable/accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BULKVERIFY_CONFIG", tt.env)
			args := append([]string{"verify", in, "--progress", "off"}, tt.args...)
			code, stdout, stderr := runCLI(t, "", args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			rows := readCSV(t, stdout)
			if len(rows) != 1 {
				t.Fatalf("%d rows:\n%s", len(rows), stdout)
			}
			if got := rows[0]["status"] + "/" + rows[0]["reason"]; got != tt.want {
				t.Errorf("got %s, want %s\n%s", got, tt.want, stderr)
			}
		})
	}
}

// closedPort returns a TCP port on ip where nothing listens: connections
// are refused at once.
func closedPort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// README: --max-wait is the longest total wait of one address for delayed
// retries. A host that greylists for an hour refuses every retry; the config
// allows 3 rounds at 100ms, 200ms and 400ms. A positive --max-wait of 250ms
// leaves room for the first retry only (the second would end at 300ms at
// the earliest: a timer never fires early, so this cannot flake).
func TestMaxWaitCutsRetries(t *testing.T) {
	sim := startWorld(t, cliWorld())
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "retry:\n  delay: 100ms\n  rounds: 3\n  max_wait: 1h\n")
	t.Setenv("BULKVERIFY_CONFIG", "")
	tests := []struct {
		name     string
		args     []string
		attempts string
	}{
		{"config: every round", nil, "4"},
		{"--max-wait 250ms: one retry", []string{"--max-wait", "250ms"}, "2"},
		{"--max-wait 0: none", []string{"--max-wait", "0"}, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sim.Commands("mx.grey.test", "RCPT")
			// A new address each time: greylisting remembers a triplet.
			addr := "gus+" + strconv.Itoa(before) + "@grey.test"
			args := append(append([]string{"verify", "-", "--config", cfg}, simArgs(sim)...), tt.args...)
			code, stdout, stderr := runCLI(t, "email\n"+addr+"\n", args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			rows := readCSV(t, stdout)
			if len(rows) != 1 {
				t.Fatalf("%d rows:\n%s", len(rows), stdout)
			}
			r := rows[0]
			if r["status"] != "unknown" || r["reason"] != "greylisted" || r["smtp_code"] != "451" || r["attempts"] != tt.attempts {
				t.Errorf("%s/%s code=%s attempts=%s, want unknown/greylisted code=451 attempts=%s",
					r["status"], r["reason"], r["smtp_code"], r["attempts"], tt.attempts)
			}
			// Each attempt asks the address and the catch-all check.
			n, _ := strconv.Atoi(tt.attempts)
			if got := sim.Commands("mx.grey.test", "RCPT") - before; got != 2*n {
				t.Errorf("the host saw %d RCPT, want %d (%d attempts of 2)", got, 2*n, n)
			}
		})
	}
}

// README: exit code 1 when the output cannot be written.
func TestOutputUnwritable(t *testing.T) {
	t.Setenv("BULKVERIFY_CONFIG", "")
	sim := startWorld(t, cliWorld())
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "email\nann@fast.test\nben@fast.test\n")
	notDir := writeFile(t, dir, "plain-file", "")
	readOnly := filepath.Join(dir, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, out string
	}{
		{"full device", "/dev/full"},
		{"parent is a file", filepath.Join(notDir, "out.csv")},
		{"read-only directory", filepath.Join(readOnly, "out.csv")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.out == "/dev/full" {
				if _, err := os.Stat("/dev/full"); err != nil {
					t.Skip("no /dev/full here")
				}
			}
			if strings.HasPrefix(tt.out, readOnly) && os.Geteuid() == 0 {
				t.Skip("root writes into a read-only directory; 'parent is a file' covers the failed create")
			}
			args := append([]string{"verify", in, "-o", tt.out}, simArgs(sim)...)
			code, _, stderr := runCLI(t, "", args...)
			if code != exitFatal {
				t.Errorf("exit %d, want %d (README: the output could not be written)\n%s", code, exitFatal, stderr)
			}
			if !strings.Contains(stderr, tt.out) {
				t.Errorf("stderr does not name %s:\n%s", tt.out, stderr)
			}
		})
	}
}

// cancelOnRows is the CLI's stdout: once the header and a first row have
// arrived and cond holds, it cancels the run and keeps what it had then.
type cancelOnRows struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	atCancel string
	fired    bool
	cancel   context.CancelFunc
	cond     func() bool
}

func (w *cancelOnRows) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.fired && strings.Count(w.buf.String(), "\n") >= 2 {
		w.fired = true
		go func() {
			deadline := time.Now().Add(time.Minute)
			for !w.cond() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			w.mu.Lock()
			w.atCancel = w.buf.String()
			w.mu.Unlock()
			w.cancel()
		}()
	}
	return len(p), nil
}

func (w *cancelOnRows) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Interrupted in the middle of a run (a host holds a RCPT, rows are
// written), verify exits 130, says so, and what it had written stays, with
// every row decided before the interruption and no row twice.
func TestInterruptedMidRun(t *testing.T) {
	t.Setenv("BULKVERIFY_CONFIG", "")
	sim := startWorld(t, cliWorld())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdout := &cancelOnRows{cancel: cancel,
		cond: func() bool { return sim.Commands("mx.tarpit.test", "RCPT") > 0 }}
	in := "email\nann@fast.test\ntom@tarpit.test\nben@fast.test\nnobody@fast.test\ncid@tarpit.test\n"
	var stderr bytes.Buffer
	code := run(ctx, append([]string{"verify", "-", "--max-wait", "0"}, simArgs(sim)...),
		strings.NewReader(in), stdout, &stderr)
	if ctx.Err() != context.Canceled {
		t.Fatalf("the run ended (%v) before it was interrupted, exit %d:\n%s", ctx.Err(), code, stderr.String())
	}
	if code != exitInterrupted {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted: the rows decided so far were written") {
		t.Errorf("stderr does not say what happened:\n%s", stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, stdout.atCancel) {
		t.Errorf("what was written before the interruption changed:\nbefore:\n%s\nafter:\n%s", stdout.atCancel, out)
	}
	// fast.test is answered in one batch, before the first row is written:
	// all three of its rows were decided and must be there; the tarpit's
	// were not and must not.
	rows := byRow(t, readCSV(t, out))
	want := map[string]string{"1": "deliverable", "3": "deliverable", "4": "undeliverable"}
	if len(rows) != len(want) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(want), out)
	}
	for n, status := range want {
		if r := rows[n]; r["status"] != status || r["checked_at"] == "" {
			t.Errorf("row %s: %v, want %s", n, r, status)
		}
	}
}
