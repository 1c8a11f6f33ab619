package mailsim

import (
	"io"
	"maps"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestEgressCheckRecords(t *testing.T) {
	t.Parallel()
	s := startSim(t, Example())
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // answer RDATA in presentation form
	}{
		{"1.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, []string{"sandbox.bulkverify.test."}},
		{"2.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, nil},
		{"sandbox.bulkverify.test", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"bulkverify.test", dns.TypeTXT, dns.RcodeSuccess, []string{`"v=spf1 ip4:127.0.0.1 -all"`}},
		{"bulkverify.test", dns.TypeMX, dns.RcodeSuccess, []string{"10 mx.mailhost.test."}},
		{"1.0.0.127.bl.mailsim.test", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.2"}},
		{"1.0.0.127.bl.mailsim.test", dns.TypeTXT, dns.RcodeSuccess, []string{`"127.0.0.1 is listed in the sandbox to show what a listing looks like"`}},
		{"2.0.0.127.bl.mailsim.test", dns.TypeA, dns.RcodeNameError, nil},
		{"2.0.0.127.zen.mailsim.test", dns.TypeA, dns.RcodeSuccess, []string{"127.255.255.254"}},
		{"9.9.9.9.zen.mailsim.test", dns.TypeTXT, dns.RcodeSuccess, nil},
		// The query comes from 127.0.0.1, which the name reflects.
		{"myaddr.mailsim.test", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"MyAddr.Mailsim.Test", dns.TypeTXT, dns.RcodeSuccess, []string{`"127.0.0.1"`}},
		{"myaddr.mailsim.test", dns.TypeAAAA, dns.RcodeSuccess, nil},
	}
	for _, tc := range tests {
		r := query(t, s, "udp", tc.name, tc.qtype, 1232)
		if r.Rcode != tc.rcode {
			t.Errorf("%s %s: rcode %s, want %s", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			continue
		}
		var got []string
		for _, rr := range r.Answer {
			if !strings.EqualFold(rr.Header().Name, dns.Fqdn(tc.name)) {
				t.Errorf("%s: answer owner %q", tc.name, rr.Header().Name)
			}
			got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s %s: answers %q, want %q", tc.name, dns.TypeToString[tc.qtype], got, tc.want)
		}
		if len(r.Answer) == 0 && tc.rcode != dns.RcodeServerFailure && len(r.Ns) == 0 {
			t.Errorf("%s %s: negative answer without SOA", tc.name, dns.TypeToString[tc.qtype])
		}
	}
}

func TestLongTXTIsSplitIntoStrings(t *testing.T) {
	t.Parallel()
	long := "v=spf1 " + strings.Repeat("ip4:127.0.0.1 ", 30) + "-all"
	s := startSim(t, World{Domains: []Domain{{Name: "long.test", TXT: []string{long}}}})
	r := query(t, s, "tcp", "long.test", dns.TypeTXT, 0)
	if len(r.Answer) != 1 {
		t.Fatalf("answers %v", r.Answer)
	}
	txt := r.Answer[0].(*dns.TXT).Txt
	if len(txt) < 2 || strings.Join(txt, "") != long {
		t.Errorf("strings %q do not join to the record", txt)
	}
}

func TestExtraRecordsRejectBadWorlds(t *testing.T) {
	t.Parallel()
	for name, w := range map[string]World{
		"PTR of a public address": {PTR: map[string]string{"192.0.2.1": "x.test"}},
		"PTR to a bad name":       {PTR: map[string]string{"127.0.0.1": "bad..name"}},
		"DNSBL listing not IPv4":  {DNSBLs: []DNSBL{{Zone: "bl.test", Listed: map[string]string{"::1": "127.0.0.2"}}}},
		"DNSBL zone twice":        {DNSBLs: []DNSBL{{Zone: "bl.test"}, {Zone: "BL.test."}}},
		"DNSBL bad refusal":       {DNSBLs: []DNSBL{{Zone: "bl.test", Refuse: "refused"}}},
		"block reply not refusal": {Hosts: []Host{{Name: "mx.test", IP: "127.0.3.1", BlockClients: []string{"127.0.0.1"}, BlockReply: Reply{Code: 250}}}},
		"block bad client":        {Hosts: []Host{{Name: "mx.test", IP: "127.0.3.1", BlockClients: []string{"nobody"}}}},
	} {
		if _, err := buildModel(w); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// dialFrom connects to ip from the local address src and reads the greeting.
func dialFrom(t *testing.T, s *Sim, ip, src string) (*rawClient, int, string) {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(s.SMTPPort())))
	if err != nil {
		t.Fatalf("dial %s from %s: %v", ip, src, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	c := &rawClient{t: t, conn: conn, tp: textproto.NewConn(conn)}
	code, msg := c.read()
	return c, code, msg
}

func TestBlockClients(t *testing.T) {
	t.Parallel()
	t.Run("at the greeting", func(t *testing.T) {
		t.Parallel()
		s := startSim(t, oneHostWorld("block", "127.0.3.10", Host{BlockClients: []string{"127.0.3.200"}}))
		c, code, msg := dialFrom(t, s, "127.0.3.10", "127.0.3.200")
		if code != 554 || msg != "5.7.1 Service unavailable; Client host [127.0.3.200] blocked using zen.spamhaus.org" {
			t.Fatalf("greeting %d %q", code, msg)
		}
		c.expect("EHLO client.test", 503, "5.5.1")
		c.expect("QUIT", 221, "")
		// Another client is served.
		c2, code, _ := dialFrom(t, s, "127.0.3.10", "127.0.3.201")
		if code != 220 {
			t.Fatalf("unblocked client greeted %d", code)
		}
		c2.expect("EHLO client.test", 250, "")
		c2.expect("MAIL FROM:<>", 250, "")
		c2.expect("RCPT TO:<alice@block.test>", 250, "")
		if n := s.ConnectionsFrom("mx.block.test", "127.0.3.200"); n != 1 {
			t.Errorf("ConnectionsFrom blocked client = %d, want 1", n)
		}
		if n := s.ConnectionsFrom("mx.block.test", "127.0.3.201"); n != 1 {
			t.Errorf("ConnectionsFrom other client = %d, want 1", n)
		}
		if n := s.ConnectionsFrom("mx.block.test", "127.0.3.202"); n != 0 {
			t.Errorf("ConnectionsFrom stranger = %d", n)
		}
	})
	t.Run("at RCPT with a custom reply", func(t *testing.T) {
		t.Parallel()
		reply := Reply{Code: 550, Enhanced: "5.7.606", Message: "Access denied, banned sending IP [{ip}]"}
		s := startSim(t, oneHostWorld("rblock", "127.0.3.11", Host{BlockClients: []string{"127.0.3.210"}, BlockReply: reply, BlockAtRcpt: true}))
		c, code, _ := dialFrom(t, s, "127.0.3.11", "127.0.3.210")
		if code != 220 {
			t.Fatalf("greeting %d", code)
		}
		c.expect("EHLO client.test", 250, "")
		c.expect("MAIL FROM:<>", 250, "")
		c.expect("RCPT TO:<alice@rblock.test>", 550, "5.7.606 Access denied, banned sending IP [127.0.3.210]")
		c.expect("RCPT TO:<nobody@rblock.test>", 550, "5.7.606")
	})
}

// RecipientClients tells which client asked about which recipient, and how
// often; without Options.RecordRecipients nothing is kept.
func TestRecipientClients(t *testing.T) {
	t.Parallel()
	w := oneHostWorld("rcpts", "127.0.3.20", Host{BlockClients: []string{"127.0.3.221"}, BlockAtRcpt: true})
	s, err := Start(t.Context(), w, Options{RecordRecipients: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, from := range []string{"127.0.3.220", "127.0.3.220", "127.0.3.221"} {
		c, code, _ := dialFrom(t, s, "127.0.3.20", from)
		if code != 220 {
			t.Fatalf("greeting %d", code)
		}
		c.expect("EHLO client.test", 250, "")
		c.expect("MAIL FROM:<>", 250, "")
		c.cmd("RCPT TO:<Alice@rcpts.test>")
		c.cmd("RCPT TO:<nobody@rcpts.test>")
		c.expect("QUIT", 221, "")
	}
	want := map[string]int{"127.0.3.220": 2, "127.0.3.221": 1} // refused ones are counted too
	for _, rcpt := range []string{"alice@rcpts.test", "ALICE@RCPTS.TEST", "nobody@rcpts.test"} {
		if got := s.RecipientClients("mx.rcpts.test", rcpt); !maps.Equal(got, want) {
			t.Errorf("RecipientClients(%s) = %v, want %v", rcpt, got, want)
		}
	}
	if got := s.RecipientClients("mx.rcpts.test", "bob@rcpts.test"); len(got) != 0 {
		t.Errorf("never asked: %v", got)
	}
	if got := s.RecipientClients("nowhere.test", "alice@rcpts.test"); len(got) != 0 {
		t.Errorf("unknown host: %v", got)
	}

	off := startSim(t, oneHostWorld("norcpts", "127.0.3.21", Host{}))
	c := dialSMTP(t, off, "127.0.3.21")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<alice@norcpts.test>", 250, "")
	if got := off.RecipientClients("mx.norcpts.test", "alice@norcpts.test"); len(got) != 0 {
		t.Errorf("kept without RecordRecipients: %v", got)
	}
}

// A ConcurrencyWatch counts the connections open at once over its hosts
// together, from when it began, and nothing of the other hosts.
func TestWatchConcurrency(t *testing.T) {
	t.Parallel()
	w := World{Hosts: []Host{
		{Name: "a.watch.test", IP: "127.0.3.30"},
		{Name: "b.watch.test", IP: "127.0.3.31"},
		{Name: "c.watch.test", IP: "127.0.3.32"},
	}}
	s := startSim(t, w)
	early := dialSMTP(t, s, "127.0.3.30") // open before the watch: counted as open
	ab := s.WatchConcurrency("a.watch.test", "B.watch.test.", "nowhere.test")
	if got := ab.Open(); got != 1 {
		t.Fatalf("Open at start = %d, want 1", got)
	}
	dialSMTP(t, s, "127.0.3.31")
	dialSMTP(t, s, "127.0.3.32") // not watched
	dialSMTP(t, s, "127.0.3.32")
	if got := ab.Max(); got != 2 {
		t.Errorf("Max = %d, want 2 (a and b)", got)
	}
	early.expect("QUIT", 221, "")
	if _, err := io.ReadAll(early.conn); err != nil {
		t.Fatal(err)
	}
	if got := ab.Open(); got != 1 {
		t.Errorf("Open after a quit = %d, want 1", got)
	}
	dialSMTP(t, s, "127.0.3.30")
	if got := ab.Max(); got != 2 {
		t.Errorf("Max = %d after closing one and opening one, want still 2", got)
	}
	dialSMTP(t, s, "127.0.3.30")
	if got := ab.Max(); got != 3 {
		t.Errorf("Max = %d, want 3", got)
	}
	if got := s.MaxConcurrentTotal(); got != 5 {
		t.Errorf("MaxConcurrentTotal = %d, want 5", got)
	}
}
