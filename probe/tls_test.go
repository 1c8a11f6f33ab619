package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// selfSigned returns a certificate for name, valid for an hour around now,
// and a pool that trusts it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// sniRecorder is a server TLS config that remembers the SNI names clients
// sent.
type sniRecorder struct {
	mu    sync.Mutex
	names []string
}

func (r *sniRecorder) config(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.Lock()
			r.names = append(r.names, h.ServerName)
			r.mu.Unlock()
			return nil, nil
		},
	}
}

func (r *sniRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

func count(tr, line string) int {
	n := 0
	for _, l := range strings.Split(tr, "\n") {
		if strings.HasPrefix(l, line) {
			n++
		}
	}
	return n
}

func TestStartTLSAgainstGoSMTP(t *testing.T) {
	cert, pool := selfSigned(t, "mx.test")
	tests := []struct {
		name       string
		mode       TLSMode
		clientConf *tls.Config
		serverName string
		offer      bool // server advertises STARTTLS
		wantTLS    bool
		wantTLSErr string // non-empty: Dial fails with a *TLSError of this reason
		greetings  []bool // server side: TLS state of each EHLO/HELO
	}{
		{name: "opportunistic upgrades", mode: TLSOpportunistic, offer: true, wantTLS: true,
			greetings: []bool{false, true}},
		{name: "verified with SNI", mode: TLSRequire, offer: true, wantTLS: true,
			clientConf: &tls.Config{RootCAs: pool}, serverName: "mx.test", greetings: []bool{false, true}},
		{name: "require, wrong name", mode: TLSRequire, offer: true,
			clientConf: &tls.Config{RootCAs: pool}, serverName: "other.test",
			wantTLSErr: "handshake failed", greetings: []bool{false}},
		{name: "opportunistic, wrong name reconnects in plaintext", mode: TLSOpportunistic, offer: true,
			clientConf: &tls.Config{RootCAs: pool}, serverName: "other.test", greetings: []bool{false, false}},
		{name: "require, not offered", mode: TLSRequire,
			wantTLSErr: "STARTTLS not offered", greetings: []bool{false}},
		{name: "opportunistic, not offered", mode: TLSOpportunistic, greetings: []bool{false}},
		{name: "off", mode: TLSOff, offer: true, greetings: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := &mailbox{known: map[string]bool{"known@example.test": true}}
			sni := &sniRecorder{}
			var srvConf *tls.Config
			if tt.offer {
				srvConf = sni.config(cert)
			}
			addr := startGoSMTP(t, be, srvConf)
			var tr bytes.Buffer
			cfg := testConfig()
			cfg.TLS = tt.mode
			cfg.TLSConfig = tt.clientConf
			cfg.TLSServerName = tt.serverName
			cfg.Transcript = &tr
			ctx := context.Background()

			s, err := Dial(ctx, addr, cfg)
			if tt.wantTLSErr != "" {
				var te *TLSError
				if !errors.As(err, &te) || te.Reason != tt.wantTLSErr {
					t.Fatalf("err = %v, want TLSError %q", err, tt.wantTLSErr)
				}
				if tt.wantTLSErr == "handshake failed" {
					var ve *tls.CertificateVerificationError
					if !errors.As(err, &ve) {
						t.Errorf("err = %v, want a certificate verification error inside", err)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("Dial: %v\n%s", err, tr.String())
				}
				defer s.Close()
				st, ok := s.TLS()
				if ok != tt.wantTLS {
					t.Fatalf("TLS() ok = %v, want %v\n%s", ok, tt.wantTLS, tr.String())
				}
				if ok && (!st.HandshakeComplete || st.Version < tls.VersionTLS12) {
					t.Errorf("TLS state = %+v", st)
				}
				// go-smtp stops advertising STARTTLS once on TLS: the
				// extensions must come from the second EHLO.
				if got, want := s.Supports("STARTTLS"), tt.offer && !tt.wantTLS; got != want {
					t.Errorf("Supports(STARTTLS) = %v, want %v: extensions not refreshed", got, want)
				}
				if r, err := s.Mail(ctx, false); err != nil || r.Code != 250 {
					t.Fatalf("Mail = %v, %v", r, err)
				}
				replies, err := s.RcptBatch(ctx, []string{"known@example.test", "nobody@example.test"})
				if err != nil || len(replies) != 2 || replies[0].Code != 250 || replies[1].Code != 550 || replies[1].Enhanced != "5.1.1" {
					t.Fatalf("RcptBatch = %v, %v", replies, err)
				}
				if err := s.Quit(ctx); err != nil {
					t.Fatal(err)
				}
			}

			trs := tr.String()
			be.mu.Lock()
			greetings, rcptTLS, rcpts := be.greetings, be.rcptTLS, be.rcpts
			be.mu.Unlock()
			if len(greetings) != len(tt.greetings) {
				t.Fatalf("server greetings (TLS state) = %v, want %v\n%s", greetings, tt.greetings, trs)
			}
			for i := range greetings {
				if greetings[i] != tt.greetings[i] {
					t.Errorf("server greetings (TLS state) = %v, want %v", greetings, tt.greetings)
				}
			}
			if tt.wantTLS && rcptTLS != rcpts {
				t.Errorf("%d of %d RCPT over TLS", rcptTLS, rcpts)
			}
			if !tt.wantTLS && rcptTLS != 0 {
				t.Errorf("%d RCPT over TLS on a plaintext session", rcptTLS)
			}
			sentSTARTTLS := count(trs, "C: STARTTLS")
			if tt.mode == TLSOff || !tt.offer {
				if sentSTARTTLS != 0 {
					t.Errorf("STARTTLS sent %d times", sentSTARTTLS)
				}
			} else if sentSTARTTLS != 1 {
				t.Errorf("STARTTLS sent %d times, want 1", sentSTARTTLS)
			}
			if got := count(trs, "C: EHLO"); got != len(tt.greetings) {
				t.Errorf("%d EHLO in transcript, want %d", got, len(tt.greetings))
			}
			if tt.wantTLS {
				if !strings.Contains(trs, "S: 220 2.0.0 Ready to start TLS") || !strings.Contains(trs, "* TLS handshake done: TLS 1.3 TLS_") {
					t.Errorf("transcript lacks the TLS upgrade:\n%s", trs)
				}
				if got := sni.get(); len(got) != 1 || got[0] != tt.serverName {
					t.Errorf("server saw SNI %q, want %q", got, tt.serverName)
				}
			}
		})
	}
}

// serveSeq runs scripts[i] on the i-th accepted connection, one connection
// after the other; a connection beyond the scripts is an error. accepted
// reports how many connections arrived.
func serveSeq(t *testing.T, scripts ...func(p *peer)) (addr string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			if i >= len(scripts) {
				t.Errorf("unexpected connection %d", i+1)
				c.Close()
				continue
			}
			_ = c.SetDeadline(time.Now().Add(safetyNet))
			scripts[i](&peer{t: t, c: c, r: bufio.NewReader(c)})
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String(), func() int { return int(n.Load()) }
}

// clientHello reads the TLS record header the client sends first and
// reports whether it is a handshake record, i.e. the client really started
// TLS.
func (p *peer) clientHello() bool {
	p.t.Helper()
	var h [5]byte
	if _, err := io.ReadFull(p.r, h[:]); err != nil {
		p.t.Errorf("server waiting for ClientHello: %v", err)
		return false
	}
	if h[0] != 0x16 {
		p.t.Errorf("first TLS byte %#x, want a handshake record", h[0])
		return false
	}
	return true
}

// plainSession is the script of a connection that must go to MAIL without
// STARTTLS although it is advertised.
func plainSession(p *peer) {
	if !p.greet("STARTTLS", "PIPELINING") || !p.expect("MAIL FROM:<>") {
		return
	}
	p.send("250 2.1.0 ok\r\n")
	if p.expect("RCPT TO:<a@b.test>") {
		p.send("250 2.1.5 ok\r\n")
	}
	p.drain()
}

func TestStartTLSScripted(t *testing.T) {
	garbage := "this is not TLS\r\n"
	tests := []struct {
		name    string
		mode    TLSMode
		scripts []func(p *peer)
		// wantTLSErr non-empty: Dial fails with a *TLSError of this reason;
		// wantReply non-zero: with a *ReplyError of this code.
		wantTLSErr string
		wantReply  int
		conns      int
		transcript []string // lines the transcript must contain
	}{
		{
			name: "garbage handshake, opportunistic reconnects",
			mode: TLSOpportunistic,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS", "PIPELINING") && p.expect("STARTTLS") {
						p.send("220 2.0.0 go ahead\r\n")
						if p.clientHello() {
							p.send(garbage)
						}
					}
					p.drain()
				},
				plainSession,
			},
			conns:      2,
			transcript: []string{"C: STARTTLS", "S: 220 2.0.0 go ahead", "* TLS handshake failed: ", "* reconnecting without TLS"},
		},
		{
			name: "data after 220, opportunistic reconnects",
			mode: TLSOpportunistic,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS", "PIPELINING") && p.expect("STARTTLS") {
						// One write, so the injected reply arrives with the 220.
						p.send("220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n")
					}
					p.drain()
				},
				plainSession,
			},
			conns:      2,
			transcript: []string{"* TLS handshake failed: probe: server sent 20 bytes after its STARTTLS reply"},
		},
		{
			name: "garbage handshake, require fails",
			mode: TLSRequire,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS") && p.expect("STARTTLS") {
						p.send("220 2.0.0 go ahead\r\n")
						if p.clientHello() {
							p.send(garbage)
						}
					}
					p.drain()
				},
			},
			wantTLSErr: "handshake failed",
			conns:      1,
		},
		{
			name: "454, opportunistic continues on the same connection",
			mode: TLSOpportunistic,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS", "PIPELINING") && p.expect("STARTTLS") {
						p.send("454 4.7.0 TLS not available due to temporary reason\r\n")
						if p.expect("MAIL FROM:<>") {
							p.send("250 2.1.0 ok\r\n")
							if p.expect("RCPT TO:<a@b.test>") {
								p.send("250 2.1.5 ok\r\n")
							}
						}
					}
					p.drain()
				},
			},
			conns:      1,
			transcript: []string{"S: 454 4.7.0 TLS not available due to temporary reason", "* STARTTLS refused, continuing without TLS"},
		},
		{
			name: "454, require fails and quits",
			mode: TLSRequire,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS") && p.expect("STARTTLS") {
						p.send("454 4.7.0 TLS not available\r\n")
						if p.expect("QUIT") {
							p.send("221 bye\r\n")
						}
					}
					p.drain()
				},
			},
			wantTLSErr: "STARTTLS refused",
			wantReply:  454,
			conns:      1,
		},
		{
			name: "421 to STARTTLS, opportunistic fails",
			mode: TLSOpportunistic,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("STARTTLS") && p.expect("STARTTLS") {
						p.send("421 4.3.2 shutting down\r\n")
					}
					p.drain()
				},
			},
			wantReply: 421,
			conns:     1,
		},
		{
			name: "not offered, require quits",
			mode: TLSRequire,
			scripts: []func(p *peer){
				func(p *peer) {
					if p.greet("PIPELINING") && p.expect("QUIT") {
						p.send("221 bye\r\n")
					}
					p.drain()
				},
			},
			wantTLSErr: "STARTTLS not offered",
			conns:      1,
		},
		{
			name: "HELO-only, require fails",
			mode: TLSRequire,
			scripts: []func(p *peer){
				func(p *peer) {
					p.send("220 mx.test\r\n")
					if p.expect("EHLO probe.test") {
						p.send("502 5.5.1 what\r\n")
						if p.expect("HELO probe.test") {
							p.send("250 mx.test\r\n")
							if p.expect("QUIT") {
								p.send("221 bye\r\n")
							}
						}
					}
					p.drain()
				},
			},
			wantTLSErr: "STARTTLS not offered",
			conns:      1,
		},
		{
			name: "HELO-only, opportunistic carries on",
			mode: TLSOpportunistic,
			scripts: []func(p *peer){
				func(p *peer) {
					p.send("220 mx.test\r\n")
					if p.expect("EHLO probe.test") {
						p.send("502 5.5.1 what\r\n")
						if p.expect("HELO probe.test") {
							p.send("250 mx.test\r\n")
							if p.expect("MAIL FROM:<>") {
								p.send("250 ok\r\n")
								if p.expect("RCPT TO:<a@b.test>") {
									p.send("250 ok\r\n")
								}
							}
						}
					}
					p.drain()
				},
			},
			conns: 1,
		},
		{
			name:    "off never sends STARTTLS",
			mode:    TLSOff,
			scripts: []func(p *peer){plainSession},
			conns:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, accepted := serveSeq(t, tt.scripts...)
			var tr bytes.Buffer
			cfg := testConfig()
			cfg.TLS = tt.mode
			cfg.Transcript = &tr
			// testConfig's timeouts are an hour: a Dial that waited for one
			// instead of reading what the server did would leave the
			// server's safety net to expire, which fails the test (drain).
			ctx := context.Background()
			s, err := Dial(ctx, addr, cfg)
			switch {
			case tt.wantTLSErr != "":
				var te *TLSError
				if !errors.As(err, &te) || te.Reason != tt.wantTLSErr {
					t.Fatalf("err = %v, want TLSError %q", err, tt.wantTLSErr)
				}
			case tt.wantReply == 0 && err != nil:
				t.Fatalf("Dial: %v\n%s", err, tr.String())
			}
			if tt.wantReply != 0 {
				var re *ReplyError
				if !errors.As(err, &re) || re.Command != "STARTTLS" || re.Reply.Code != tt.wantReply {
					t.Fatalf("err = %v, want STARTTLS ReplyError %d", err, tt.wantReply)
				}
			}
			if err == nil {
				defer s.Close()
				if _, ok := s.TLS(); ok {
					t.Error("TLS() = true")
				}
				if r, err := s.Mail(ctx, false); err != nil || r.Code != 250 {
					t.Fatalf("Mail = %v, %v", r, err)
				}
				if r, err := s.Rcpt(ctx, "a@b.test"); err != nil || r.Code != 250 {
					t.Fatalf("Rcpt = %v, %v", r, err)
				}
				s.Close()
			}
			for _, l := range tt.transcript {
				if !strings.Contains(tr.String(), l) {
					t.Errorf("transcript lacks %q:\n%s", l, tr.String())
				}
			}
			if tt.mode == TLSOff && count(tr.String(), "C: STARTTLS") != 0 {
				t.Errorf("STARTTLS sent in off mode:\n%s", tr.String())
			}
			if n := accepted(); n != tt.conns {
				t.Errorf("server saw %d connections, want %d", n, tt.conns)
			}
		})
	}
}

func TestStalledHandshake(t *testing.T) {
	stalledScript := func(stalled chan<- struct{}) func(p *peer) {
		return func(p *peer) {
			if p.greet("STARTTLS") && p.expect("STARTTLS") {
				p.send("220 2.0.0 go ahead\r\n")
				p.clientHello()
			}
			close(stalled)
			p.drain() // never answer the ClientHello
		}
	}
	tests := []struct {
		name    string
		mode    TLSMode
		timeout time.Duration // CommandTimeout
		cancel  bool          // cancel ctx once the server stalls
		want    error
		conns   int
	}{
		// The short timeouts also bound every other command of the test,
		// so they leave a loaded machine room; the hour-long ones can end
		// only by cancellation (or the server's safety net, which fails).
		{"require, command timeout", TLSRequire, time.Second, false, os.ErrDeadlineExceeded, 1},
		{"require, cancelled", TLSRequire, time.Hour, true, context.Canceled, 1},
		{"opportunistic, cancelled does not reconnect", TLSOpportunistic, time.Hour, true, context.Canceled, 1},
		{"opportunistic, command timeout reconnects", TLSOpportunistic, time.Second, false, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stalled := make(chan struct{})
			addr, accepted := serveSeq(t, stalledScript(stalled), plainSession)
			cfg := testConfig()
			cfg.TLS = tt.mode
			cfg.CommandTimeout = tt.timeout
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					<-stalled
					cancel()
				}()
			}
			start := time.Now()
			s, err := Dial(ctx, addr, cfg)
			d := time.Since(start)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer s.Close()
				if _, ok := s.TLS(); ok {
					t.Error("TLS() = true")
				}
				if r, err := s.Mail(ctx, false); err != nil || r.Code != 250 {
					t.Fatalf("Mail = %v, %v", r, err)
				}
				if r, err := s.Rcpt(ctx, "a@b.test"); err != nil || r.Code != 250 {
					t.Fatalf("Rcpt = %v, %v", r, err)
				}
			} else {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				var te *TLSError
				if (tt.mode == TLSRequire) != errors.As(err, &te) {
					t.Errorf("err = %v: TLSError only in require mode", err)
				}
			}
			if !tt.cancel && d < tt.timeout {
				t.Errorf("Dial returned after %v, before the %v timeout", d, tt.timeout)
			}
			if n := accepted(); n != tt.conns {
				t.Errorf("server saw %d connections, want %d", n, tt.conns)
			}
		})
	}
}

func TestParseTLSMode(t *testing.T) {
	tests := []struct {
		in   string
		want TLSMode
		ok   bool
	}{
		{"opportunistic", TLSOpportunistic, true},
		{"require", TLSRequire, true},
		{"off", TLSOff, true},
		{"Require", TLSRequire, true},
		{"", 0, false},
		{"on", 0, false},
		{"required", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseTLSMode(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseTLSMode(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && got.String() != strings.ToLower(tt.in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if s := TLSMode(7).String(); s != "TLSMode(7)" {
		t.Errorf("String of unknown mode = %q", s)
	}
}
