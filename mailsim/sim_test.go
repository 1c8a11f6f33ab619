package mailsim

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStartRejectsInvalidWorld(t *testing.T) {
	t.Parallel()
	host := Host{Name: "mx.a.test", IP: "127.0.0.80"}
	dom := Domain{Name: "a.test", MX: []MX{{Preference: 1, Host: "mx.a.test"}}}
	tests := []struct {
		name string
		w    World
	}{
		{"non-loopback host ip", World{Hosts: []Host{{Name: "mx.a.test", IP: "192.0.2.1"}}}},
		{"ipv6 host ip", World{Hosts: []Host{{Name: "mx.a.test", IP: "::1"}}}},
		{"bad host ip", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0"}}}},
		{"duplicate ip", World{Hosts: []Host{host, {Name: "mx.b.test", IP: "127.0.0.80"}}}},
		{"duplicate host", World{Hosts: []Host{host, {Name: "MX.A.TEST.", IP: "127.0.0.81"}}}},
		{"duplicate domain", World{Domains: []Domain{dom, {Name: "A.test"}}, Hosts: []Host{host}}},
		{"empty domain name", World{Domains: []Domain{{Name: ""}}}},
		{"null mx and mx", World{Domains: []Domain{{Name: "a.test", NullMX: true, MX: dom.MX}}, Hosts: []Host{host}}},
		{"non-loopback domain address", World{Domains: []Domain{{Name: "a.test", A: []string{"198.51.100.7"}}}}},
		{"bad reply code", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Code: 99}}}}}},
		{"bad enhanced code", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Code: 550, Enhanced: "5.1"}}}}}},
		{"raw and code", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Code: 550, Raw: "550 x"}}}}}},
		{"raw without code", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Raw: "no such user"}}}}}},
		{"raw codes differ", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Raw: "550-a\n551 b"}}}}}},
		{"raw last line continues", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Raw: "550-a\n550-b"}}}}}},
		{"raw bare code", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Raw: "550"}}}}}},
		{"raw CR", World{Domains: []Domain{{Name: "a.test", Replies: map[string]Reply{"x": {Raw: "550 a\r"}}}}}},
		{"negative delay", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", RcptDelay: -1}}}},
		{"negative banner delay", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", BannerDelay: -1}}}},
		{"negative close421after", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", Close421After: -1}}}},
		{"negative resetafterrcpts", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", ResetAfterRcpts: -1}}}},
		{"unknown hostility", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", Hostile: "rude"}}}},
		{"down and hostile", World{Hosts: []Host{{Name: "mx.a.test", IP: "127.0.0.80", Down: true, Hostile: HostileSilent}}}},
		{"negative greylist", World{Domains: []Domain{{Name: "a.test", Greylist: -time.Second}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(t.Context(), tc.w, Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("Start accepted an invalid world")
			}
			if !errors.Is(err, ErrInvalidWorld) {
				t.Fatalf("error %v does not wrap ErrInvalidWorld", err)
			}
		})
	}
}

func TestStartRejectsNegativeRTT(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), Example(), Options{RTT: -time.Millisecond})
	if err == nil {
		_ = s.Close()
		t.Fatal("Start accepted a negative RTT")
	}
	if errors.Is(err, ErrInvalidWorld) {
		t.Errorf("a bad option is not a bad world: %v", err)
	}
}

func TestStartCanceledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := Start(ctx, Example(), Options{}); !errors.Is(err, context.Canceled) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("Start with canceled context: %v", err)
	}
}

func TestFixedPorts(t *testing.T) {
	t.Parallel()
	// Find a port free on both IPs by letting a Sim choose it, then reuse it.
	w := World{Hosts: []Host{{Name: "a.test", IP: "127.0.0.82"}, {Name: "b.test", IP: "127.0.0.83"}}}
	first := startSim(t, w)
	port, dnsAddr := first.SMTPPort(), first.DNSAddr()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Start(t.Context(), w, Options{SMTPPort: port, DNSAddr: dnsAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.SMTPPort() != port || s.DNSAddr() != dnsAddr {
		t.Fatalf("got %d %s, want %d %s", s.SMTPPort(), s.DNSAddr(), port, dnsAddr)
	}
	// A second world on the same fixed port must fail, not silently move.
	if s2, err := Start(t.Context(), w, Options{SMTPPort: port}); err == nil {
		_ = s2.Close()
		t.Fatal("second Start on a taken port succeeded")
	}
}

// TestCloseReleasesEverything checks that Close ends open sessions, frees
// every port, leaves no goroutine behind and can be called twice.
func TestCloseReleasesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	w := Example()
	s, err := Start(t.Context(), w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, s, ipOf(t, w, "mx1.acme.test"))
	c.expect("EHLO client.test", 250, "")
	query(t, s, "tcp", "acme.test", dns.TypeMX, 0)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadAll(c.conn); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("open session after Close: %v", err)
	}

	for _, h := range w.Hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(h.IP, strconv.Itoa(s.SMTPPort())))
		if err != nil {
			t.Fatalf("SMTP port of %s still taken: %v", h.Name, err)
		}
		_ = l.Close()
	}
	pc, err := net.ListenPacket("udp", s.DNSAddr())
	if err != nil {
		t.Fatalf("DNS UDP port still taken: %v", err)
	}
	_ = pc.Close()
	l, err := net.Listen("tcp", s.DNSAddr())
	if err != nil {
		t.Fatalf("DNS TCP port still taken: %v", err)
	}
	_ = l.Close()

	waitGoroutines(t, before)
}

// TestExampleLeads walks every row of examples/leads.csv through the example
// world the way the tool would (syntax, MX or implicit MX, RCPT on the
// preferred exchanger) and checks the outcome documented in Example.
func TestExampleLeads(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../examples/leads.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "first_name,last_name,email,company" {
		t.Fatalf("header %q", got)
	}
	// Outcome per 1-based data row: an SMTP code, or what stops earlier.
	want := map[int]string{
		1: "250", 2: "250", 3: "250", 4: "550 5.1.1", 5: "552 5.2.2", 6: "550 5.7.1",
		7: "250", 8: "550 5.1.1", 9: "250", 10: "250", 11: "550 5.1.1", 12: "250",
		13: "550 5.1.1", 14: "null_mx", 15: "250", 16: "550 5.1.1", 17: "250",
		18: "nxdomain", 19: "250", 20: "syntax", 21: "250",
		22: "250", 23: "250", 24: "nxdomain", 25: "250", 26: "nxdomain", 27: "250",
	}
	if len(rows)-1 != len(want) {
		t.Fatalf("%d data rows, want %d", len(rows)-1, len(want))
	}

	w := Example()
	s := startSim(t, w)
	ipByName := map[string]string{}
	for _, h := range w.Hosts {
		ipByName[h.Name+"."] = h.IP
	}
	clients := map[string]*rawClient{}
	seen := map[string]bool{}
	var dup, upper bool
	for i, row := range rows[1:] {
		n := i + 1
		addr := row[2]
		dup = dup || seen[strings.ToLower(addr)]
		seen[strings.ToLower(addr)] = true
		got := func() string {
			local, domain, ok := strings.Cut(addr, "@")
			if !ok || local == "" || domain == "" {
				return "syntax"
			}
			upper = upper || domain != strings.ToLower(domain)
			r := query(t, s, "udp", domain, dns.TypeMX, 0)
			target := dns.Fqdn(strings.ToLower(domain))
			switch {
			case r.Rcode == dns.RcodeNameError:
				return "nxdomain"
			case len(r.Answer) == 1 && r.Answer[0].(*dns.MX).Mx == ".":
				return "null_mx"
			case len(r.Answer) > 0:
				target = r.Answer[0].(*dns.MX).Mx // sorted: the preferred one
			}
			a := query(t, s, "udp", target, dns.TypeA, 0)
			if len(a.Answer) == 0 {
				return "no address for " + target
			}
			ip := a.Answer[0].(*dns.A).A.String()
			c := clients[ip]
			if c == nil {
				c = dialSMTP(t, s, ip)
				c.expect("EHLO client.test", 250, "")
				c.expect("MAIL FROM:<>", 250, "")
				clients[ip] = c
			}
			code, msg := c.cmd("RCPT TO:<" + addr + ">")
			if code == 250 {
				return "250"
			}
			return strconv.Itoa(code) + " " + strings.Fields(msg)[0]
		}()
		if got != want[n] {
			t.Errorf("row %d %q: %s, want %s", n, addr, got, want[n])
		}
	}
	if !dup || !upper {
		t.Errorf("leads.csv lacks a duplicate (%v) or an upper-case domain (%v)", dup, upper)
	}
	if got := s.TotalCommands("DATA"); got != 0 {
		t.Errorf("DATA sent %d times", got)
	}
	// Random local parts: only catchall.test accepts them.
	served := map[string][]string{
		"mx1.acme.test":    {"acme.test"},
		"mx.mailhost.test": {"globex.test", "initech.test"},
		"implicit.test":    {"implicit.test"},
		"mx.catchall.test": {"catchall.test"},
	}
	for host, domains := range served {
		c := dialSMTP(t, s, ipOf(t, w, host))
		c.expect("EHLO client.test", 250, "")
		c.expect("MAIL FROM:<>", 250, "")
		for _, d := range domains {
			wantCode := 550
			if d == "catchall.test" {
				wantCode = 250
			}
			if code, msg := c.cmd("RCPT TO:<zq7xk3p0@" + d + ">"); code != wantCode {
				t.Errorf("random address at %s: %d %s, want %d", d, code, msg, wantCode)
			}
		}
	}
}
