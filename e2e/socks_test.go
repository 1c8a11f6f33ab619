package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/internal/testenv"
)

// Proxies of the SOCKS tests: microsocks listens on 127.0.0.1 and binds
// its outgoing connections to an address of its own, which postfix logs as
// the client, so the log tells a proxied session from a direct one (which
// comes from 127.0.0.1).
const (
	proxyOutOpen = "127.0.0.77" // no authentication
	proxyOutAuth = "127.0.0.78" // username and password
	proxyOutDies = "127.0.0.79" // killed during a run
	proxyUser    = "bulkverify"
	proxyPass    = "e2e-s3cret-pass"
)

// microsocks is a running microsocks process.
type microsocks struct {
	addr string // "127.0.0.1:port"
	cmd  *exec.Cmd
}

// startMicrosocks runs microsocks on a free loopback port, its outgoing
// connections bound to out, with user and password when user is set, and
// stops it when t ends.
func startMicrosocks(t *testing.T, out, user, pass string) *microsocks {
	t.Helper()
	bin, err := findTool("microsocks")
	if err != nil {
		testenv.Unavailable(t, "e2e: %v; install the Debian package microsocks (see .ci/run) to run the SOCKS5 tests", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-b", out}
	if user != "" {
		args = append(args, "-u", user, "-P", pass)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting microsocks: %v", err)
	}
	m := &microsocks{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	t.Cleanup(m.kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("microsocks at %s not listening: %v", m.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the proxy at once (as a crash would) and waits for it.
func (m *microsocks) kill() {
	if m.cmd.ProcessState != nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}

func (m *microsocks) url(userinfo string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return "socks5://" + userinfo + m.addr
}

var clientRE = regexp.MustCompile(`^connect from [^\[]*\[([0-9.]+)\]`)

// clientOf is the client address postfix logged for a session.
func clientOf(s *session) string {
	if len(s.lines) == 0 {
		return ""
	}
	if m := clientRE.FindStringSubmatch(s.lines[0]); m != nil {
		return m[1]
	}
	return ""
}

// checkClients checks that every session of r came from client, and that
// there were some.
func checkClients(t *testing.T, r run, client string) {
	t.Helper()
	if len(r.sessions) == 0 {
		t.Fatal("postfix logged no session")
	}
	for _, s := range r.sessions {
		if got := clientOf(s); got != client {
			t.Errorf("%s session from %q, want %s: %s", s.service, got, client, s.lines[0])
		}
	}
}

// socksWants are verdicts of each kind that need an SMTP session.
func socksWants() []want {
	const mx1, implicit = "mx1.acme.test", "implicit.test"
	return []want{
		accepted("alice", "alice@acme.test", "alice@acme.test", mx1),
		accepted("bob", "bob@acme.test", "bob@acme.test", mx1),
		userUnknown("zack", "zack@acme.test", mx1),
		acceptAll("anyone", "anyone@catchall.test", "anyone@catchall.test", mx1),
		accepted("info", "info@implicit.test", "info@implicit.test", implicit),
		userUnknown("ghost", "ghost@implicit.test", implicit),
	}
}

// testSOCKS runs bulkverify through a real SOCKS5 server, microsocks:
// postfix sees the proxy's outgoing address, the verdicts are those of a
// direct run, credentials (from the environment) work and are never
// shown, refused credentials and a proxy that dies give unknown/
// proxy_failed, and the run ends.
func testSOCKS(t *testing.T, st *stack) {
	ws := socksWants()
	var direct run
	t.Run("Direct", func(t *testing.T) {
		direct = st.verify(t, rowsOf(ws))
		checkVerdicts(t, direct, ws, time.Now().Add(-time.Minute), time.Now())
		checkClients(t, direct, "127.0.0.1")
	})

	t.Run("NoAuth", func(t *testing.T) {
		p := startMicrosocks(t, proxyOutOpen, "", "")
		started := time.Now()
		r := st.verifyWith(t, rowsOf(ws), verifyOptions{flags: []string{"--proxy", p.url("")}})
		checkVerdicts(t, r, ws, started, time.Now())
		checkClients(t, r, proxyOutOpen)
		checkSameVerdicts(t, direct, r)
		for id, row := range r.rows {
			if row["egress"] != p.url("") {
				t.Errorf("%s: egress %q, want %s", id, row["egress"], p.url(""))
			}
		}
		checkNoData(t, st, r)
	})

	t.Run("Auth", func(t *testing.T) {
		p := startMicrosocks(t, proxyOutAuth, proxyUser, proxyPass)
		started := time.Now()
		// The password comes from the environment, as README advises.
		r := st.verifyWith(t, rowsOf(ws), verifyOptions{
			flags: []string{"--proxy", p.url(proxyUser + ":${E2E_PROXY_PASSWORD}")},
			env:   []string{"E2E_PROXY_PASSWORD=" + proxyPass},
		})
		checkVerdicts(t, r, ws, started, time.Now())
		checkClients(t, r, proxyOutAuth)
		checkSameVerdicts(t, direct, r)
		checkSecret(t, r, proxyPass)
	})

	t.Run("AuthRefused", func(t *testing.T) {
		p := startMicrosocks(t, proxyOutAuth, proxyUser, proxyPass)
		const wrong = "not-the-password"
		r := st.verifyWith(t, rowsOf(ws), verifyOptions{flags: []string{"--proxy", p.url(proxyUser + ":" + wrong)}})
		for _, w := range ws {
			got := r.rows[w.id]
			if got["status"] != "unknown" || got["reason"] != "proxy_failed" || got["smtp_code"] != "" {
				t.Errorf("%s: %s/%s code %q, want unknown/proxy_failed", w.id, got["status"], got["reason"], got["smtp_code"])
			}
		}
		if len(r.sessions) != 0 {
			t.Errorf("postfix logged %d sessions through a proxy that refused us", len(r.sessions))
		}
		checkSecret(t, r, wrong)
	})

	t.Run("ProxyDies", func(t *testing.T) { testProxyDies(t, st) })
}

// checkSameVerdicts compares the verdict columns of two runs of the same
// rows.
func checkSameVerdicts(t *testing.T, a, b run) {
	t.Helper()
	for id, ra := range a.rows {
		rb := b.rows[id]
		for _, col := range []string{"status", "reason", "smtp_code", "enhanced_code", "mx_host", "catch_all", "tls"} {
			if ra[col] != rb[col] {
				t.Errorf("%s: %s %q direct, %q through the proxy", id, col, ra[col], rb[col])
			}
		}
	}
}

// checkSecret checks that a password shows nowhere in what a run wrote.
func checkSecret(t *testing.T, r run, secret string) {
	t.Helper()
	if strings.Contains(r.stderr, secret) {
		t.Error("the proxy password shows on stderr")
	}
	for id, row := range r.rows {
		for col, v := range row {
			if strings.Contains(v, secret) {
				t.Errorf("%s: the proxy password shows in column %s", id, col)
			}
		}
	}
}

// testProxyDies kills the proxy after its first session has ended, while
// bulkverify still has many addresses to ask (one session at a time, two
// addresses each, with a pause before each batch): the rows decided before
// stand, the rest are unknown/proxy_failed, and the run ends.
func testProxyDies(t *testing.T, st *stack) {
	p := startMicrosocks(t, proxyOutDies, "", "")
	var rows [][2]string
	for i := 1; i <= 24; i++ {
		rows = append(rows, [2]string{fmt.Sprintf("u%02d", i), fmt.Sprintf("user%02d@acme.test", i)})
	}
	for i := 1; i <= 8; i++ {
		rows = append(rows, [2]string{fmt.Sprintf("n%02d", i), fmt.Sprintf("nobody%02d@acme.test", i)})
	}
	config := filepath.Join(t.TempDir(), "bulkverify.yaml")
	// A proxy that dies between its CONNECT reply and the server's banner
	// leaves a connection that closes before the banner, which reads as
	// the host failing: its addresses wait a delayed retry, and the retry
	// finds the proxy gone. A short delay keeps that within the run's
	// time.
	if err := os.WriteFile(config, []byte("limits:\n  command_pause: 300ms\nretry:\n  delay: 2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := st.logSize(t)
	killed := false
	r := st.verifyWith(t, rows, verifyOptions{
		flags: []string{"--proxy", p.url(""), "--config", config,
			"--max-per-mx", "1", "--rcpt-per-transaction", "2", "--rcpt-per-connection", "2"},
		whileRunning: func() {
			// The first session through the proxy has ended.
			deadline := time.Now().Add(30 * time.Second)
			for !containsLine(st.logSince(t, from), "disconnect from unknown["+proxyOutDies+"]") {
				if time.Now().After(deadline) {
					t.Error("no session through the proxy ended within 30s")
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			p.kill()
			killed = true
		},
	})
	if !killed {
		t.FailNow()
	}
	decided, failed := 0, 0
	for id, row := range r.rows {
		want := "deliverable"
		if strings.HasPrefix(id, "n") {
			want = "undeliverable"
		}
		switch {
		case row["status"] == want:
			decided++
			if row["egress"] != p.url("") {
				t.Errorf("%s: egress %q", id, row["egress"])
			}
		case row["status"] == "unknown" && row["reason"] == "proxy_failed":
			failed++
		default:
			t.Errorf("%s: %s/%s, want %s, or unknown/proxy_failed after the proxy died", id, row["status"], row["reason"], want)
		}
	}
	t.Logf("after the proxy died: %d rows decided, %d unknown/proxy_failed", decided, failed)
	if decided == 0 || failed == 0 {
		t.Errorf("%d rows decided, %d proxy_failed: want some of each (the proxy died mid-run)", decided, failed)
	}
	checkClients(t, r, proxyOutDies)
	checkNoData(t, st, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.addr); err == nil {
		c.Close()
		t.Error("the proxy still listens after it was killed")
	}
}
