package resolve

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// reply scripts a test server: it gets the request, whether it came over
// TCP and how many times (name, type) has been asked so far including this
// one, and returns the response or nil to stay silent.
type reply func(req *dns.Msg, tcp bool, n int) *dns.Msg

// testServer is a real miekg/dns server on loopback that counts queries.
type testServer struct {
	addr string

	mu     sync.Mutex
	counts map[string]int // "name TYPE" -> queries over UDP and TCP
	tcp    map[string]int // "name TYPE" -> queries over TCP only
	reqs   []*dns.Msg
	from   []string // the source address of each request
}

func qkey(name string, qtype uint16) string {
	return strings.ToLower(dns.Fqdn(name)) + " " + dns.TypeToString[qtype]
}

// count returns how many queries for (name, qtype) the server received.
func (s *testServer) count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[qkey(name, qtype)]
}

func (s *testServer) tcpCount(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcp[qkey(name, qtype)]
}

func (s *testServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

// sources returns the source address of each request, in order.
func (s *testServer) sources() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.from...)
}

func (s *testServer) requests() []*dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*dns.Msg(nil), s.reqs...)
}

// startServer serves script on 127.0.0.1, over UDP and TCP on the same
// port, until the test ends.
func startServer(t *testing.T, script reply) *testServer {
	t.Helper()
	s := &testServer{counts: map[string]int{}, tcp: map[string]int{}}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, isTCP := w.RemoteAddr().(*net.TCPAddr)
		if len(req.Question) != 1 {
			return
		}
		k := qkey(req.Question[0].Name, req.Question[0].Qtype)
		s.mu.Lock()
		s.counts[k]++
		n := s.counts[k]
		if isTCP {
			s.tcp[k]++
		}
		s.reqs = append(s.reqs, req.Copy())
		s.from = append(s.from, w.RemoteAddr().String())
		s.mu.Unlock()
		if resp := script(req, isTCP, n); resp != nil {
			_ = w.WriteMsg(resp)
		}
	})
	pc, ln := listenPair(t)
	s.addr = pc.LocalAddr().String()
	serve(t, &dns.Server{PacketConn: pc, Handler: h})
	serve(t, &dns.Server{Listener: ln, Handler: h})
	return s
}

// listenPair binds UDP on an ephemeral port and TCP on the same port,
// retrying when another process holds that TCP port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil, nil
}

func serve(t *testing.T, srv *dns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownContext(ctx)
	})
}

// zone answers from a list of RRs in presentation format like a tiny
// recursive server: CNAMEs are followed and included, an SOA record goes
// into the authority section of negative answers, names with no records at
// all are NXDOMAIN.
func zone(t *testing.T, records ...string) reply {
	t.Helper()
	var rrs []dns.RR
	var soa dns.RR
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		if rr.Header().Rrtype == dns.TypeSOA {
			soa = rr
			continue
		}
		rrs = append(rrs, rr)
	}
	return func(req *dns.Msg, _ bool, _ int) *dns.Msg {
		q := req.Question[0]
		resp := new(dns.Msg)
		resp.SetReply(req)
		name := strings.ToLower(q.Name)
		for range 8 {
			exists, found, next := false, false, ""
			for _, rr := range rrs {
				if strings.ToLower(rr.Header().Name) != name {
					continue
				}
				exists = true
				switch c, isCNAME := rr.(*dns.CNAME); {
				case rr.Header().Rrtype == q.Qtype:
					resp.Answer = append(resp.Answer, rr)
					found = true
				case isCNAME:
					resp.Answer = append(resp.Answer, rr)
					next = strings.ToLower(c.Target)
				}
			}
			if found || next == "" {
				if !found {
					if !exists {
						resp.Rcode = dns.RcodeNameError
					}
					if soa != nil {
						resp.Ns = append(resp.Ns, soa)
					}
				}
				return resp
			}
			name = next
		}
		return resp
	}
}

// rcodeReply answers every query with rcode and nothing else.
func rcodeReply(rcode int) reply {
	return func(req *dns.Msg, _ bool, _ int) *dns.Msg {
		resp := new(dns.Msg)
		resp.SetRcode(req, rcode)
		return resp
	}
}

// failFirst answers the first n queries of each (name, type) with rcode,
// then hands over to next.
func failFirst(n, rcode int, next reply) reply {
	return func(req *dns.Msg, tcp bool, count int) *dns.Msg {
		if count <= n {
			return rcodeReply(rcode)(req, tcp, count)
		}
		return next(req, tcp, count)
	}
}

// fakeClock is a settable Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newTestResolver points a Resolver at the given servers with test-sized
// timeouts; fields set in cfg win.
func newTestResolver(t *testing.T, cfg Config, servers ...*testServer) *Resolver {
	t.Helper()
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, s.addr)
	}
	if cfg.Timeout == 0 {
		// Only a guard against a hang: the test servers answer at once,
		// and a test that waits for a timeout sets its own.
		cfg.Timeout = 10 * time.Second
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}
