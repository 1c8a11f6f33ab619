package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
)

// protoWorld has one host per behaviour under test, each serving one domain
// with mailboxes ok0..ok9.
func protoWorld(hosts ...mailsim.Host) mailsim.World {
	var w mailsim.World
	for i, h := range hosts {
		h.IP = fmt.Sprintf("127.0.0.%d", 40+i)
		dom := strings.TrimPrefix(h.Name, "mx.")
		w.Hosts = append(w.Hosts, h)
		var boxes []string
		for j := range 10 {
			boxes = append(boxes, fmt.Sprintf("ok%d", j))
		}
		w.Domains = append(w.Domains, mailsim.Domain{Name: dom, MX: []mailsim.MX{{Preference: 10, Host: h.Name}}, Mailboxes: boxes})
	}
	return w
}

// addresses makes "email\n" + n addresses at dom: ok0..ok9 exist, the rest do not.
func addressesCSV(n int, doms ...string) string {
	var b strings.Builder
	b.WriteString("email\n")
	for _, d := range doms {
		for i := range n {
			if i < 10 {
				fmt.Fprintf(&b, "ok%d@%s\n", i, d)
			} else {
				fmt.Fprintf(&b, "no%d@%s\n", i, d)
			}
		}
	}
	return b.String()
}

func checkStatuses(t *testing.T, rows []row) {
	t.Helper()
	for _, r := range rows {
		want := "undeliverable"
		if strings.HasPrefix(r["email"], "ok") {
			want = "deliverable"
		}
		if r["status"] != want {
			t.Errorf("%s: %s/%s code=%s attempts=%s, want %s", r["email"], r["status"], r["reason"], r["smtp_code"], r["attempts"], want)
		}
	}
}

func TestCatchAllDetectedOncePerDomain(t *testing.T) {
	w := world()
	w.Hosts = append(w.Hosts, mailsim.Host{Name: "mx.any.test", IP: "127.0.0.30"})
	w.Domains = append(w.Domains, mailsim.Domain{Name: "any.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.any.test"}}, CatchAll: true})
	h := newHarness(t, w)
	rows, _ := h.run("email\na@any.test\nb@any.test\nc@any.test\nalice@acme.test\nnobody@acme.test\n")
	checkEveryRowOnce(t, rows, 5)
	for _, r := range rows {
		switch {
		case strings.HasSuffix(r["email"], "@any.test"):
			if r["status"] != "risky" || r["reason"] != "accept_all" || r["catch_all"] != "true" || r["smtp_code"] != "250" {
				t.Errorf("%s: %s/%s catch_all=%q code=%s", r["email"], r["status"], r["reason"], r["catch_all"], r["smtp_code"])
			}
		case r["email"] == "alice@acme.test":
			if r["status"] != "deliverable" || r["catch_all"] != "false" {
				t.Errorf("alice: %s catch_all=%q", r["status"], r["catch_all"])
			}
		default:
			if r["status"] != "undeliverable" || r["catch_all"] != "false" {
				t.Errorf("nobody: %s catch_all=%q", r["status"], r["catch_all"])
			}
		}
	}
	if got := h.sim.Commands("mx.any.test", "RCPT"); got != 4 {
		t.Errorf("RCPT at the accept-all host = %d, want 3 + one check", got)
	}
}

func TestCatchAllCheckCanBeTurnedOff(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.NoCatchAllCheck = true
	rows, _ := h.run("email\nalice@acme.test\n")
	if rows[0]["status"] != "deliverable" || rows[0]["catch_all"] != "" {
		t.Errorf("got %s catch_all=%q", rows[0]["status"], rows[0]["catch_all"])
	}
	if got := h.sim.Commands("mx1.acme.test", "RCPT"); got != 1 {
		t.Errorf("RCPT = %d, want 1", got)
	}
}

func TestGreylistingRetried(t *testing.T) {
	const greylist = 300 * time.Millisecond
	w := world()
	w.Domains[0].Greylist = greylist
	tests := []struct {
		name         string
		delay        time.Duration
		maxWait      time.Duration
		wantStatus   string
		wantReason   string
		wantAttempts string
	}{
		// Retries at +100ms (still greylisted) and +300ms (+200ms) pass.
		{"retried until accepted", 100 * time.Millisecond, 5 * time.Second, "deliverable", "accepted", "3"},
		{"no waiting allowed", 100 * time.Millisecond, 0, "unknown", "greylisted", "1"},
		{"retries off", 0, 5 * time.Second, "unknown", "greylisted", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One fake clock for the retry schedule and the greylisting:
			// the rounds happen at exact times, whatever the machine's load.
			h, fc := newFakeClockHarness(t, w)
			h.cfg.RetryDelay, h.cfg.RetryRounds, h.cfg.MaxWait = tt.delay, 4, tt.maxWait
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			wait := h.start(ctx, "email\nalice@acme.test\nnobody@acme.test\n")
			rounds := 1
			if tt.wantStatus == "deliverable" {
				// Each round the catch-all check, alice and nobody are all
				// greylisted (it comes before the mailbox lookup) and wait
				// for their retry on the fake clock.
				for _, step := range []time.Duration{tt.delay, 2 * tt.delay} {
					if err := fc.BlockUntilContext(ctx, 3); err != nil {
						t.Fatalf("round %d: the retries never waited on Config.Clock: %v", rounds, err)
					}
					if got, want := h.sim.Commands("mx1.acme.test", "RCPT"), 3*rounds; got != want {
						t.Fatalf("round %d: %d RCPT before the clock moved, want %d", rounds, got, want)
					}
					fc.Advance(step)
					rounds++
				}
			}
			rows, _, err := wait()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkEveryRowOnce(t, rows, 2)
			e := byEmail(rows)
			a := e["alice@acme.test"]
			if a["status"] != tt.wantStatus || a["reason"] != tt.wantReason || a["attempts"] != tt.wantAttempts {
				t.Errorf("alice: %s/%s attempts=%s code=%s, want %s/%s attempts=%s",
					a["status"], a["reason"], a["attempts"], a["smtp_code"], tt.wantStatus, tt.wantReason, tt.wantAttempts)
			}
			if tt.wantStatus == "unknown" && (a["smtp_code"] != "451" || a["enhanced_code"] != "4.7.1") {
				t.Errorf("the temporary code was not kept: %s %s", a["smtp_code"], a["enhanced_code"])
			}
			if n := e["nobody@acme.test"]; tt.wantStatus == "deliverable" && n["status"] != "undeliverable" {
				t.Errorf("nobody: %s/%s", n["status"], n["reason"])
			}
			// Every round asked all three once more, and no more often.
			if got, want := h.sim.TotalCommands("RCPT"), 3*rounds; got != want {
				t.Errorf("%d RCPT in all, want %d (%d rounds of 3)", got, want, rounds)
			}
		})
	}
}

func TestConnectionTroubleLosesNothing(t *testing.T) {
	tests := []struct {
		name string
		host mailsim.Host
	}{
		// 421 after 8 commands: EHLO, MAIL and 6 RCPT per connection.
		{"421 mid-batch", mailsim.Host{Name: "mx.421.test", Close421After: 8}},
		{"reset mid-batch", mailsim.Host{Name: "mx.reset.test", ResetAfterRcpts: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, protoWorld(tt.host))
			h.cfg.MaxAttempts = 10
			dom := strings.TrimPrefix(tt.host.Name, "mx.")
			rows, _ := h.run(addressesCSV(30, dom))
			checkEveryRowOnce(t, rows, 30)
			checkStatuses(t, rows)
			if got := h.sim.Connections(tt.host.Name); got < 4 {
				t.Errorf("only %d connections; the behaviour did not trigger", got)
			}
			for _, r := range rows {
				if r["attempts"] == "0" {
					t.Errorf("%s: attempts 0", r["email"])
				}
			}
		})
	}
}

func TestAttemptsAreBounded(t *testing.T) {
	// Every connection is reset after one RCPT: addresses whose question
	// keeps dying with the connection end as unknown after MaxAttempts.
	h := newHarness(t, protoWorld(mailsim.Host{Name: "mx.flaky.test", ResetAfterRcpts: 1}))
	h.cfg.MaxAttempts = 2
	h.cfg.NoCatchAllCheck = true
	rows, _ := h.run(addressesCSV(6, "flaky.test"))
	checkEveryRowOnce(t, rows, 6)
	lost := 0
	for _, r := range rows {
		if r["status"] == "unknown" {
			lost++
			if r["reason"] != "connection_lost" || r["attempts"] != "2" {
				t.Errorf("%s: %s attempts=%s", r["email"], r["reason"], r["attempts"])
			}
		}
	}
	if lost == 0 {
		t.Error("no address ran out of attempts")
	}
}

func TestPipeliningCutsRoundTrips(t *testing.T) {
	h := newHarness(t, protoWorld(
		mailsim.Host{Name: "mx.pipe.test"},
		mailsim.Host{Name: "mx.lockstep.test", NoPipelining: true},
	))
	rows, _ := h.run(addressesCSV(40, "pipe.test", "lockstep.test"))
	checkEveryRowOnce(t, rows, 80)
	checkStatuses(t, rows)
	pipe, lock := h.sim.Turns("mx.pipe.test"), h.sim.Turns("mx.lockstep.test")
	// EHLO, MAIL, one RCPT batch, QUIT; lock-step needs one turn per RCPT.
	if pipe > 5 || lock < 41 {
		t.Errorf("turns: pipelined %d, lock-step %d", pipe, lock)
	}
}

func TestSTARTTLSAndHELOOnly(t *testing.T) {
	h := newHarness(t, protoWorld(
		mailsim.Host{Name: "mx.tls.test", STARTTLS: true},
		mailsim.Host{Name: "mx.plain.test"},
		mailsim.Host{Name: "mx.helo.test", HELOOnly: true},
	))
	rows, _ := h.run(addressesCSV(12, "tls.test", "plain.test", "helo.test"))
	checkEveryRowOnce(t, rows, 36)
	checkStatuses(t, rows)
	for _, r := range rows {
		want := "false"
		if strings.HasSuffix(r["email"], "@tls.test") {
			want = "true"
		}
		if r["tls"] != want {
			t.Errorf("%s: tls=%q, want %s", r["email"], r["tls"], want)
		}
	}
	if got := h.sim.TLSSessions("mx.tls.test"); got != 1 {
		t.Errorf("TLS sessions = %d, want 1", got)
	}
	if got := h.sim.Commands("mx.helo.test", "HELO"); got != 1 {
		t.Errorf("HELO = %d, want 1 (fallback)", got)
	}
}

func TestTLSRequired(t *testing.T) {
	h := newHarness(t, protoWorld(
		mailsim.Host{Name: "mx.tls.test", STARTTLS: true},
		mailsim.Host{Name: "mx.plain.test"},
	))
	h.cfg.Probe.TLS = probe.TLSRequire
	rows, _ := h.run("email\nok1@tls.test\nok1@plain.test\n")
	e := byEmail(rows)
	if r := e["ok1@tls.test"]; r["status"] != "deliverable" || r["tls"] != "true" {
		t.Errorf("tls.test: %s tls=%s", r["status"], r["tls"])
	}
	if r := e["ok1@plain.test"]; r["status"] != "unknown" || r["reason"] != "tls_unavailable" {
		t.Errorf("plain.test: %s/%s", r["status"], r["reason"])
	}
	if got := h.sim.Commands("mx.plain.test", "RCPT"); got != 0 {
		t.Errorf("%d RCPT sent in clear despite require", got)
	}
}

func TestConnectionCaps(t *testing.T) {
	tests := []struct {
		name              string
		total, perHost    int
		wantHost, wantAll int
	}{
		{"per host", 64, 2, 2, 4},
		{"in total", 1, 2, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, protoWorld(
				mailsim.Host{Name: "mx.a.test", RcptDelay: 5 * time.Millisecond},
				mailsim.Host{Name: "mx.b.test", RcptDelay: 5 * time.Millisecond},
			))
			h.cfg.MaxConnections, h.cfg.MaxConnectionsPerHost = tt.total, tt.perHost
			h.cfg.NewConnectionBacklog, h.cfg.RcptPerTransaction = 5, 5
			rows, _ := h.run(addressesCSV(60, "a.test", "b.test"))
			checkEveryRowOnce(t, rows, 120)
			checkStatuses(t, rows)
			for _, host := range []string{"mx.a.test", "mx.b.test"} {
				if got := h.sim.MaxConcurrent(host); got != tt.wantHost {
					t.Errorf("%s had %d connections at once, want %d", host, got, tt.wantHost)
				}
			}
			if got := h.sim.MaxConcurrentTotal(); got != tt.wantAll {
				t.Errorf("%d connections at once in total, want %d", got, tt.wantAll)
			}
		})
	}
}

func TestRcptRateLimit(t *testing.T) {
	h := newHarness(t, protoWorld(mailsim.Host{Name: "mx.rate.test"}))
	h.cfg.RcptRate = 40
	h.cfg.RcptPerTransaction = 5 // also the burst
	rows, _ := h.run(addressesCSV(24, "rate.test"))
	checkEveryRowOnce(t, rows, 24)
	times := h.sim.CommandTimes("mx.rate.test", "RCPT")
	if len(times) != 25 {
		t.Fatalf("%d RCPT", len(times))
	}
	// 25 RCPT at 40/s with a burst of 5 cannot take less than 20/40 s.
	if span := times[len(times)-1].Sub(times[0]); span < 450*time.Millisecond {
		t.Errorf("25 RCPT within %v: the rate limit was not applied", span)
	}
}

func TestHostileAndSlowServers(t *testing.T) {
	hosts := []mailsim.Host{
		{Name: "mx.silent.test", Hostile: mailsim.HostileSilent},
		{Name: "mx.resetbanner.test", Hostile: mailsim.HostileResetAfterBanner},
		{Name: "mx.endless.test", Hostile: mailsim.HostileEndlessReply},
		{Name: "mx.huge.test", Hostile: mailsim.HostileHugeLine},
		{Name: "mx.neverends.test", Hostile: mailsim.HostileNeverEnds},
		{Name: "mx.tarpit.test", BannerDelay: time.Hour},
		{Name: "mx.fine.test"},
	}
	h := newHarness(t, protoWorld(hosts...))
	// Short enough to make the silent and slow hosts time out, long enough
	// that the fine host never does on a loaded machine.
	h.cfg.Probe.GreetingTimeout = 2 * time.Second
	h.cfg.Probe.CommandTimeout = 2 * time.Second
	var doms []string
	for _, host := range hosts {
		doms = append(doms, strings.TrimPrefix(host.Name, "mx."))
	}
	// The hostile servers cannot hold the run: it ends (within run's guard)
	// although the trickling and tarpit hosts would never finish, and each
	// hostile host gets at most one connection per attempt.
	rows, _ := h.run(addressesCSV(3, doms...))
	checkEveryRowOnce(t, rows, 3*len(hosts))
	for _, host := range hosts[:len(hosts)-1] {
		if got := h.sim.Connections(host.Name); got < 1 || got > 3 {
			t.Errorf("%s: %d connections, want 1 to 3 (one per attempt at most)", host.Name, got)
		}
	}
	want := map[string]string{
		"silent.test": "timeout", "resetbanner.test": "connection_failed", "endless.test": "protocol_error",
		"huge.test": "protocol_error", "neverends.test": "timeout", "tarpit.test": "timeout",
	}
	for _, r := range rows {
		dom := r["email"][strings.Index(r["email"], "@")+1:]
		if dom == "fine.test" {
			if r["status"] != "deliverable" {
				t.Errorf("%s: %s/%s", r["email"], r["status"], r["reason"])
			}
			continue
		}
		if r["status"] != "unknown" || r["reason"] != want[dom] {
			t.Errorf("%s: %s/%s, want unknown/%s", r["email"], r["status"], r["reason"], want[dom])
		}
	}
}
