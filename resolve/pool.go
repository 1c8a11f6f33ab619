package resolve

import (
	"context"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// udpPool keeps UDP sockets to the servers for reuse. A query on a new
// socket costs a socket, a connect, a poller registration and a close on
// top of its write and read; a run asks ten thousand MX queries in a burst
// (C1), and those were most of its DNS time.
//
// Reuse is bounded, so that it does not weaken what protects answers from
// spoofing (RFC 5452: a random ID and a random source port): a socket
// serves at most udpReuse queries, one at a time, and is closed after any
// failure (a timed-out query's late answer must not wait on it for the
// next one; miekg/dns also drops answers whose ID is not the query's) and
// once idle for udpIdle. The pool holds at most udpIdleMax sockets per
// server.
type udpPool struct {
	client *dns.Client

	mu    sync.Mutex
	idle  map[string][]*pooledConn // by server
	n     int                      // sockets in idle
	sweep *time.Timer              // closes sockets idle too long; nil when none are idle
}

type pooledConn struct {
	co   *dns.Conn
	uses int
	at   time.Time // when it went idle
}

const (
	udpReuse   = 64
	udpIdle    = time.Second
	udpIdleMax = 64
)

func newUDPPool(client *dns.Client) *udpPool {
	return &udpPool{client: client, idle: map[string][]*pooledConn{}}
}

// exchange sends m to server and reads its answer, on a pooled socket if
// one is idle.
func (p *udpPool) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	pc := p.get(server)
	if pc == nil {
		co, err := p.client.DialContext(ctx, server)
		if err != nil {
			return nil, err
		}
		pc = &pooledConn{co: co}
	}
	pc.uses++
	resp, _, err := p.client.ExchangeWithConnContext(ctx, m, pc.co)
	if err != nil || pc.uses >= udpReuse {
		pc.co.Close()
		return resp, err
	}
	p.put(server, pc)
	return resp, nil
}

func (p *udpPool) get(server string) *pooledConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := p.idle[server]
	if len(conns) == 0 {
		return nil
	}
	pc := conns[len(conns)-1]
	conns[len(conns)-1] = nil
	p.idle[server] = conns[:len(conns)-1]
	p.n--
	return pc
}

func (p *udpPool) put(server string, pc *pooledConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[server]) >= udpIdleMax {
		pc.co.Close()
		return
	}
	pc.at = time.Now()
	p.idle[server] = append(p.idle[server], pc)
	p.n++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(udpIdle, p.closeIdle)
	}
}

// closeIdle closes the sockets idle for udpIdle, and comes back while some
// are left.
func (p *udpPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-udpIdle)
	for server, conns := range p.idle {
		kept := conns[:0]
		for _, pc := range conns {
			if pc.at.After(cutoff) {
				kept = append(kept, pc)
				continue
			}
			pc.co.Close()
			p.n--
		}
		clear(conns[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, server)
		} else {
			p.idle[server] = kept
		}
	}
	if p.n == 0 {
		p.sweep = nil
		return
	}
	p.sweep = time.AfterFunc(udpIdle, p.closeIdle)
}
