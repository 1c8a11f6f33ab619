package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// probeCase is one run of "bulkverify probe" and what it must print.
type probeCase struct {
	name    string
	args    []string
	code    int
	verdict string   // prefix of the last stdout line; "" = no stdout at all
	suffix  string   // the verdict line contains this (from mx= on)
	has     []string // stdout lines that must appear (as prefixes)
	hasNot  []string // stdout lines that must not appear (as prefixes)
}

// run runs the CLI with args before the case's own and checks the result.
func (pc probeCase) run(t *testing.T, args ...string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, "", append(args, pc.args...)...)
	if code != pc.code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, pc.code, stdout, stderr)
	}
	if pc.verdict == "" {
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing", stdout)
		}
		if stderr == "" {
			t.Error("no explanation on stderr")
		}
		return
	}
	if !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout does not end in a line:\n%s", stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasSuffix(last, " tls=yes") && !strings.HasSuffix(last, " tls=no") {
		t.Errorf("verdict line does not end in tls=yes|no: %s", last)
	}
	if !strings.HasPrefix(last, pc.verdict) || !strings.Contains(last, pc.suffix) {
		t.Errorf("verdict line\n  %s\nwant prefix\n  %s\nand %q", last, pc.verdict, pc.suffix)
	}
	for _, want := range pc.has {
		if !hasLine(lines, want) {
			t.Errorf("stdout lacks a line starting %q:\n%s", want, stdout)
		}
	}
	for _, bad := range pc.hasNot {
		if hasLine(lines, bad) {
			t.Errorf("stdout has a line starting %q:\n%s", bad, stdout)
		}
	}
}

// TestProbeCommand runs against the sandbox's example world. It does not
// assume whether the example hosts offer STARTTLS; TestProbeCommandTLS does.
func TestProbeCommand(t *testing.T) {
	tests := []probeCase{
		{
			name:    "deliverable with transcript",
			args:    []string{"alice@acme.test", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@acme.test status=deliverable reason=accepted code=250 enhanced=2.0.0 message=",
			suffix:  " mx=mx1.acme.test tls=",
			has: []string{"* MX of acme.test:", "*   10 mx1.acme.test", "*   20 mx2.acme.test",
				"* connecting to mx1.acme.test [127.0.0.11:", "S: 220 ", "C: EHLO sandbox.bulkverify.test",
				"C: MAIL FROM:<>", "C: RCPT TO:<alice@acme.test>", "S: 250 ", "C: QUIT"},
			hasNot: []string{"C: DATA", "C: BDAT"},
		},
		{
			name:    "undeliverable, flags first",
			args:    []string{"--transcript", "zack@acme.test"},
			code:    exitOK,
			verdict: "address=zack@acme.test status=undeliverable reason=mailbox_unknown code=550 enhanced=5.1.1 message=\"no such user\"",
			suffix:  " mx=mx1.acme.test tls=",
			has:     []string{"C: RCPT TO:<zack@acme.test>", "S: 550 5.1.1 no such user"},
			hasNot:  []string{"C: DATA"},
		},
		{
			name:    "mailbox full, no transcript",
			args:    []string{"full@acme.test"},
			code:    exitOK,
			verdict: "address=full@acme.test status=risky reason=mailbox_full code=552 enhanced=5.2.2",
			hasNot:  []string{"C: ", "S: ", "* "},
		},
		{
			name:    "shared MX host",
			args:    []string{"peter@initech.test"},
			code:    exitOK,
			verdict: "address=peter@initech.test status=deliverable reason=accepted code=250",
			suffix:  " mx=mx.mailhost.test tls=",
		},
		{
			name:    "nonexistent domain is a verdict",
			args:    []string{"ned@nonexistent.test", "--transcript"},
			code:    exitOK,
			verdict: "address=ned@nonexistent.test status=invalid reason=nxdomain code= enhanced= message=\"\" mx= tls=no",
			has:     []string{"* MX lookup for nonexistent.test: "},
			hasNot:  []string{"C: "},
		},
		{
			name:    "null MX",
			args:    []string{"x@nullmx.test"},
			code:    exitOK,
			verdict: "address=x@nullmx.test status=invalid reason=null_mx",
		},
		{
			name:    "TLS off",
			args:    []string{"--tls=off", "bob@acme.test", "--transcript"},
			code:    exitOK,
			verdict: "address=bob@acme.test status=deliverable",
			suffix:  " tls=no",
			hasNot:  []string{"C: STARTTLS"},
		},
		{
			name:    "session times out",
			args:    []string{"sam@slow.test", "--timeout", "200ms"},
			code:    exitFatal,
			verdict: "address=sam@slow.test status=unknown reason=timeout",
			suffix:  " mx=mx.slow.test tls=",
		},
		{name: "syntax error", args: []string{"bad@@acme.test"}, code: exitUsage},
		{name: "address literal", args: []string{"a@[127.0.0.1]"}, code: exitUsage},
		{name: "no address", args: nil, code: exitUsage},
		{name: "two addresses", args: []string{"alice@acme.test", "bob@acme.test"}, code: exitUsage},
		{name: "bad --tls", args: []string{"alice@acme.test", "--tls", "maybe"}, code: exitUsage},
		{name: "unknown flag", args: []string{"alice@acme.test", "--nope"}, code: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, "probe", "--sandbox") })
	}
}

func hasLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestEscapingWriter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"S: 250 ok\n", "S: 250 ok\n"},
		{"S: 250 caf\u00e9 \u65e5\u672c\n", "S: 250 caf\u00e9 \u65e5\u672c\n"},
		{"S: 550 \x1b[2J\x1b]0;owned\x07\n", `S: 550 \x1b[2J\x1b]0;owned\a` + "\n"},
		{"S: 250 a\rb\tc\x00\n", `S: 250 a\rb\tc\x00` + "\n"},
		{"S: 250 \xff\xfe\n", `S: 250 \xff\xfe` + "\n"},
		{"S: 250 \u009b31m\n", `S: 250 \u009b31m` + "\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		n, err := (&escapingWriter{w: &b}).Write([]byte(tt.in))
		if err != nil || n != len(tt.in) {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", tt.in, n, err, len(tt.in))
		}
		if b.String() != tt.want {
			t.Errorf("Write(%q) wrote %q, want %q", tt.in, b.String(), tt.want)
		}
	}
}

// tlsWorld is a hand-made mail world for the STARTTLS cases, independent of
// the sandbox: a DNS server and two go-smtp servers on one port of two
// loopback addresses.
//
//	tls.test    MX 10 mx.tls.test    -> 127.0.0.1, offers STARTTLS
//	plain.test  MX 10 mx.plain.test  -> 127.0.0.2, does not
//	mixed.test  MX 10 mx.plain.test, MX 20 mx.tls.test
type tlsWorld struct {
	dnsAddr string
	port    int
	mu      sync.Mutex
	sni     []string // SNI names the TLS server saw
	rcptTLS []bool   // per RCPT at either server: over TLS?
}

func (w *tlsWorld) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &tlsWorldSession{w: w, c: c}, nil
}

type tlsWorldSession struct {
	w *tlsWorld
	c *smtp.Conn
}

func (s *tlsWorldSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *tlsWorldSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	_, isTLS := s.c.TLSConnectionState()
	s.w.mu.Lock()
	s.w.rcptTLS = append(s.w.rcptTLS, isTLS)
	s.w.mu.Unlock()
	if strings.HasPrefix(to, "alice@") {
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
}
func (s *tlsWorldSession) Data(io.Reader) error { return errors.New("DATA must never be sent") }
func (s *tlsWorldSession) Reset()               {}
func (s *tlsWorldSession) Logout() error        { return nil }

func startTLSWorld(t *testing.T) *tlsWorld {
	t.Helper()
	w := &tlsWorld{}
	lTLS, lPlain := listenPair(t, "127.0.0.1", "127.0.0.2")
	w.port = lTLS.Addr().(*net.TCPAddr).Port
	cert := selfSignedCert(t, "mx.tls.test")
	for _, l := range []net.Listener{lTLS, lPlain} {
		srv := smtp.NewServer(w)
		srv.Domain = "mx.test"
		srv.ErrorLog = log.New(io.Discard, "", 0)
		if l == lTLS {
			srv.TLSConfig = &tls.Config{
				Certificates: []tls.Certificate{cert},
				GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
					w.mu.Lock()
					w.sni = append(w.sni, h.ServerName)
					w.mu.Unlock()
					return nil, nil
				},
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(l)
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.dnsAddr = pc.LocalAddr().String()
	started := make(chan struct{})
	ds := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(answerTLSWorld), NotifyStartedFunc: func() { close(started) }}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = ds.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = ds.Shutdown()
		<-served
	})
	return w
}

// listenPair listens on the same free port of two loopback addresses.
func listenPair(t *testing.T, ip1, ip2 string) (net.Listener, net.Listener) {
	t.Helper()
	for range 20 {
		l1, err := net.Listen("tcp", ip1+":0")
		if err != nil {
			t.Fatal(err)
		}
		l2, err := net.Listen("tcp", net.JoinHostPort(ip2, strconv.Itoa(l1.Addr().(*net.TCPAddr).Port)))
		if err == nil {
			return l1, l2
		}
		l1.Close() // the port is taken on ip2: try another
	}
	t.Fatal("no port free on both addresses")
	return nil, nil
}

func answerTLSWorld(rw dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	hdr := func(name string, typ uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: 60}
	}
	mx := map[string][]*dns.MX{
		"tls.test.":   {{Hdr: hdr("tls.test.", dns.TypeMX), Preference: 10, Mx: "mx.tls.test."}},
		"plain.test.": {{Hdr: hdr("plain.test.", dns.TypeMX), Preference: 10, Mx: "mx.plain.test."}},
		"mixed.test.": {
			{Hdr: hdr("mixed.test.", dns.TypeMX), Preference: 10, Mx: "mx.plain.test."},
			{Hdr: hdr("mixed.test.", dns.TypeMX), Preference: 20, Mx: "mx.tls.test."},
		},
	}
	a := map[string]string{"mx.tls.test.": "127.0.0.1", "mx.plain.test.": "127.0.0.2"}
	if len(q.Question) == 1 {
		name := strings.ToLower(q.Question[0].Name)
		switch q.Question[0].Qtype {
		case dns.TypeMX:
			for _, rr := range mx[name] {
				m.Answer = append(m.Answer, rr)
			}
		case dns.TypeA:
			if ip, ok := a[name]; ok {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(name, dns.TypeA), A: net.ParseIP(ip)})
			}
		}
		if _, ok := mx[name]; !ok {
			if _, ok := a[name]; !ok {
				m.Rcode = dns.RcodeNameError
			}
		}
	}
	_ = rw.WriteMsg(m)
}

func selfSignedCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestProbeCommandTLS(t *testing.T) {
	tests := []struct {
		probeCase
		sni     []string // SNI names the TLS server must have seen
		rcptTLS []bool   // TLS state of each RCPT the servers saw
	}{
		{probeCase: probeCase{
			name:    "opportunistic upgrades",
			args:    []string{"alice@tls.test", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@tls.test status=deliverable reason=accepted code=250 ",
			suffix:  " mx=mx.tls.test tls=yes",
			has: []string{"C: STARTTLS", "S: 220 2.0.0 Ready to start TLS", "* TLS handshake done: TLS 1.3 ",
				"C: RCPT TO:<alice@tls.test>"},
			hasNot: []string{"C: DATA"},
		}, sni: []string{"mx.tls.test"}, rcptTLS: []bool{true}},
		{probeCase: probeCase{
			name:    "require, undeliverable over TLS",
			args:    []string{"--tls", "require", "zack@tls.test"},
			code:    exitOK,
			verdict: "address=zack@tls.test status=undeliverable reason=mailbox_unknown code=550 enhanced=5.1.1",
			suffix:  " mx=mx.tls.test tls=yes",
		}, sni: []string{"mx.tls.test"}, rcptTLS: []bool{true}},
		{probeCase: probeCase{
			name:    "off",
			args:    []string{"alice@tls.test", "--tls=off", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@tls.test status=deliverable",
			suffix:  " mx=mx.tls.test tls=no",
			hasNot:  []string{"C: STARTTLS"},
		}, rcptTLS: []bool{false}},
		{probeCase: probeCase{
			name:    "opportunistic, not offered",
			args:    []string{"alice@plain.test"},
			code:    exitOK,
			verdict: "address=alice@plain.test status=deliverable",
			suffix:  " mx=mx.plain.test tls=no",
		}, rcptTLS: []bool{false}},
		{probeCase: probeCase{
			name:    "require, not offered",
			args:    []string{"alice@plain.test", "--tls", "require", "--transcript"},
			code:    exitFatal,
			verdict: "address=alice@plain.test status=unknown reason=tls_unavailable code= ",
			suffix:  " mx=mx.plain.test tls=no",
			has:     []string{"C: QUIT", "* mx.plain.test: probe: TLS required: STARTTLS not offered"},
			hasNot:  []string{"C: STARTTLS", "C: MAIL"},
		}},
		{probeCase: probeCase{
			name:    "require skips to the MX that offers TLS",
			args:    []string{"alice@mixed.test", "--tls", "require", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@mixed.test status=deliverable",
			suffix:  " mx=mx.tls.test tls=yes",
			has:     []string{"* connecting to mx.plain.test [127.0.0.2:", "* connecting to mx.tls.test [127.0.0.1:"},
		}, sni: []string{"mx.tls.test"}, rcptTLS: []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startTLSWorld(t)
			tt.run(t, "probe", "--resolver", w.dnsAddr, "--port", strconv.Itoa(w.port), "--helo", "probe.test")
			w.mu.Lock()
			defer w.mu.Unlock()
			if !slices.Equal(w.sni, tt.sni) {
				t.Errorf("server saw SNI %q, want %q", w.sni, tt.sni)
			}
			if !slices.Equal(w.rcptTLS, tt.rcptTLS) {
				t.Errorf("RCPT over TLS: %v, want %v", w.rcptTLS, tt.rcptTLS)
			}
		})
	}
}
