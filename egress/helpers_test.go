package egress

import (
	"context"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	socks5 "github.com/armon/go-socks5"
	"github.com/jonboulle/clockwork"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// newFakeClock is a settable Config.Now.
func newFakeClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
}

// socksServer is a real SOCKS5 server (github.com/armon/go-socks5) on
// loopback. Its outgoing connections leave from out, so the mail server can
// tell that a session came through it. While dead, it accepts and closes
// every connection at once, as a proxy whose process is wedged does.
type socksServer struct {
	addr     string
	out      string
	ln       net.Listener
	dead     atomic.Bool
	accepted atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

type socksOptions struct {
	out   string            // source address of outgoing connections, default 127.0.0.1
	users map[string]string // username -> password; nil = no authentication
	deny  bool              // refuse every CONNECT by rule (reply 2)
}

func startSOCKS(t testing.TB, o socksOptions) *socksServer {
	t.Helper()
	if o.out == "" {
		o.out = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &socksServer{addr: ln.Addr().String(), out: o.out, ln: ln}
	conf := &socks5.Config{
		Logger: log.New(io.Discard, "", 0),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.out)}}
			return d.DialContext(ctx, network, addr)
		},
	}
	if o.users != nil {
		conf.Credentials = socks5.StaticCredentials(o.users)
	}
	if o.deny {
		conf.Rules = denyAll{}
	}
	srv, err := socks5.New(conf)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			if s.dead.Load() {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go srv.ServeConn(c)
		}
	}()
	t.Cleanup(func() {
		s.stop()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

// stop closes the listener: new connections are refused.
func (s *socksServer) stop() { s.ln.Close() }

func (s *socksServer) url(userinfo string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return "socks5://" + userinfo + s.addr
}

type denyAll struct{}

func (denyAll) Allow(ctx context.Context, _ *socks5.Request) (context.Context, bool) {
	return ctx, false
}

// rawServer accepts connections and hands each to serve, for proxies that
// misbehave in ways a real one does not.
func rawServer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// mailWorld is a small world: ok.test is served by mx.ok.test, down.test's
// MX refuses connections.
func mailWorld() mailsim.World {
	return mailsim.World{
		Domains: []mailsim.Domain{
			{Name: "ok.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.ok.test"}}, Mailboxes: []string{"alice"}},
			{Name: "down.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.down.test"}}},
		},
		Hosts: []mailsim.Host{
			{Name: "mx.ok.test", IP: "127.0.4.10"},
			{Name: "mx.down.test", IP: "127.0.4.11", Down: true},
		},
	}
}

func startSim(t testing.TB, w mailsim.World) *mailsim.Sim {
	t.Helper()
	s, err := mailsim.Start(t.Context(), w, mailsim.Options{})
	if err != nil {
		t.Fatalf("mailsim: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("mailsim close: %v", err)
		}
	})
	return s
}

func hostport(s *mailsim.Sim, ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(s.SMTPPort()))
}

func newPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func newResolver(t *testing.T, s *mailsim.Sim) *resolve.Resolver {
	t.Helper()
	r, err := resolve.New(resolve.Config{Servers: []string{s.DNSAddr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// session opens an SMTP session through e to addr and quits it.
func session(t testing.TB, e *Egress, addr string) (*probe.Session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := probe.Dial(ctx, addr, probe.Config{HeloName: "client.test", Dial: e.DialContext, TLS: probe.TLSOff})
	if err != nil {
		return nil, err
	}
	_ = s.Quit(ctx)
	return s, nil
}
