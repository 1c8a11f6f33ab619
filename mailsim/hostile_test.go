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

				closeWithin(t, s, time.Second)
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after Close: %v, want the connection ended", err)
				}
			})
		}
	}
}

func TestRTT(t *testing.T) {
	t.Parallel()
	const (
		rtt = 50 * time.Millisecond
		n   = 10
	)
	s, err := Start(t.Context(), oneHostWorld("rtt", "127.0.2.80", Host{STARTTLS: true}), Options{RTT: rtt})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	within := func(what string, d, lo, hi time.Duration) {
		t.Helper()
		if d < lo || d >= hi {
			t.Errorf("%s took %v, want [%v, %v)", what, d, lo, hi)
		}
	}

	start := time.Now()
	c := dialSMTP(t, s, "127.0.2.80")
	within("banner", time.Since(start), rtt, n*rtt/2)
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")

	start = time.Now()
	for range n {
		c.expect("RCPT TO:<alice@rtt.test>", 250, "")
	}
	within(strconv.Itoa(n)+" lock-step RCPT", time.Since(start), n*rtt, 2*n*rtt)

	start = time.Now()
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = "RCPT TO:<bob@rtt.test>"
	}
	c.send(rcpts...)
	for range n {
		if code, msg := c.read(); code != 250 {
			t.Fatalf("pipelined: %d %s", code, msg)
		}
	}
	within(strconv.Itoa(n)+" pipelined RCPT", time.Since(start), rtt, n*rtt/2)

	// The last reply still arrives before the connection closes.
	c.expect("QUIT", 221, "")
	if b, err := io.ReadAll(c.conn); err != nil || len(b) > 0 {
		t.Errorf("after QUIT: %q, %v", b, err)
	}

	// The TLS handshake goes through the delayed writes too.
	c = dialSMTP(t, s, "127.0.2.80")
	c.expect("EHLO client.test", 250, "")
	c.expect("STARTTLS", 220, "")
	start = time.Now()
	tlsClient(t, c)
	c.expect("EHLO client.test", 250, "")
	within("handshake and EHLO", time.Since(start), 2*rtt, n*rtt)

	for _, network := range []string{"udp", "tcp"} {
		start := time.Now()
		r := query(t, s, network, "rtt.test", dns.TypeMX, 0)
		within(network+" DNS query", time.Since(start), rtt, n*rtt/2)
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
	closeWithin(t, s, time.Second)
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
	closeWithin(t, s, time.Second)

	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before Start, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}
