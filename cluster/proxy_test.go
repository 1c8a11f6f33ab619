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

// dropper is a TCP proxy in front of a NATS server that drops the first
// messages a client sends on one subject: a request to JetStream lost the
// way one is when it finds no leader to answer it (a consumer just
// created, a leader being elected) or goes down with its leader. It reads
// the client's side of the protocol just enough to tell messages apart
// (PUB and HPUB with their payloads); everything else passes as it is.
type dropper struct {
	t       testing.TB
	ln      net.Listener
	target  string
	subject string

	mu   sync.Mutex
	drop int // messages still to drop
	seen int // messages on subject, dropped ones included
}

// pullSubject and infoSubject are where a client asks a consumer for
// messages and for its state.
func pullSubject(stream, consumer string) string {
	return "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
}
func infoSubject(stream, consumer string) string {
	return "$JS.API.CONSUMER.INFO." + stream + "." + consumer
}

func startDropper(t testing.TB, serverURL, subject string, drop int) *dropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropper{t: t, ln: ln, target: strings.TrimPrefix(serverURL, "nats://"), subject: subject, drop: drop}
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

func (p *dropper) URL() string { return "nats://" + p.ln.Addr().String() }

// sent returns how many messages on the subject the client sent.
func (p *dropper) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// dropNext makes the proxy drop the next n messages on the subject.
func (p *dropper) dropNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = n
}

func (p *dropper) clientToServer(c, s net.Conn) {
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

func (p *dropper) dropThis() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen++
	if p.drop > 0 {
		p.drop--
		return true
	}
	return false
}
