package mailsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestHostile checks each hostile mode from a client's side, then that Close
// returns promptly while that client is still connected and not reading.
func TestHostile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		host  Host
		check func(t *testing.T, c net.Conn, br *bufio.Reader)
	}{
		{"silent", Host{Hostile: HostileSilent}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			if b, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %q, %v; want silence", b, err)
			}
		}},
		{"reset after banner", Host{Hostile: HostileResetAfterBanner}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 mx.hostile.test ") {
				t.Fatalf("banner %q, %v", line, err)
			}
			if _, err := io.WriteString(c, "EHLO client.test\r\n"); err != nil {
				t.Fatal(err)
			}
			if _, err := br.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after EHLO: %v, want ECONNRESET", err)
			}
		}},
		{"endless reply", Host{Hostile: HostileEndlessReply}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("banner %q, %v", line, err)
			}
			if _, err := io.WriteString(c, "EHLO client.test\r\n"); err != nil {
				t.Fatal(err)
			}
			for i := range 20000 {
				line, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "250-") {
					t.Fatalf("line %d: %q, %v", i, line, err)
				}
			}
		}},
		{"huge line", Host{Hostile: HostileHugeLine}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			n := 0
			for {
				chunk, err := br.ReadSlice('\n')
				if n == 0 && !bytes.HasPrefix(chunk, []byte("220 x")) {
					t.Fatalf("banner starts %q", chunk[:min(len(chunk), 10)])
				}
				n += len(chunk)
				if err == nil {
					break
				}
				if !errors.Is(err, bufio.ErrBufferFull) {
					t.Fatalf("after %d bytes: %v", n, err)
				}
				if n > HugeLineSize+100 {
					t.Fatalf("no line end after %d bytes", n)
				}
			}
			if want := len("220 ") + HugeLineSize + len("\r\n"); n != want {
				t.Fatalf("banner line of %d bytes, want %d", n, want)
			}
		}},
		{"never ends", Host{Hostile: HostileNeverEnds}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			start := time.Now()
			b := make([]byte, len("220 xxx"))
			if _, err := io.ReadFull(br, b); err != nil || string(b) != "220 xxx" {
				t.Fatalf("read %q, %v", b, err)
			}
			if d := time.Since(start); d < 2*neverEndsInterval {
				t.Errorf("3 bytes after the code in %v; want a trickle", d)
			}
		}},
		{"banner delay", Host{BannerDelay: time.Hour}, func(t *testing.T, c net.Conn, br *bufio.Reader) {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if b, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %q, %v; want no banner yet", b, err)
			}
		}},
	}
	for i, tc := range tests {
		for j, rtt := range []time.Duration{0, 20 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/rtt=%v", tc.name, rtt), func(t *testing.T) {
				t.Parallel()
				ip := fmt.Sprintf("127.0.3.%d", 2*i+j+1)
				s, err := Start(t.Context(), oneHostWorld("hostile", ip, tc.host), Options{RTT: rtt})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(s.SMTPPort())), ioTimeout)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				tc.check(t, c, bufio.NewReader(c))

				closeReturns(t, s)
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after Close: %v, want the connection ended", err)
				}
			})
		}
	}
}

// TestRTT checks the injected latency without timing anything against a
// fixed limit: every exchange takes at least its round trips (a lower bound,
// which load cannot break: a delayed write never arrives early), and what
// must not take more than that is raced against a reference exchange of a
// few round trips started at the same moment on another connection, which
// load slows as much.
func TestRTT(t *testing.T) {
	t.Parallel()
	const (
		rtt = 100 * time.Millisecond
		n   = 10
	)
	s, err := Start(t.Context(), oneHostWorld("rtt", "127.0.2.80", Host{STARTTLS: true}), Options{RTT: rtt})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	atLeast := func(what string, d, lo time.Duration) {
		t.Helper()
		if d < lo {
			t.Errorf("%s took %v, want at least %v", what, d, lo)
		}
	}
	// lockStep makes k exchanges of one command and one reply on c.
	lockStep := func(c *rawClient, k int) {
		for range k {
			c.expect("RCPT TO:<bob@rtt.test>", 250, "")
		}
	}
	// dnsQueries asks k queries one after another, each one RTT.
	dnsQueries := func(k int) {
		for i := range k {
			network := []string{"udp", "tcp"}[i%2]
			if r := query(t, s, network, "rtt.test", dns.TypeMX, 0); len(r.Answer) != 1 {
				t.Errorf("%s answer %v", network, r.Answer)
			}
		}
	}
	openRef := func() *rawClient {
		ref := dialSMTP(t, s, "127.0.2.80")
		ref.expect("EHLO client.test", 250, "")
		ref.expect("MAIL FROM:<>", 250, "")
		return ref
	}

	start := time.Now()
	c := dialSMTP(t, s, "127.0.2.80")
	atLeast("banner", time.Since(start), rtt)
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")

	// Lock-step: one RTT per exchange, not two: n exchanges end before
	// 3n/2 DNS queries (one RTT each) asked from the same moment.
	var lock, seq time.Duration
	first := firstDone(func() {
		start := time.Now()
		for range n {
			c.expect("RCPT TO:<alice@rtt.test>", 250, "")
		}
		lock = time.Since(start)
	}, func() {
		start := time.Now()
		dnsQueries(3 * n / 2)
		seq = time.Since(start)
	})
	if t.Failed() {
		t.FailNow()
	}
	atLeast(strconv.Itoa(n)+" lock-step RCPT", lock, n*rtt)
	atLeast(strconv.Itoa(3*n/2)+" DNS queries", seq, 3*n/2*rtt)
	if first != 0 {
		t.Errorf("%d lock-step RCPT (%v) ended after %d DNS queries of one RTT each (%v): more than one RTT per exchange", n, lock, 3*n/2, seq)
	}

	// Pipelined: the n replies arrive together after one RTT, not one RTT
	// each: all of them are in before another connection has made n/2
	// lock-step exchanges begun at the same moment.
	ref := openRef()
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = "RCPT TO:<bob@rtt.test>"
	}
	var piped time.Duration
	first = firstDone(func() {
		start := time.Now()
		c.send(rcpts...)
		for range n {
			if code, msg := c.read(); code != 250 {
				t.Errorf("pipelined: %d %s", code, msg)
				return
			}
		}
		piped = time.Since(start)
	}, func() { lockStep(ref, n/2) })
	if t.Failed() {
		t.FailNow()
	}
	atLeast(strconv.Itoa(n)+" pipelined RCPT", piped, rtt)
	if first != 0 {
		t.Errorf("%d pipelined RCPT (%v) ended after %d lock-step exchanges on another connection: the replies were serialised", n, piped, n/2)
	}

	// The last reply still arrives before the connection closes.
	c.expect("QUIT", 221, "")
	if b, err := io.ReadAll(c.conn); err != nil || len(b) > 0 {
		t.Errorf("after QUIT: %q, %v", b, err)
	}

	// The TLS handshake goes through the delayed writes too: it and the
	// EHLO after it take at least two RTT, and a server flight written at
	// once arrives at once, so they end before n/2 lock-step exchanges.
	c = dialSMTP(t, s, "127.0.2.80")
	c.expect("EHLO client.test", 250, "")
	c.expect("STARTTLS", 220, "")
	ref = openRef()
	var hs time.Duration
	first = firstDone(func() {
		start := time.Now()
		tlsClient(t, c)
		c.expect("EHLO client.test", 250, "")
		hs = time.Since(start)
	}, func() { lockStep(ref, n/2) })
	if t.Failed() {
		t.FailNow()
	}
	atLeast("handshake and EHLO", hs, 2*rtt)
	if first != 0 {
		t.Errorf("handshake and EHLO (%v) ended after %d lock-step exchanges on another connection", hs, n/2)
	}

	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r := query(t, s, network, "rtt.test", dns.TypeMX, 0)
		atLeast(network+" DNS query", time.Since(start), rtt)
		if len(r.Answer) != 1 {
			t.Errorf("%s answer %v", network, r.Answer)
		}
	}
}

// TestCloseDuringRTT shows Close does not wait for delayed DNS answers or
// SMTP replies.
func TestCloseDuringRTT(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), oneHostWorld("slow", "127.0.2.81", Host{}), Options{RTT: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, s, "127.0.2.81") // its banner is an hour away
	c.send("EHLO client.test")
	m := new(dns.Msg)
	m.SetQuestion("slow.test.", dns.TypeMX)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.Dial("udp", s.DNSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if _, err := udp.Write(q); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(ioTimeout); s.TotalDNSQueries() == 0 || s.Commands("mx.slow.test", "EHLO") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the query or the EHLO never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	closeReturns(t, s)
	if b, err := io.ReadAll(c.conn); len(b) > 0 {
		t.Errorf("after Close the client read %q (%v)", b, err)
	}
	_ = udp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := udp.Read(make([]byte, 512)); err == nil {
		t.Errorf("the DNS query was answered after Close (%d bytes)", n)
	}
}

// TestCloseReleasesEverythingWithBehaviours is TestCloseReleasesEverything
// for the connection stacks the behaviours add: delayed writes, TLS and the
// hostile goroutines.
func TestCloseReleasesEverythingWithBehaviours(t *testing.T) {
	before := runtime.NumGoroutine()
	w := World{
		Domains: []Domain{{Name: "all.test", MX: []MX{{Preference: 1, Host: "tls.all.test"}}, CatchAll: true}},
		Hosts: []Host{
			{Name: "tls.all.test", IP: "127.0.3.31", STARTTLS: true},
			{Name: "silent.all.test", IP: "127.0.3.32", Hostile: HostileSilent},
			{Name: "endless.all.test", IP: "127.0.3.33", Hostile: HostileEndlessReply},
			{Name: "huge.all.test", IP: "127.0.3.34", Hostile: HostileHugeLine},
			{Name: "trickle.all.test", IP: "127.0.3.35", Hostile: HostileNeverEnds},
			{Name: "reset.all.test", IP: "127.0.3.36", Hostile: HostileResetAfterBanner},
		},
	}
	s, err := Start(t.Context(), w, Options{RTT: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, s, "127.0.3.31")
	c.expect("EHLO client.test", 250, "")
	c.expect("STARTTLS", 220, "")
	tlsClient(t, c)
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.send("RCPT TO:<a@all.test>") // its reply is still queued at Close
	for _, h := range w.Hosts[1:] {
		c := dialRaw(t, s, h.IP)
		c.send("EHLO client.test")
	}
	for deadline := time.Now().Add(ioTimeout); s.TotalConnections() < len(w.Hosts) || s.Commands("tls.all.test", "RCPT") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the clients never got through")
		}
		time.Sleep(time.Millisecond)
	}
	closeReturns(t, s)
	waitGoroutines(t, before)
}
