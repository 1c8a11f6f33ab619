package pipeline

// Regression tests for bugs found in review: each failed before its fix.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/resolve"
)

// A server that refuses a second concurrent connection with 421 while the
// first is still greeting must not make its host "down": the first
// connection serves everything, and the host's cap is learnt.
func TestSecondConnectionRefusedIsNotHostDown(t *testing.T) {
	// The banner delay keeps the first connection open while the second
	// worker, started at the same moment, connects: no timing is asserted,
	// it only makes the refusal this test needs (checked below) certain.
	w := protoWorld(mailsim.Host{Name: "mx.limited.test", MaxConnections: 1, BannerDelay: 500 * time.Millisecond})
	for i := range 200 {
		w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("user%d", i))
	}
	h := newHarness(t, w)
	var b strings.Builder
	b.WriteString("email\n")
	const n = 200
	for i := range n {
		fmt.Fprintf(&b, "user%d@limited.test\n", i)
	}
	rows, _ := h.run(b.String())
	checkEveryRowOnce(t, rows, n)
	for _, r := range rows {
		if r["status"] != "deliverable" {
			t.Fatalf("%s: %s/%s: the host serves one connection fine", r["email"], r["status"], r["reason"])
		}
	}
	if got := h.sim.Connections("mx.limited.test"); got < 2 {
		t.Errorf("%d connections: the second one was never refused, the test proves nothing", got)
	}
}

// failingSink refuses every row, like a full disk; onWrite, when set, runs
// at each attempt.
type failingSink struct{ onWrite func() }

func (s failingSink) Write([]string, output.Result) error {
	if s.onWrite != nil {
		s.onWrite()
	}
	return errors.New("no space left on device")
}
func (failingSink) Flush() error { return nil }

// When the output cannot be written, probing stops instead of asking
// every remaining address for nothing.
func TestWriteErrorStopsProbing(t *testing.T) {
	h := newHarness(t, world())
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 400 {
		fmt.Fprintf(&b, "user%d@acme.test\n", i)
	}
	res := h.resolver()
	src, _ := input.NewReader(strings.NewReader(b.String()), input.Options{})
	// A batch of 5 every 250ms: 400 addresses would take 20s. Counted
	// against what the server had seen when the first write failed, not
	// against time: at most the batches already on their way (one per
	// connection) may follow.
	h.cfg.RcptRate, h.cfg.RcptPerTransaction = 20, 5
	var atFailure atomic.Int64
	var once sync.Once
	sink := failingSink{onWrite: func() {
		once.Do(func() { atFailure.Store(int64(h.sim.TotalCommands("RCPT"))) })
	}}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	_, err := Run(ctx, h.cfg, res, src, sink)
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("err = %v", err)
	}
	first := int(atFailure.Load())
	if first == 0 {
		t.Fatal("no row was written: the test proves nothing")
	}
	limit := first + h.cfg.RcptPerTransaction*2 // MaxConnectionsPerHost defaults to 2
	if got := h.sim.TotalCommands("RCPT"); got > limit {
		t.Errorf("the first write failed after %d RCPT, yet %d were sent (at most %d)", first, got, limit)
	}
}

// Cancelling while retry timers fire must not panic (a late verdict sent
// on a closed channel), must end Run with the context's error, and must not
// write a row twice. Each round cancels at another point: while the retries
// of the down host are still being scheduled, or as they fire (they fire
// all at once, each in its own goroutine, when the fake clock moves).
func TestCancelWhileRetriesFire(t *testing.T) {
	var b strings.Builder
	b.WriteString("email\n")
	rows := 0
	add := func(addr string) {
		b.WriteString(addr + "\n")
		rows++
	}
	const down = 1000
	for i := range down {
		add(fmt.Sprintf("u%d@down.test", i))
		if i%10 == 0 {
			// Decided at once: rows are written while the retries wait.
			add(fmt.Sprintf("user%d@acme.test", i))
			add("alice@acme.test") // the same address on many rows
		}
	}
	csvText := b.String()
	h := newHarness(t, world())
	written := 0
	defer func() {
		if written == 0 && !t.Failed() {
			t.Error("no round wrote a row: the duplicate check proved nothing")
		}
	}()
	for i := range 30 {
		fc := clockwork.NewFakeClock()
		h.cfg.Clock, h.cfg.Now = fc, nil
		// Two rounds: the second one's timers cannot fire, as the clock
		// moves only once, so the run cannot end before the cancel.
		h.cfg.RetryDelay, h.cfg.RetryRounds, h.cfg.MaxWait = time.Second, 2, time.Hour
		h.cfg.NoCatchAllCheck = true
		ctx, cancel := context.WithCancel(context.Background())
		wait := h.start(ctx, csvText)
		// Wait for a varying share of the retry timers, then move the
		// clock past the first round and cancel, in either order.
		if err := fc.BlockUntilContext(ctx, 1+(i*397)%down); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			go fc.Advance(time.Second)
			cancel()
		} else {
			go cancel()
			fc.Advance(time.Second)
		}
		out, _, err := wait()
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Run returned %v, want context.Canceled", i, err)
		}
		seen := map[string]bool{}
		written += len(out)
		for _, r := range out {
			n, err := strconv.Atoi(r["row"])
			if err != nil || n < 1 || n > rows || seen[r["row"]] {
				t.Fatalf("round %d: row %q written twice or out of range", i, r["row"])
			}
			seen[r["row"]] = true
			if r["status"] == "" || r["reason"] == "" {
				t.Errorf("round %d: incomplete row %v", i, r)
			}
		}
	}
}

// primaryThenGone answers one session (refusing unknown users, including the
// catch-all probe), sends 421 after 20 RCPTs and stops listening.
func primaryThenGone(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "220 primary ESMTP\r\n")
		br := bufio.NewReader(c)
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				fmt.Fprintf(c, "250-primary\r\n250 PIPELINING\r\n")
			case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RSET"):
				fmt.Fprintf(c, "250 ok\r\n")
			case strings.HasPrefix(cmd, "RCPT"):
				n++
				if n > 20 {
					fmt.Fprintf(c, "421 4.3.2 shutting down\r\n")
					return
				}
				fmt.Fprintf(c, "550 5.1.1 no such user\r\n")
			default:
				fmt.Fprintf(c, "221 bye\r\n")
				return
			}
		}
	}()
}

// The primary answers the catch-all check (refused), then goes away; the
// rest fail over to a backup MX that accepts everything. Those acceptances
// were not checked and must not pass for deliverable.
func TestBackupMXAcceptanceIsNotDeliverable(t *testing.T) {
	w := mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx1.split.test", IP: "127.0.0.80", Down: true},
			{Name: "backup.split.test", IP: "127.0.0.81"},
		},
		Domains: []mailsim.Domain{{Name: "split.test", CatchAll: true,
			MX: []mailsim.MX{{Preference: 10, Host: "mx1.split.test"}, {Preference: 20, Host: "backup.split.test"}}}},
	}
	h := newHarness(t, w)
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.MaxAttempts = 1
	primaryThenGone(t, fmt.Sprintf("127.0.0.80:%d", h.sim.SMTPPort()))
	var b strings.Builder
	b.WriteString("email\n")
	const n = 100
	for i := range n {
		fmt.Fprintf(&b, "nobody%d@split.test\n", i)
	}
	rows, _ := h.run(b.String())
	checkEveryRowOnce(t, rows, n)
	backup := 0
	for _, r := range rows {
		if r["status"] == "deliverable" {
			t.Fatalf("%s: deliverable via %s, catch_all=%q", r["email"], r["mx_host"], r["catch_all"])
		}
		if r["mx_host"] == "backup.split.test" {
			backup++
			if r["status"] != "risky" || r["reason"] != "unchecked_mx" || r["catch_all"] != "" {
				t.Errorf("%s: %s/%s catch_all=%q", r["email"], r["status"], r["reason"], r["catch_all"])
			}
		}
	}
	if backup == 0 {
		t.Fatal("no address failed over: the test proves nothing")
	}
}

// A server that pushes back with 421 before answering anything is not
// knocked on again at once: the worker backs off 1s, 2s, 4s ... at most 30s
// of Config.Clock between connections. The fake clock is moved step by
// step and the server's connections counted after each step.
func TestBackOffAfter421(t *testing.T) {
	const addrs, attempts = 5, 10
	h, fc, wait := startBusyHost(t, addrs, attempts)
	waitConns := func(n int) {
		t.Helper()
		if !waitFor(t, fmt.Sprintf("connection %d", n), func() bool { return h.sim.Connections("mx.busy.test") >= n }) {
			t.FailNow()
		}
	}
	// sleeping reports whether the worker still waits on the fake clock.
	sleeping := func() bool {
		done, cancel := context.WithCancel(context.Background())
		cancel()
		return fc.BlockUntilContext(done, 1) == nil
	}
	waitConns(1)
	for n := 1; n < attempts; n++ {
		backOff := min(time.Second<<(n-1), 30*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
		err := fc.BlockUntilContext(ctx, 1)
		cancel()
		if err != nil {
			t.Fatalf("after connection %d: the worker does not back off on Config.Clock", n)
		}
		fc.Advance(backOff - time.Millisecond)
		if got := h.sim.Connections("mx.busy.test"); got != n || !sleeping() {
			t.Fatalf("%v after connection %d: %d connections, want still %d: the back-off is shorter than %v",
				backOff-time.Millisecond, n, got, n, backOff)
		}
		fc.Advance(time.Millisecond)
		waitConns(n + 1)
		if got := h.sim.Connections("mx.busy.test"); got != n+1 {
			t.Fatalf("after %v of back-off: %d connections, want %d", backOff, got, n+1)
		}
	}
	// Every address has used its attempts: the run ends. A worker that
	// still backs off first is let go (see TestNoBackOffAfterLastAnswer).
	rows, err := finishBusyHost(t, fc, wait)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkEveryRowOnce(t, rows, addrs)
	for _, r := range rows {
		if r["status"] != "unknown" || r["smtp_code"] != "421" || r["attempts"] != strconv.Itoa(attempts) {
			t.Errorf("%s: %s/%s code=%s attempts=%s, want unknown with the 421 after %d attempts",
				r["email"], r["status"], r["reason"], r["smtp_code"], r["attempts"], attempts)
		}
	}
	if got := h.sim.Connections("mx.busy.test"); got < attempts || got > attempts+1 {
		t.Errorf("%d connections, want %d (one per attempt)", got, attempts)
	}
}

// Once the last address is decided, a worker that was pushed back does not
// back off before it lets its host go: that wait (up to 30s) would be added
// to the end of the run, followed by a session with nothing to ask.
func TestNoBackOffAfterLastAnswer(t *testing.T) {
	const addrs, attempts = 3, 2
	h, fc, wait := startBusyHost(t, addrs, attempts)
	// The first back-off comes between the two attempts.
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Second)
	if !waitFor(t, "the second connection", func() bool { return h.sim.Connections("mx.busy.test") >= 2 }) {
		t.FailNow()
	}
	// Now Run must end without the clock moving again.
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_ = fc.BlockUntilContext(ctx, 1)
	}()
	var rows []row
	var err error
	runEnded := make(chan struct{})
	go func() {
		defer close(runEnded)
		rows, _, err = wait()
	}()
	select {
	case <-runEnded:
	case <-ended:
		t.Errorf("after the last answer the worker backs off (%d connections so far): the run's end waits for Config.Clock",
			h.sim.Connections("mx.busy.test"))
		for {
			fc.Advance(30 * time.Second)
			select {
			case <-runEnded:
			case <-time.After(10 * time.Millisecond):
				continue
			}
			break
		}
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkEveryRowOnce(t, rows, addrs)
	if got := h.sim.Connections("mx.busy.test"); got != attempts {
		t.Errorf("%d connections, want %d: one per attempt, none with nothing to ask", got, attempts)
	}
}

// startBusyHost starts a run of n addresses at a host that answers 421
// to the first RCPT of every connection, on a fake clock, with one
// connection at a time and the given attempts per address.
func startBusyHost(t *testing.T, n, attempts int) (*harness, *clockwork.FakeClock, func() ([]row, Summary, error)) {
	t.Helper()
	w := protoWorld(mailsim.Host{Name: "mx.busy.test", Close421After: 2}) // EHLO, MAIL, then 421
	h, fc := newFakeClockHarness(t, w)
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.MaxAttempts = attempts
	h.cfg.NoCatchAllCheck = true
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	t.Cleanup(cancel)
	return h, fc, h.start(ctx, addressesCSV(n, "busy.test"))
}

// finishBusyHost waits for the run, moving the fake clock on while a worker
// still sleeps on it.
func finishBusyHost(t *testing.T, fc *clockwork.FakeClock, wait func() ([]row, Summary, error)) ([]row, error) {
	t.Helper()
	type result struct {
		rows []row
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, _, err := wait()
		done <- result{rows, err}
	}()
	for {
		select {
		case r := <-done:
			return r.rows, r.err
		case <-time.After(10 * time.Millisecond):
			fc.Advance(30 * time.Second)
		}
	}
}

// An address the client refuses to put in a command fails alone, not its
// whole batch (such an address once slipped through the input's checks).
func TestUnsendableAddressFailsAlone(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.setDefaults()
	res := h.resolver()
	groups := []DomainGroup{{Domain: "acme.test", Addresses: []input.Address{
		{Local: "alice", Domain: "acme.test"}, {Local: `"a<b"`, Domain: "acme.test"}, {Local: "bob", Domain: "acme.test"},
	}}}
	out := make(chan Verdict, 10)
	probeEngine(context.Background(), h.cfg, res, groups, out)
	close(out)
	got := map[string]string{}
	for v := range out {
		got[v.Addr.Local] = v.Status + "/" + v.Reason
	}
	want := map[string]string{"alice": "deliverable/accepted", `"a<b"`: "invalid/syntax", "bob": "deliverable/accepted"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s", k, got[k], w)
		}
	}
}

// A domain whose DNS fails for a while (SERVFAIL) is looked up again on the
// delayed-retry schedule instead of ending as dns_error at once.
func TestDNSFailureRetried(t *testing.T) {
	h := newHarness(t, world())
	// A resolver in front of the world's DNS that answers SERVFAIL to the
	// first MX queries for acme.test.
	var failures atomic.Int64
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		if q.Question[0].Qtype == dns.TypeMX && q.Question[0].Name == "acme.test." && failures.Add(1) <= 4 {
			m := new(dns.Msg)
			m.SetRcode(q, dns.RcodeServerFailure)
			w.WriteMsg(m)
			return
		}
		r, err := dns.Exchange(q, h.sim.DNSAddr())
		if err != nil {
			return
		}
		w.WriteMsg(r)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })

	// The timeout only guards against a hang: the proxy answers at once.
	res, _ := resolve.New(resolve.Config{Servers: []string{pc.LocalAddr().String()}, Timeout: 10 * time.Second, Attempts: 2})
	for _, tt := range []struct {
		name   string
		delay  time.Duration
		want   string
		before int64
	}{
		{"retries off: dns_error", 0, "unknown/dns_error", 0},
		{"retried: answered", 50 * time.Millisecond, "deliverable/accepted", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			failures.Store(tt.before) // the resolver makes 2 attempts per lookup
			cfg := h.cfg
			fc := clockwork.NewFakeClock()
			cfg.Clock = fc
			cfg.RetryDelay, cfg.RetryRounds, cfg.MaxWait = tt.delay, 3, 10*time.Second
			src, _ := input.NewReader(strings.NewReader("email\nalice@acme.test\n"), input.Options{})
			var out bytes.Buffer
			sink, _ := output.NewCSV(&out, src.Header())
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := Run(ctx, cfg, res, src, sink)
				done <- err
			}()
			if tt.delay > 0 {
				// The lookup is asked again when the fake clock says so.
				if err := fc.BlockUntilContext(ctx, 1); err != nil {
					t.Fatalf("the failed lookup was never scheduled again on Config.Clock: %v", err)
				}
				if got := failures.Load(); got != tt.before+2 {
					t.Errorf("%d MX queries before the retry, want %d", got-tt.before, 2)
				}
				fc.Advance(tt.delay)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			rows := parseRows(t, &out)
			checkEveryRowOnce(t, rows, 1)
			if got := rows[0]["status"] + "/" + rows[0]["reason"]; got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
