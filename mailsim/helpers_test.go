package mailsim

import (
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ioTimeout bounds every read, write and wait of these tests. It only guards
// against a hang, so it is generous: no test waits for it to pass, and a slow
// shared machine must never reach it. Where a test's point is that something
// is not delayed, the delay it rules out is far longer than this.
const ioTimeout = 30 * time.Second

func startSim(t *testing.T, w World) *Sim {
	t.Helper()
	s, err := Start(t.Context(), w, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// query asks the sim over network ("udp" or "tcp"); bufsize > 0 adds EDNS0.
func query(t *testing.T, s *Sim, network, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: network, Timeout: ioTimeout}
	if bufsize > 0 {
		c.UDPSize = bufsize
	} else {
		c.UDPSize = dns.MinMsgSize
	}
	r, _, err := c.Exchange(m, s.DNSAddr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rawClient speaks SMTP line by line, so tests control exactly what bytes the
// server sees.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
	// greeting is the text of the 220 banner.
	greeting string
}

func dialSMTP(t *testing.T, s *Sim, ip string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(s.SMTPPort())), ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", ip, err)
	}
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	c := &rawClient{t: t, conn: conn, tp: textproto.NewConn(conn)}
	t.Cleanup(func() { _ = conn.Close() })
	code, msg := c.read()
	if code != 220 {
		t.Fatalf("greeting from %s: %d %s", ip, code, msg)
	}
	c.greeting = msg
	return c
}

func (c *rawClient) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return te.Code, te.Msg
		}
		c.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// cmd sends one line and returns the reply, e.g. (550, "5.1.1 no such user").
func (c *rawClient) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	return c.read()
}

func (c *rawClient) expect(line string, wantCode int, wantMsgPrefix string) {
	c.t.Helper()
	code, msg := c.cmd(line)
	if code != wantCode || !strings.HasPrefix(msg, wantMsgPrefix) {
		c.t.Fatalf("%q: got %d %q, want %d %q...", line, code, msg, wantCode, wantMsgPrefix)
	}
}

// ipOf is the listening IP of a named host of w.
func ipOf(t *testing.T, w World, host string) string {
	t.Helper()
	for _, h := range w.Hosts {
		if h.Name == host {
			return h.IP
		}
	}
	t.Fatalf("no host %q", host)
	return ""
}

// dialRaw connects without reading the greeting.
func dialRaw(t *testing.T, s *Sim, ip string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(s.SMTPPort())), ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", ip, err)
	}
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn, tp: textproto.NewConn(conn)}
}

// send writes lines in one write, as a pipelining client does.
func (c *rawClient) send(lines ...string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

// ehlo greets and returns the reply code and the advertised extensions.
func (c *rawClient) ehlo() (int, []string) {
	c.t.Helper()
	code, msg := c.cmd("EHLO client.test")
	lines := strings.Split(msg, "\n")
	var ext []string
	for _, l := range lines[1:] {
		ext = append(ext, strings.Fields(l)[0])
	}
	return code, ext
}

// closeReturns closes s and fails if Close does not return. Each caller
// holds Close up with something that never ends by itself (a client that
// stays connected, an hour-long delay), so a Close that waits for it would
// never return; ioTimeout only keeps such a failure from hanging the run.
func closeReturns(t *testing.T, s *Sim) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatalf("Close did not return in %v: it waits for a client or a delay that never ends", ioTimeout)
	}
}

// waitGoroutines waits until no more goroutines run than before, failing
// with every stack if that does not happen within ioTimeout. Close waited
// for its goroutines; only the runtime's own bookkeeping may lag.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before Start, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// firstDone runs a and b at once and returns the index (0 or 1) of the one
// that returned first. Comparing two exchanges that run side by side, rather
// than timing one, keeps a loaded machine from failing a test: load slows
// both alike. A t.Fatal inside either ends only its goroutine; the caller
// should check t.Failed.
func firstDone(a, b func()) int {
	order := make(chan int, 2)
	for i, f := range []func(){a, b} {
		go func() {
			defer func() { order <- i }()
			f()
		}()
	}
	first := <-order
	<-order
	return first
}

// fakeClock is a clock for Options.Now that only moves when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// oneHostWorld is a domain "<name>.test" served by one host "mx.<name>.test"
// on ip, with mailboxes alice and bob.
func oneHostWorld(name, ip string, h Host) World {
	h.Name, h.IP = "mx."+name+".test", ip
	return World{
		Domains: []Domain{{Name: name + ".test", MX: []MX{{Preference: 10, Host: h.Name}}, Mailboxes: []string{"alice", "bob"}}},
		Hosts:   []Host{h},
	}
}

// tlsClient completes STARTTLS (after the 220) without verifying the
// certificate and makes c speak over TLS.
func tlsClient(t *testing.T, c *rawClient) {
	t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
}
