package cluster

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// pullDropper is a TCP proxy in front of a NATS server that drops the
// first pull requests a client sends to one consumer, as a request is lost
// when it finds the consumer without a leader or goes down with its
// leader. It reads the client's side of the protocol just enough to tell
// messages apart (PUB and HPUB with their payloads); everything else
// passes as it is.
type pullDropper struct {
	t       testing.TB
	ln      net.Listener
	target  string
	subject string // the consumer's pull request subject

	mu    sync.Mutex
	drop  int // requests still to drop
	pulls int // requests seen, dropped ones included
}

func startPullDropper(t testing.TB, serverURL, stream, consumer string, drop int) *pullDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pullDropper{t: t, ln: ln, target: strings.TrimPrefix(serverURL, "nats://"),
		subject: "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer, drop: drop}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, nil)
			conns.Store(s, nil)
			wg.Go(func() { io.Copy(c, s); c.Close() })
			wg.Go(func() { p.clientToServer(c, s); s.Close() })
		}
	})
	return p
}

func (p *pullDropper) URL() string { return "nats://" + p.ln.Addr().String() }

// pullsSeen returns how many pull requests to the consumer the client sent.
func (p *pullDropper) pullsSeen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pulls
}

func (p *pullDropper) clientToServer(c, s net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		var payload []byte
		if len(f) >= 3 && (strings.EqualFold(f[0], "PUB") || strings.EqualFold(f[0], "HPUB")) {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload = make([]byte, n+2) // and its CRLF
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			if f[1] == p.subject && p.dropThis() {
				continue
			}
		}
		if _, err := s.Write(append([]byte(line), payload...)); err != nil {
			return
		}
	}
}

func (p *pullDropper) dropThis() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pulls++
	if p.drop > 0 {
		p.drop--
		return true
	}
	return false
}
