package resolve

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Queries share UDP sockets, a bounded number of queries each: a run's
// thousands of lookups do not open a socket apiece, and source ports still
// change as they go.
func TestUDPSocketsAreReusedBoundedly(t *testing.T) {
	srv := startServer(t, zone(t, soaRR))
	r := newTestResolver(t, Config{}, srv)
	const n = 5 * udpReuse
	for i := range n {
		if _, err := r.LookupMail(context.Background(), fmt.Sprintf("d%d.example.test", i)); err == nil {
			t.Fatalf("d%d.example.test: found, want NXDOMAIN", i)
		}
	}
	uses := map[string]int{}
	for _, from := range srv.sources() {
		uses[from]++
	}
	if len(srv.sources()) != n {
		t.Fatalf("%d queries, want %d", len(srv.sources()), n)
	}
	for from, k := range uses {
		if k > udpReuse {
			t.Errorf("%s sent %d queries, more than %d", from, k, udpReuse)
		}
	}
	if len(uses) < n/udpReuse || len(uses) > n/udpReuse+1 {
		t.Errorf("%d queries came from %d sockets, want about %d", n, len(uses), n/udpReuse)
	}
}

// A socket on which a query timed out is not used again: its late answer
// must not be waiting for the next query.
func TestUDPSocketIsDroppedAfterATimeout(t *testing.T) {
	srv := startServer(t, func(req *dns.Msg, _ bool, _ int) *dns.Msg {
		if req.Question[0].Name == "silent.example.test." {
			return nil
		}
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		return m
	})
	r := newTestResolver(t, Config{Timeout: 100 * time.Millisecond, Attempts: 1}, srv)
	ctx := context.Background()
	r.LookupMail(ctx, "before.example.test")
	if _, err := r.LookupMail(ctx, "silent.example.test"); err == nil {
		t.Fatal("a silent server answered")
	}
	r.LookupMail(ctx, "after.example.test")
	from := srv.sources()
	if len(from) != 3 || from[0] != from[1] || from[2] == from[1] {
		t.Errorf("sources %v: want the first two queries on one socket, the one after the timeout on another", from)
	}
}

// Idle sockets are closed after a while, even when the resolver is not
// used again.
func TestIdleUDPSocketsAreClosed(t *testing.T) {
	srv := startServer(t, zone(t, soaRR))
	r := newTestResolver(t, Config{}, srv)
	r.LookupMail(context.Background(), "d.example.test")
	idle := func() int {
		r.udp.mu.Lock()
		defer r.udp.mu.Unlock()
		return r.udp.n
	}
	if idle() != 1 {
		t.Fatalf("%d idle sockets after one query, want 1", idle())
	}
	waitFor(t, "the idle socket to be closed", func() bool { return idle() == 0 })
}
