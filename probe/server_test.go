package probe

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// peer is the server side of a scripted conversation.
type peer struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// send writes raw bytes; a failed write is reported because every script
// expects the client to still be listening when it writes.
func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := p.c.Write([]byte(s)); err != nil {
		p.t.Errorf("server write %q: %v", s, err)
	}
}

// line reads one command line without CRLF.
func (p *peer) line() (string, error) {
	l, err := p.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// expect reads one line and checks that it is want exactly.
func (p *peer) expect(want string) bool {
	p.t.Helper()
	got, err := p.line()
	if err != nil {
		p.t.Errorf("server waiting for %q: %v", want, err)
		return false
	}
	if got != want {
		p.t.Errorf("server got %q, want %q", got, want)
		return false
	}
	return true
}

// greet plays banner and EHLO, advertising ext.
func (p *peer) greet(ext ...string) bool {
	p.t.Helper()
	p.send("220 mx.test ESMTP ready\r\n")
	if !p.expect("EHLO probe.test") {
		return false
	}
	var b strings.Builder
	b.WriteString("250")
	if len(ext) > 0 {
		b.WriteString("-")
	} else {
		b.WriteString(" ")
	}
	b.WriteString("mx.test greets probe.test\r\n")
	for i, e := range ext {
		sep := "-"
		if i == len(ext)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + e + "\r\n")
	}
	p.send(b.String())
	return true
}

// greetMail plays greet and accepts MAIL FROM:<>.
func (p *peer) greetMail(ext ...string) bool {
	p.t.Helper()
	if !p.greet(ext...) || !p.expect("MAIL FROM:<>") {
		return false
	}
	p.send("250 2.1.0 ok\r\n")
	return true
}

// drain waits for the client to go away, so the script does not close first.
// A client still connected when the script's safety net expires was waiting
// for something that never came (most likely one of its timeouts, which
// testConfig makes an hour long): that fails the test.
func (p *peer) drain() {
	buf := make([]byte, 512)
	for {
		if _, err := p.c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				p.t.Errorf("server: the client neither went on nor hung up within %v", safetyNet)
			}
			return
		}
	}
}

// safetyNet is how long a scripted server connection may last. It only keeps
// a broken test from hanging: no test waits for it.
const safetyNet = 30 * time.Second

// serve runs script on the first connection accepted on a fresh loopback
// listener and returns the address. Cleanup waits for the script to end.
func serve(t *testing.T, script func(p *peer)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Only a safety net so a broken test fails instead of hanging.
		_ = c.SetDeadline(time.Now().Add(safetyNet))
		script(&peer{t: t, c: c, r: bufio.NewReader(c)})
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

// testConfig's timeouts are an hour: a test that means to hit a timeout sets
// its own, short one, and a client that waits out a timeout it should not
// have waited for leaves the server's safety net to expire, which fails the
// test (see drain) instead of passing it a little later.
func testConfig() Config {
	return Config{
		HeloName:        "probe.test",
		ConnectTimeout:  time.Hour,
		GreetingTimeout: time.Hour,
		CommandTimeout:  time.Hour,
	}
}

// dial connects with cfg and closes the session at cleanup.
func dial(t *testing.T, addr string, cfg Config) *Session {
	t.Helper()
	s, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// returns runs f and fails the test if f has not returned within safetyNet:
// for a call that must end by itself (a dropped connection) while every
// timeout that could also end it is an hour away.
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(safetyNet):
		t.Fatalf("%s has not returned after %v: it waits for a timeout", what, safetyNet)
	}
}
