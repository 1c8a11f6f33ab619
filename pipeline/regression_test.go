package pipeline

// Regression tests for bugs found in review: each failed before its fix.

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
	w := protoWorld(mailsim.Host{Name: "mx.limited.test", MaxConnections: 1, BannerDelay: 100 * time.Millisecond})
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

type failingSink struct{}

func (failingSink) Write([]string, output.Result) error { return errors.New("no space left on device") }
func (failingSink) Flush() error                        { return nil }

// When the output cannot be written, probing stops instead of asking
// every remaining address for nothing.
func TestWriteErrorStopsProbing(t *testing.T) {
	h := newHarness(t, world())
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 400 {
		fmt.Fprintf(&b, "user%d@acme.test\n", i)
	}
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
	src, _ := input.NewReader(strings.NewReader(b.String()), input.Options{})
	h.cfg.RcptRate = 200 // 400 addresses would take 2 s
	_, err := Run(context.Background(), h.cfg, res, src, failingSink{})
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("err = %v", err)
	}
	if got := h.sim.TotalCommands("RCPT"); got > 100 {
		t.Errorf("the first write failed, yet %d RCPT were sent", got)
	}
}

// Cancelling while retry timers keep firing must not panic (a late verdict
// sent on a closed channel).
func TestCancelWhileRetriesFire(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.RetryDelay, h.cfg.RetryRounds, h.cfg.MaxWait = 2*time.Millisecond, 1, time.Hour
	h.cfg.NoCatchAllCheck = true
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "u%d@down.test\n", i)
	}
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
	for i := range 60 {
		src, _ := input.NewReader(strings.NewReader(b.String()), input.Options{})
		var out bytes.Buffer
		sink, _ := output.NewCSV(&out, src.Header())
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+i%30)*time.Millisecond)
		Run(ctx, h.cfg, res, src, sink)
		cancel()
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
// knocked on again at once: the worker backs off.
func TestBackOffAfter421(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.busy.test", Close421After: 2})
	h := newHarness(t, w)
	h.cfg.MaxConnectionsPerHost = 1
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
	src, _ := input.NewReader(strings.NewReader(addressesCSV(200, "busy.test")), input.Options{})
	var out bytes.Buffer
	sink, _ := output.NewCSV(&out, src.Header())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	Run(ctx, h.cfg, res, src, sink)
	// Without back-off: dozens of connections in that time. With it:
	// the first, then after 1 s a second.
	if got := h.sim.Connections("mx.busy.test"); got > 3 {
		t.Errorf("%d connections in 1.5 s to a host that answers 421 at once", got)
	}
}

// An address the client refuses to put in a command fails alone, not its
// whole batch (such an address once slipped through the input's checks).
func TestUnsendableAddressFailsAlone(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.setDefaults()
	res, _ := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: time.Second, Attempts: 2})
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

	res, _ := resolve.New(resolve.Config{Servers: []string{pc.LocalAddr().String()}, Timeout: time.Second, Attempts: 2})
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
			cfg.RetryDelay, cfg.RetryRounds, cfg.MaxWait = tt.delay, 3, 10*time.Second
			src, _ := input.NewReader(strings.NewReader("email\nalice@acme.test\n"), input.Options{})
			var out bytes.Buffer
			sink, _ := output.NewCSV(&out, src.Header())
			if _, err := Run(context.Background(), cfg, res, src, sink); err != nil {
				t.Fatal(err)
			}
			rows := parseRows(t, &out)
			if got := rows[0]["status"] + "/" + rows[0]["reason"]; got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
