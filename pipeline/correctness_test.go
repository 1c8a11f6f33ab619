package pipeline

// Regression tests for the defects of issue 10: each failed before its fix.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// waitForTimer blocks until the run has n timers or sleepers on clock.
func waitForTimer(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers on the fake clock: %v", n, err)
	}
}

// Defect 1: a primary that refuses connections and a backup whose name does
// not exist is a domain we could not reach (unknown, retried), not one whose
// mail bounces.
func TestDownPrimaryAndStaleBackupMX(t *testing.T) {
	w := world()
	w.Domains = append(w.Domains,
		mailsim.Domain{Name: "stale.test", MX: []mailsim.MX{
			{Preference: 10, Host: "dead.only.test"}, {Preference: 20, Host: "gone.stale.test"}}},
		mailsim.Domain{Name: "allgone.test", MX: []mailsim.MX{
			{Preference: 10, Host: "gone1.allgone.test"}, {Preference: 20, Host: "gone2.allgone.test"}}},
	)
	h := newHarness(t, w)
	clock := clockwork.NewFakeClock()
	h.cfg.Clock = clock
	h.cfg.RetryDelay, h.cfg.RetryRounds, h.cfg.MaxWait = time.Minute, 1, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := h.start(ctx, "email\nann@stale.test\nbob@allgone.test\n")

	// ann's domain could not be reached: it waits for a delayed retry.
	waitForTimer(t, clock, 1)
	clock.Advance(time.Minute)
	rows, _, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	checkEveryRowOnce(t, rows, 2)
	e := byEmail(rows)
	if got := e["ann@stale.test"]; got["status"] != "unknown" || got["reason"] != "connection_failed" {
		t.Errorf("ann@stale.test: %s/%s, want unknown/connection_failed (the primary refused, the backup does not exist)", got["status"], got["reason"])
	} else if got["mx_host"] != "dead.only.test" {
		t.Errorf("ann@stale.test: mx_host %q, want the primary that refused", got["mx_host"])
	}
	if got := e["bob@allgone.test"]; got["status"] != "undeliverable" || got["reason"] != "mx_unresolvable" {
		t.Errorf("bob@allgone.test: %s/%s, want undeliverable/mx_unresolvable (no MX name exists)", got["status"], got["reason"])
	}
}

// Defect 2: a server that sends a reply too many must not shift its
// answers onto the wrong addresses.
func TestReplyTooManyNeverMisattributed(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.extra.test", ExtraReplyTo: "RSET"})
	h := newHarness(t, w)
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.RcptPerTransaction = 5 // several transactions per connection, so RSETs are sent
	h.cfg.MaxAttempts = 5
	rows, _ := h.run(addressesCSV(20, "extra.test"))
	checkEveryRowOnce(t, rows, 20)
	checkStatuses(t, rows)
	if got := h.sim.Commands("mx.extra.test", "RSET"); got == 0 {
		t.Fatal("no RSET was sent: the test proves nothing")
	}
}

// Defects 3 and 4: a recipient cap per connection (452 at the first RCPT of
// a transaction), and the 552 of old servers, are limits to work within,
// never verdicts.
func TestRecipientCapsAreNotVerdicts(t *testing.T) {
	tests := []struct {
		name            string
		host            mailsim.Host
		wantConnections int
	}{
		{
			name: "452 per connection at a transaction's first RCPT",
			host: mailsim.Host{Name: "mx.percon.test", MaxRcptPerConnection: 10},
			// 30 addresses and the catch-all check, 10 per connection.
			wantConnections: 4,
		},
		{
			name:            "552 5.5.3 per transaction",
			host:            mailsim.Host{Name: "mx.old.test", MaxRecipients: 3, RecipientLimitReply: &mailsim.Reply{Code: 552, Enhanced: "5.5.3", Message: "Too many recipients"}},
			wantConnections: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := protoWorld(tt.host)
			dom := strings.TrimPrefix(tt.host.Name, "mx.")
			for i := range 30 {
				w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("box%d", i))
			}
			h := newHarness(t, w)
			h.cfg.MaxConnectionsPerHost = 1
			h.cfg.RcptPerTransaction = 5
			var b strings.Builder
			b.WriteString("email\n")
			for i := range 30 {
				fmt.Fprintf(&b, "box%d@%s\n", i, dom)
			}
			rows, _ := h.run(b.String())
			checkEveryRowOnce(t, rows, 30)
			for _, r := range rows {
				if r["status"] != "deliverable" || r["attempts"] != "1" {
					t.Errorf("%s: %s/%s code=%s attempts=%s, want deliverable after 1 attempt", r["email"], r["status"], r["reason"], r["smtp_code"], r["attempts"])
				}
			}
			if got := h.sim.Connections(tt.host.Name); got != tt.wantConnections {
				t.Errorf("%d connections, want %d", got, tt.wantConnections)
			}
		})
	}
}

// Defect 5: a deadline that the rate limiter cannot meet ends the run; it
// must not turn into workers that give their connection up and reconnect
// in a loop.
func TestRateLimitAndDeadlineOpenNoStorm(t *testing.T) {
	h := newHarness(t, protoWorld(mailsim.Host{Name: "mx.slowrate.test"}))
	h.cfg.RcptRate = 1
	h.cfg.RcptPerTransaction = 2 // the first batch fits the burst, the next ones wait
	h.cfg.NoCatchAllCheck = true
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
	src, _ := input.NewReader(strings.NewReader(addressesCSV(10, "slowrate.test")), input.Options{})
	var out bytes.Buffer
	sink, _ := output.NewCSV(&out, src.Header())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Run(ctx, h.cfg, res, src, sink); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run: %v, want the deadline", err)
	}
	if got := h.sim.Connections("mx.slowrate.test"); got > 2 {
		t.Errorf("%d connections for 10 addresses: workers reconnect in a loop", got)
	}
}

// Defect 6: a verdict keeps a bounded copy of the server's text, however
// long the reply.
func TestVerdictKeepsABoundedReply(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6,000 bytes on one line
	w := world()
	w.Domains[0].Replies["chatty"] = mailsim.Reply{Code: 250, Enhanced: "2.1.5", Message: long}
	h := newHarness(t, w)
	h.cfg.setDefaults()
	h.cfg.Probe.MaxLineLength = 8192
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
	out := make(chan Verdict, 10)
	probeEngine(context.Background(), h.cfg, res, []DomainGroup{{Domain: "acme.test", Addresses: []input.Address{{Local: "chatty", Domain: "acme.test"}}}}, out)
	close(out)
	n := 0
	for v := range out {
		n++
		if v.Reply == nil {
			t.Fatal("no reply kept")
		}
		text := v.Reply.Text()
		if len(text) > maxKeptReplyText || len(v.Reply.Lines) != 1 || !utf8.ValidString(text) {
			t.Errorf("kept %d bytes in %d lines (valid UTF-8: %v), want at most %d on one line", len(text), len(v.Reply.Lines), utf8.ValidString(text), maxKeptReplyText)
		}
		if v.Status != "deliverable" {
			t.Errorf("%s/%s", v.Status, v.Reason)
		}
	}
	if n != 1 {
		t.Fatalf("%d verdicts, want 1", n)
	}
}

func TestBoundReply(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"short", []string{"ok"}, "ok"},
		{"lines joined", []string{"a", "b"}, "a b"},
		{"cut at a rune boundary", []string{strings.Repeat("a", maxKeptReplyText-1) + "é"}, strings.Repeat("a", maxKeptReplyText-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := boundReply(&probe.Reply{Code: 250, Enhanced: "2.0.0", Lines: tt.lines})
			if got.Text() != tt.want || got.Code != 250 || got.Enhanced != "2.0.0" {
				t.Errorf("got %d %s %q", got.Code, got.Enhanced, got.Text())
			}
		})
	}
	if boundReply(nil) != nil {
		t.Error("boundReply(nil) is not nil")
	}
}

// Defect 7: acceptances waiting for their domain's catch-all answer are
// decided rows: a stop writes them (catch_all empty), never drops them.
func TestStopWritesAcceptancesWaitingForCatchAll(t *testing.T) {
	w := world()
	// Unknown recipients, the catch-all check among them, are deferred:
	// the check waits for a delayed retry while alice's acceptance waits
	// for the check.
	w.Domains[0].UnknownReply = &mailsim.Reply{Code: 450, Enhanced: "4.1.1", Message: "unverified address"}
	h := newHarness(t, w)
	clock := clockwork.NewFakeClock()
	h.cfg.Clock = clock
	h.cfg.RetryDelay, h.cfg.RetryRounds, h.cfg.MaxWait = time.Minute, 3, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := h.start(ctx, "email\nalice@acme.test\nbob@acme.test\n")
	waitForTimer(t, clock, 1) // the catch-all check's retry is due in a minute
	cancel()
	rows, _, err := wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	checkEveryRowOnce(t, rows, 2)
	for _, row := range rows {
		if row["status"] != "deliverable" || row["catch_all"] != "" {
			t.Errorf("%s: %s/%s catch_all=%q, want deliverable with catch_all empty", row["email"], row["status"], row["reason"], row["catch_all"])
		}
	}
}

// Defect 8: a worker that waited for a connection slot while its host's
// queue was emptied by another connection does not connect.
func TestNoSessionWithoutWork(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.a.test"}, mailsim.Host{Name: "mx.b.test"})
	h := newHarness(t, w)
	// One slot for all: the second worker of each host waits for it while
	// the first empties the host's queue.
	h.cfg.MaxConnections = 1
	h.cfg.MaxConnectionsPerHost = 2
	h.cfg.NewConnectionBacklog = 1
	rows, _ := h.run(addressesCSV(30, "a.test", "b.test"))
	checkEveryRowOnce(t, rows, 60)
	for _, host := range []string{"mx.a.test", "mx.b.test"} {
		if conns, mails := h.sim.Connections(host), h.sim.Commands(host, "MAIL"); conns > mails {
			t.Errorf("%s: %d connections but %d MAIL: a session asked nothing", host, conns, mails)
		}
	}
}

// Defect 13: a server that refuses everything past a number of unknown
// recipients (an anti-harvest defence) must not turn real mailboxes into
// undeliverable ones.
func TestAntiHarvestDefence(t *testing.T) {
	t.Run("per connection: re-asked in smaller batches", func(t *testing.T) {
		w := protoWorld(mailsim.Host{Name: "mx.harvest.test", RefuseAllAfterUnknown: 10})
		for i := range 20 {
			w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("real%d", i))
		}
		h := newHarness(t, w)
		h.cfg.MaxConnectionsPerHost = 1
		h.cfg.Clock = fastClock{}
		var b strings.Builder
		b.WriteString("email\n")
		for i := range 20 {
			fmt.Fprintf(&b, "real%d@harvest.test\nghost%d@harvest.test\n", i, i)
		}
		rows, _ := h.run(b.String())
		checkEveryRowOnce(t, rows, 40)
		for _, r := range rows {
			want := "undeliverable"
			if strings.HasPrefix(r["email"], "real") {
				want = "deliverable"
			}
			if r["status"] != want {
				t.Errorf("%s: %s/%s code=%s, want %s", r["email"], r["status"], r["reason"], r["smtp_code"], want)
			}
		}
		if got := h.sim.Commands("mx.harvest.test", "RCPT"); got <= 41 {
			t.Errorf("%d RCPT: nothing was asked again", got)
		}
	})
	t.Run("refusing every unknown recipient and postmaster alike", func(t *testing.T) {
		w := protoWorld(mailsim.Host{Name: "mx.wall.test"})
		w.Domains[0].NoPostmaster = true
		w.Domains[0].UnknownReply = &mailsim.Reply{Code: 550, Message: "#5.1.0 Address rejected"}
		h := newHarness(t, w)
		h.cfg.MaxConnectionsPerHost = 1
		h.cfg.Clock = fastClock{}
		rows, _ := h.run(addressesCSV(40, "wall.test"))
		checkEveryRowOnce(t, rows, 40)
		for _, r := range rows {
			want := "unknown/refuses_all"
			if strings.HasPrefix(r["email"], "ok") {
				want = "deliverable/accepted"
			}
			if got := r["status"] + "/" + r["reason"]; got != want {
				t.Errorf("%s: %s, want %s", r["email"], got, want)
			}
		}
		// Asked once, then once more over one connection that was refused
		// from its first RCPT; then never again.
		if got := h.sim.Connections("mx.wall.test"); got != 2 {
			t.Errorf("%d connections, want 2", got)
		}
	})
	t.Run("refusing everything after one unknown: bounded", func(t *testing.T) {
		w := protoWorld(mailsim.Host{Name: "mx.touchy.test", RefuseAllAfterUnknown: 1})
		h := newHarness(t, w)
		h.cfg.MaxConnectionsPerHost = 1
		h.cfg.Clock = fastClock{}
		rows, _ := h.run(addressesCSV(200, "touchy.test"))
		checkEveryRowOnce(t, rows, 200)
		for _, r := range rows {
			if r["status"] == "undeliverable" && r["reason"] != "mailbox_unknown" {
				t.Errorf("%s: %s/%s", r["email"], r["status"], r["reason"])
			}
			if strings.HasPrefix(r["email"], "ok") && r["status"] == "undeliverable" {
				t.Errorf("%s: a real mailbox came out undeliverable", r["email"])
			}
		}
		if got := h.sim.Connections("mx.touchy.test"); got > 1+maxHarvestRounds {
			t.Errorf("%d connections to a server that refuses nearly everything, want at most %d", got, 1+maxHarvestRounds)
		}
	})
}

// fastClock is a real clock whose sleeps and timers are a thousand times
// shorter, for tests that go through back-offs they do not measure.
type fastClock struct{ clockwork.Clock }

func (fastClock) Now() time.Time                  { return time.Now() }
func (fastClock) Since(t time.Time) time.Duration { return time.Since(t) }
func (fastClock) NewTimer(d time.Duration) clockwork.Timer {
	return clockwork.NewRealClock().NewTimer(d / 1000)
}
func (fastClock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	return clockwork.NewRealClock().AfterFunc(d/1000, f)
}

// Defect 14: after a refused RSET in a pipelined group, the answers to the
// MAIL and RCPTs that followed it are used, not thrown away; and a
// transaction restarted for a recipient limit on a session that broke
// continues on a new session without burning attempts.
func TestRefusedRSETKeepsPipelinedAnswers(t *testing.T) {
	w := mailsim.World{
		// A host, so that the world has an SMTP port for the script to share.
		Hosts:   []mailsim.Host{{Name: "mx.unused.test", IP: "127.0.0.70"}},
		Domains: []mailsim.Domain{{Name: "scripted.test", A: []string{"127.0.0.71"}}},
	}
	h := newHarness(t, w)
	var rcpts, conns atomic.Int64
	scriptedMX(t, fmt.Sprintf("127.0.0.71:%d", h.sim.SMTPPort()), func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		fmt.Fprintf(c, "220 scripted ESMTP\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				fmt.Fprintf(c, "250-scripted\r\n250 PIPELINING\r\n")
			case cmd == "RSET":
				fmt.Fprintf(c, "503 5.5.1 RSET refused\r\n")
			case strings.HasPrefix(cmd, "MAIL"):
				fmt.Fprintf(c, "250 2.1.0 ok\r\n")
			case strings.HasPrefix(cmd, "RCPT TO:<OK"):
				rcpts.Add(1)
				fmt.Fprintf(c, "250 2.1.5 ok\r\n")
			case strings.HasPrefix(cmd, "RCPT"):
				rcpts.Add(1)
				fmt.Fprintf(c, "550 5.1.1 no such user\r\n")
			default:
				fmt.Fprintf(c, "221 bye\r\n")
				return
			}
		}
	})
	h.cfg.NoCatchAllCheck = true
	h.cfg.NoPositiveControl = true
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.RcptPerTransaction = 2
	rows, _ := h.run("email\nok1@scripted.test\nno1@scripted.test\nok2@scripted.test\nno2@scripted.test\n")
	checkEveryRowOnce(t, rows, 4)
	checkStatuses(t, rows)
	for _, r := range rows {
		if r["attempts"] != "1" {
			t.Errorf("%s: attempts=%s, want 1: its answer after the refused RSET was thrown away", r["email"], r["attempts"])
		}
	}
	if rcpts.Load() != 4 || conns.Load() != 1 {
		t.Errorf("the server was asked %d RCPT over %d connections, want 4 over 1", rcpts.Load(), conns.Load())
	}
}

func TestRecipientLimitRestartOnBrokenSession(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.brittle.test", MaxRecipients: 2, ResetAfterRcpts: 3})
	h := newHarness(t, w)
	h.cfg.NoCatchAllCheck = true
	h.cfg.NoPositiveControl = true
	h.cfg.MaxConnectionsPerHost = 1
	rows, _ := h.run("email\nok0@brittle.test\nok1@brittle.test\nok2@brittle.test\nok3@brittle.test\n")
	checkEveryRowOnce(t, rows, 4)
	checkStatuses(t, rows)
	for _, r := range rows {
		if r["attempts"] != "1" {
			t.Errorf("%s: attempts=%s, want 1: an attempt was burnt on a dead session", r["email"], r["attempts"])
		}
	}
}

// scriptedMX serves script on addr for every connection until the test ends.
func scriptedMX(t *testing.T, addr string, script func(c net.Conn, br *bufio.Reader)) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				script(c, bufio.NewReader(c))
			}()
		}
	}()
}
