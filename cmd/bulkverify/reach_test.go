package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/mailsim"
)

// Tests of issue 11 on the real CLI: the preflights before a list, the
// circuit breakers during one, and refusals of an egress, each against a
// simulated world of the test's own (the canaries are names in it).

// canaryHosts are the MX hosts of the canary domains c1.test..c3.test.
var canaryHosts = []string{"mx.c1.test", "mx.c2.test", "mx.c3.test"}

// reachWorld has three canary domains, whose hosts behave as canary says
// (by index), and list.test (alice and bob exist) served by listHost.
func reachWorld(canary [3]mailsim.Host, listHost mailsim.Host) mailsim.World {
	var w mailsim.World
	for i, h := range canary {
		h.Name, h.IP = canaryHosts[i], fmt.Sprintf("127.0.61.%d", 10+i)
		dom := strings.TrimPrefix(h.Name, "mx.")
		w.Hosts = append(w.Hosts, h)
		w.Domains = append(w.Domains, mailsim.Domain{Name: dom, MX: []mailsim.MX{{Preference: 10, Host: h.Name}}, Mailboxes: []string{"postmaster"}})
	}
	listHost.Name, listHost.IP = "mx.list.test", "127.0.61.20"
	w.Hosts = append(w.Hosts, listHost)
	w.Domains = append(w.Domains, mailsim.Domain{Name: "list.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.list.test"}}, Mailboxes: []string{"alice", "bob"}})
	return w
}

func startReachWorld(t *testing.T, w mailsim.World) *mailsim.Sim {
	t.Helper()
	sim, err := mailsim.Start(t.Context(), w, mailsim.Options{RecordRecipients: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// canaryConfig points both preflights at the world's canaries; egress is
// more YAML for the egress section (indented), extra whole other sections.
func canaryConfig(egress, extra string) string {
	return "egress:\n  canary_domains: [c1.test, c2.test, c3.test]\n  dns_canary_domains: [c1.test, c2.test, c3.test]\n" + egress + extra
}

// reachRun runs "bulkverify verify" on csvText against sim with the given
// config file content and more flags, and returns the exit code, stderr
// and the output file's path.
func reachRun(t *testing.T, sim *mailsim.Sim, config, csvText string, flags ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	in, out, cfg := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv"), filepath.Join(dir, "bulkverify.yaml")
	if err := os.WriteFile(in, []byte(csvText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"verify", in, "-o", out, "--config", cfg,
		"--resolver", sim.DNSAddr(), "--port", strconv.Itoa(sim.SMTPPort()),
		"--helo", "probe.reach.test", "--progress", "off", "--no-store"}, flags...)
	code, _, stderr := runCLI(t, "", args...)
	return code, stderr, out
}

const listCSV = "email\nalice@list.test\nbob@list.test\nnobody@list.test\n"

// dataRows reads the output file's rows; none when it was never created.
func dataRows(t *testing.T, path string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return readCSV(t, string(b))
}

// nothingAsked checks that the list itself was left alone: no MX lookup
// of its domain, no connection to its host.
func nothingAsked(t *testing.T, sim *mailsim.Sim) {
	t.Helper()
	if n := sim.DNSQueries("list.test", dns.TypeMX); n != 0 {
		t.Errorf("the list's domain was looked up %d times", n)
	}
	if n := sim.Connections("mx.list.test"); n != 0 {
		t.Errorf("%d connections to the list's mail host", n)
	}
}

// When no canary mail server can be reached from any egress, the run
// stops before the list with exit 1, naming the hosts tried and what to
// do, and writes no row. Each canary is tried once from each egress: the
// check is bounded by its work, not by retries.
func TestPreflightEveryCanaryFails(t *testing.T) {
	silent := mailsim.Host{Hostile: mailsim.HostileSilent}
	tests := []struct {
		name    string
		canary  mailsim.Host
		config  string
		accepts int    // connections each canary host accepts per egress
		word    string // how the attempts are tallied
	}{
		{"refused", mailsim.Host{Down: true}, canaryConfig("", ""), 0, "refused"},
		{"silent past the greeting timeout", silent, canaryConfig("", "smtp:\n  greeting_timeout: 300ms\n"), 1, "timed out"},
		// The whole check's bound (60s by default, shortened here) ends it
		// long before the greeting timeout would.
		{"silent past the preflight bound", silent, canaryConfig("  preflight_timeout: 500ms\n", "smtp:\n  greeting_timeout: 10m\n"), 1, "timed out"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			config := tc.config
			sim := startReachWorld(t, reachWorld([3]mailsim.Host{tc.canary, tc.canary, tc.canary}, mailsim.Host{}))
			egresses := []string{"127.0.0.101", "127.0.0.102"}
			code, stderr, out := reachRun(t, sim, config, listCSV, "--source-ip", egresses[0], "--source-ip", egresses[1])
			if code != exitFatal {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, want := range append([]string{"port 25 unreachable", tc.word, "--proxy", "127.0.0.101, 127.0.0.102"}, canaryHosts...) {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if rows := dataRows(t, out); len(rows) != 0 {
				t.Errorf("%d rows written", len(rows))
			}
			nothingAsked(t, sim)
			for _, host := range canaryHosts {
				for _, ip := range egresses {
					if got := sim.ConnectionsFrom(host, ip); got != tc.accepts {
						t.Errorf("%s accepted %d connections from %s, want %d", host, got, ip, tc.accepts)
					}
				}
			}
		})
	}
}

// When only some canaries fail the run goes on, and the list is verified.
func TestPreflightSomeCanariesFail(t *testing.T) {
	sim := startReachWorld(t, reachWorld([3]mailsim.Host{{Down: true}, {Hostile: mailsim.HostileSilent}, {}}, mailsim.Host{}))
	code, stderr, out := reachRun(t, sim, canaryConfig("", "smtp:\n  greeting_timeout: 300ms\n"), listCSV)
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "port 25 reachable from 1 of 1 egresses") {
		t.Errorf("stderr:\n%s", stderr)
	}
	rows := dataRows(t, out)
	want := map[string]string{"alice@list.test": "deliverable", "bob@list.test": "deliverable", "nobody@list.test": "undeliverable"}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		if r["status"] != want[r["email"]] {
			t.Errorf("%s: %s/%s", r["email"], r["status"], r["reason"])
		}
	}
}

// A resolver that says the DNS canaries do not exist cannot be trusted:
// exit 1 before anything else, no row written, no mail server contacted,
// the list's domains not even looked up.
func TestPreflightLyingResolver(t *testing.T) {
	sim := startReachWorld(t, reachWorld([3]mailsim.Host{}, mailsim.Host{}))
	config := "egress:\n  canary_domains: [c1.test]\n  dns_canary_domains: [gone1.test, gone2.test]\n"
	code, stderr, out := reachRun(t, sim, config, listCSV)
	if code != exitFatal {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"DNS resolver cannot be trusted", "gone1.test", "gone2.test", "--resolver"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if rows := dataRows(t, out); len(rows) != 0 {
		t.Errorf("%d rows written", len(rows))
	}
	if n := sim.TotalConnections(); n != 0 {
		t.Errorf("%d SMTP connections", n)
	}
	nothingAsked(t, sim)
}

// During a run, the circuit breakers stop it with exit 1 and say why:
// most MX hosts unreachable at TCP, or most domains NXDOMAIN.
func TestBreakersStopTheCLI(t *testing.T) {
	t.Run("hosts", func(t *testing.T) {
		w := reachWorld([3]mailsim.Host{}, mailsim.Host{})
		var csv strings.Builder
		csv.WriteString("email\n")
		for i := range 30 {
			host := fmt.Sprintf("mx.dead%d.test", i)
			w.Hosts = append(w.Hosts, mailsim.Host{Name: host, IP: fmt.Sprintf("127.0.62.%d", 10+i), Down: true})
			w.Domains = append(w.Domains, mailsim.Domain{Name: fmt.Sprintf("dead%d.test", i), MX: []mailsim.MX{{Preference: 10, Host: host}}})
			fmt.Fprintf(&csv, "someone@dead%d.test\n", i)
		}
		sim := startReachWorld(t, w)
		code, stderr, out := reachRun(t, sim, canaryConfig("", ""), csv.String())
		if code != exitFatal {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
		}
		for _, want := range []string{"MX hosts could not be reached on port 25", "--proxy", "--resume"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if rows := dataRows(t, out); len(rows) >= 30 {
			t.Errorf("%d rows: the run did not stop", len(rows))
		}
	})
	t.Run("nxdomain", func(t *testing.T) {
		sim := startReachWorld(t, reachWorld([3]mailsim.Host{}, mailsim.Host{}))
		var csv strings.Builder
		csv.WriteString("email\n")
		for i := range 80 {
			fmt.Fprintf(&csv, "someone@gone%d.test\n", i)
		}
		code, stderr, out := reachRun(t, sim, canaryConfig("", ""), csv.String())
		if code != exitFatal {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
		}
		for _, want := range []string{"came back as nonexistent (NXDOMAIN)", "DNS resolver cannot be trusted"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if rows := dataRows(t, out); len(rows) >= 80 {
			t.Errorf("%d rows: the run did not stop", len(rows))
		}
	})
}

// An egress refused with a Spamhaus-style 5.7.1 is named loudly on stderr
// and in the summary's refusals; its addresses stay policy_block and the
// other egress verifies the rest.
func TestRefusedEgressReported(t *testing.T) {
	blocked, free := "127.0.0.101", "127.0.0.102"
	sim := startReachWorld(t, reachWorld([3]mailsim.Host{}, mailsim.Host{BlockClients: []string{blocked}, BlockAtRcpt: true}))
	summary := filepath.Join(t.TempDir(), "summary.json")
	code, stderr, out := reachRun(t, sim, canaryConfig("", ""), listCSV,
		"--source-ip", blocked, "--source-ip", free, "--summary", summary,
		"--rcpt-per-transaction", "2", "--rcpt-per-connection", "2")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "REFUSED: mx.list.test refuses our egress "+blocked+" (spamhaus)") {
		t.Errorf("stderr does not name the refusal:\n%s", stderr)
	}
	var sum struct {
		Refusals []struct {
			Egress, Operator, Reason string
		} `json:"refusals"`
	}
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Refusals) != 1 || sum.Refusals[0].Egress != blocked || sum.Refusals[0].Operator != "mx.list.test" || sum.Refusals[0].Reason != "spamhaus" {
		t.Errorf("summary refusals %+v", sum.Refusals)
	}
	if got := sim.ConnectionsFrom("mx.list.test", blocked); got != 1 {
		t.Errorf("%d connections from the refused egress", got)
	}
	refused := 0
	for _, r := range dataRows(t, out) {
		by := sim.RecipientClients("mx.list.test", r["email"])
		if len(by) != 1 || by[r["egress"]] != 1 {
			t.Errorf("%s: egress %q, asked by %v", r["email"], r["egress"], by)
		}
		switch r["egress"] {
		case blocked:
			refused++
			if r["status"] != "unknown" || r["reason"] != "policy_block" {
				t.Errorf("%s refused at %s: %s/%s", r["email"], blocked, r["status"], r["reason"])
			}
		case free:
			if r["reason"] == "policy_block" {
				t.Errorf("%s: policy_block from the egress not refused", r["email"])
			}
		}
	}
	if refused == 0 || refused == 3 {
		t.Errorf("%d of 3 addresses refused: want the refused egress's one transaction, and the rest verified by the other", refused)
	}
}
