package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	env := map[string]string{"PROXY_PASS": "from-env", "PROXY_USER": "envuser"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name    string
		cfg     Config
		names   []string
		wantErr string
	}{
		{name: "zero config: one direct egress", names: []string{"direct"}},
		{
			name:  "source addresses, then proxies without credentials in the name",
			cfg:   Config{SourceIPs: []string{"127.0.0.5", "::1"}, Proxies: []string{"socks5://u:p@Proxy.Example:1080", "SOCKS5://[::1]:1081"}},
			names: []string{"127.0.0.5", "::1", "socks5://proxy.example:1080", "socks5://[::1]:1081"},
		},
		{
			name:  "the same proxy twice (other users) gets numbered names",
			cfg:   Config{Proxies: []string{"socks5://a:x@p.example:1080", "socks5://b:y@p.example:1080"}},
			names: []string{"socks5://p.example:1080", "socks5://p.example:1080#2"},
		},
		{
			name:  "credentials from the environment",
			cfg:   Config{Proxies: []string{"socks5://${PROXY_USER}:${PROXY_PASS}@p.example:1080"}, LookupEnv: lookup},
			names: []string{"socks5://p.example:1080"},
		},
		{name: "unset variable", cfg: Config{Proxies: []string{"socks5://u:${NOPE}@p.example:1080"}, LookupEnv: lookup}, wantErr: "$NOPE, which is not set"},
		{name: "no environment", cfg: Config{Proxies: []string{"socks5://u:${PROXY_PASS}@p.example:1080"}}, wantErr: "no environment"},
		{name: "http proxy", cfg: Config{Proxies: []string{"http://p.example:8080"}}, wantErr: "want socks5://"},
		{name: "no port", cfg: Config{Proxies: []string{"socks5://u:secret@p.example"}}, wantErr: `"socks5://u:xxxxx@p.example": want host:port`},
		{name: "bad port", cfg: Config{Proxies: []string{"socks5://p.example:99999"}}, wantErr: "bad port"},
		{name: "path", cfg: Config{Proxies: []string{"socks5://p.example:1080/x"}}, wantErr: "no path"},
		{name: "empty user", cfg: Config{Proxies: []string{"socks5://:secret@p.example:1080"}}, wantErr: "user must be"},
		{name: "bad escape", cfg: Config{Proxies: []string{"socks5://u:%zz@p.example:1080"}}, wantErr: "percent-encoding in the password"},
		{name: "not an address", cfg: Config{SourceIPs: []string{"eth0"}}, wantErr: "not an IP address"},
		{name: "unspecified", cfg: Config{SourceIPs: []string{"0.0.0.0"}}, wantErr: "cannot be bound"},
		{name: "twice", cfg: Config{SourceIPs: []string{"127.0.0.5", "127.0.0.5"}}, wantErr: "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range p.Egresses() {
				names = append(names, e.Name())
				if p.Lookup(e.Name()) != e {
					t.Errorf("Lookup(%q) is not the egress", e.Name())
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.names) {
				t.Errorf("names %q, want %q", names, tc.names)
			}
		})
	}
}

func TestProxyCredentialsFromEnvironmentAreUsed(t *testing.T) {
	sim := startSim(t, mailWorld())
	proxy := startSOCKS(t, socksOptions{users: map[string]string{"alice": "from-env"}})
	p := newPool(t, Config{
		Proxies:   []string{"socks5://alice:${BV_TEST_PASS}@" + proxy.addr},
		LookupEnv: func(k string) (string, bool) { return "from-env", k == "BV_TEST_PASS" },
	})
	if _, err := session(t, p.Egresses()[0], hostport(sim, "127.0.4.10")); err != nil {
		t.Fatalf("session through the proxy: %v", err)
	}
}

// Sessions rotate over the source addresses, one connection each in turn,
// as the mail server sees them.
func TestSourceAddressRotation(t *testing.T) {
	sim := startSim(t, mailWorld())
	sources := []string{"127.0.4.51", "127.0.4.52", "127.0.4.53"}
	p := newPool(t, Config{SourceIPs: sources})
	for i := range 6 {
		e, err := p.Pick("ok-operator")
		if err != nil {
			t.Fatal(err)
		}
		if want := sources[i%3]; e.Name() != want {
			t.Errorf("pick %d: %s, want %s", i, e.Name(), want)
		}
		if _, err := session(t, e, hostport(sim, "127.0.4.10")); err != nil {
			t.Fatalf("session from %s: %v", e.Name(), err)
		}
	}
	for i, src := range sources {
		if n := sim.ConnectionsFrom("mx.ok.test", src); n != 2 {
			t.Errorf("server saw %d connections from %s, want 2", n, src)
		}
		if st := p.Stats()[i]; st.Connected != 2 || st.Dials != 2 || st.State != StateUsable {
			t.Errorf("stats of %s: %+v", src, st)
		}
	}
	if n := sim.Connections("mx.ok.test"); n != 6 {
		t.Errorf("%d connections in all, want 6", n)
	}
}

// Through the proxy, the server sees the proxy's address, the session's
// remote address is the target's, and the proxy reports the address it
// bound for us.
func TestSessionThroughProxy(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			sim := startSim(t, mailWorld())
			o := socksOptions{out: "127.0.4.61"}
			userinfo := ""
			if auth {
				o.out = "127.0.4.62"
				o.users = map[string]string{"alice": "s3cret"}
				userinfo = "alice:s3cret"
			}
			proxy := startSOCKS(t, o)
			p := newPool(t, Config{Proxies: []string{proxy.url(userinfo)}})
			e, err := p.Pick("")
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind() != SOCKS5 || e.Name() != "socks5://"+proxy.addr {
				t.Errorf("egress %v kind %v", e, e.Kind())
			}
			target := hostport(sim, "127.0.4.10")
			s, err := session(t, e, target)
			if err != nil {
				t.Fatalf("session: %v", err)
			}
			if s.RemoteAddr() != target {
				t.Errorf("session remote address %s, want the target %s", s.RemoteAddr(), target)
			}
			if n := sim.ConnectionsFrom("mx.ok.test", o.out); n != 1 {
				t.Errorf("server saw %d connections from the proxy's %s, want 1", n, o.out)
			}
			if n := sim.ConnectionsFrom("mx.ok.test", "127.0.0.1"); n != 0 {
				t.Errorf("server saw %d direct connections", n)
			}
			st := p.Stats()[0]
			if st.Connected != 1 || st.BoundAddr.String() != o.out {
				t.Errorf("stats %+v, want 1 connection and bound address %s", st, o.out)
			}
		})
	}
}

func TestProxyFailures(t *testing.T) {
	sim := startSim(t, mailWorld())
	closed := startSOCKS(t, socksOptions{})
	closed.stop()
	hangup := startSOCKS(t, socksOptions{})
	hangup.dead.Store(true)
	authed := startSOCKS(t, socksOptions{users: map[string]string{"alice": "right"}})
	deny := startSOCKS(t, socksOptions{deny: true})
	garbage := rawServer(t, func(c net.Conn) {
		_, _ = io.ReadFull(c, make([]byte, 3))
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
	})
	generalFailure := rawServer(t, func(c net.Conn) {
		b := make([]byte, 3)
		_, _ = io.ReadFull(c, b)
		_, _ = c.Write([]byte{5, 0})
		_, _ = io.ReadFull(c, make([]byte, 10)) // the CONNECT request for an IPv4 target
		_, _ = c.Write([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0})
	})
	silent := rawServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })

	tests := []struct {
		name   string
		proxy  string
		target string
		step   string // for a *ProxyError
		code   int
		is     error
		// target errors instead
		targetCode int
		errno      syscall.Errno
	}{
		{name: "proxy not listening", proxy: closed.url(""), step: "connect", is: syscall.ECONNREFUSED},
		{name: "proxy hangs up at once", proxy: hangup.url(""), step: "greeting"}, // EOF or ECONNRESET
		{name: "not a SOCKS5 server", proxy: "socks5://" + garbage, step: "greeting", is: ErrNotSOCKS5},
		{name: "wrong password", proxy: authed.url("alice:WRONG-pw"), step: "auth", is: ErrProxyAuth},
		{name: "credentials needed", proxy: authed.url(""), step: "auth", is: ErrProxyNeedsAuth},
		{name: "not allowed by ruleset", proxy: deny.url(""), step: "request", code: 2},
		{name: "general failure", proxy: "socks5://" + generalFailure, step: "request", code: 1},
		{name: "silent proxy", proxy: "socks5://" + silent, step: "greeting", is: os.ErrDeadlineExceeded},
		{name: "target refuses", proxy: authed.url("alice:right"), target: "127.0.4.11", targetCode: 5, errno: syscall.ECONNREFUSED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, Config{Proxies: []string{tc.proxy}})
			e := p.Egresses()[0]
			target := cmpOr(tc.target, "127.0.4.10")
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			conn, err := e.DialContext(ctx, "tcp", hostport(sim, target))
			if err == nil {
				conn.Close()
				t.Fatal("dial succeeded")
			}
			if strings.Contains(err.Error(), "WRONG-pw") || strings.Contains(err.Error(), "right") {
				t.Errorf("error shows the password: %v", err)
			}
			st := p.Stats()[0]
			if tc.errno != 0 {
				var te *TargetError
				if !errors.As(err, &te) || te.Code != tc.targetCode || !errors.Is(err, tc.errno) {
					t.Fatalf("err = %v, want a TargetError with SOCKS reply %d and %v", err, tc.targetCode, tc.errno)
				}
				if st.TargetFailures != 1 || st.EgressFailures != 0 || st.ConsecutiveFailures != 0 {
					t.Errorf("a refusal by the target counted against the proxy: %+v", st)
				}
				return
			}
			var pe *ProxyError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want a *ProxyError", err, err)
			}
			if pe.Step != tc.step || pe.Code != tc.code || pe.Proxy != e.Name() {
				t.Errorf("ProxyError %+v, want step %q code %d proxy %q", pe, tc.step, tc.code, e.Name())
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			if st.EgressFailures != 1 || st.ConsecutiveFailures != 1 {
				t.Errorf("stats %+v, want one egress failure", st)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// A proxy that dies mid-run goes out of rotation after FailureThreshold
// failures, and comes back when its cool-down has passed; its cool-down
// doubles when it fails again at once, and resets after a success.
func TestProxyDiesAndComesBack(t *testing.T) {
	sim := startSim(t, mailWorld())
	proxy := startSOCKS(t, socksOptions{out: "127.0.4.71"})
	clock := newFakeClock()
	p := newPool(t, Config{
		SourceIPs:        []string{"127.0.4.72"},
		Proxies:          []string{proxy.url("")},
		FailureThreshold: 2,
		CoolDown:         time.Minute,
		Now:              clock.Now,
	})
	direct, viaProxy := p.Egresses()[0], p.Egresses()[1]
	target := hostport(sim, "127.0.4.10")

	pickAll := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			e, err := p.Pick("op")
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			got[e.Name()]++
		}
		return got
	}
	if got := pickAll(4); got[viaProxy.Name()] != 2 || got[direct.Name()] != 2 {
		t.Fatalf("rotation before failures: %v", got)
	}
	if _, err := session(t, viaProxy, target); err != nil {
		t.Fatal(err)
	}

	proxy.dead.Store(true)
	for i := range 2 {
		_, err := session(t, viaProxy, target)
		var pe *ProxyError
		if !errors.As(err, &pe) {
			t.Fatalf("dial %d while dead: %v, want a ProxyError", i, err)
		}
	}
	st := p.Stats()[1]
	if st.State != StateCoolingDown || !st.Until.Equal(clock.Now().Add(time.Minute)) || st.CoolDowns != 1 {
		t.Fatalf("after %d failures: %+v", 2, st)
	}
	if got := pickAll(4); got[viaProxy.Name()] != 0 {
		t.Errorf("a cooling proxy was picked: %v", got)
	}
	// A late failure of a dial that started earlier does not extend it.
	_, _ = session(t, viaProxy, target)
	if st := p.Stats()[1]; !st.Until.Equal(clock.Now().Add(time.Minute)) || st.CoolDowns != 1 {
		t.Errorf("a failure during the cool-down changed it: %+v", st)
	}

	clock.Advance(time.Minute)
	if got := pickAll(2); got[viaProxy.Name()] != 1 {
		t.Errorf("after the cool-down the proxy is not back in rotation: %v", got)
	}
	// Still dead: one more failure is enough, and the cool-down doubles.
	_, _ = session(t, viaProxy, target)
	if st := p.Stats()[1]; st.State != StateCoolingDown || !st.Until.Equal(clock.Now().Add(2*time.Minute)) || st.CoolDowns != 2 {
		t.Fatalf("failing again at once: %+v, want a 2m cool-down", st)
	}

	proxy.dead.Store(false)
	clock.Advance(2 * time.Minute)
	before := sim.ConnectionsFrom("mx.ok.test", "127.0.4.71")
	if _, err := session(t, viaProxy, target); err != nil {
		t.Fatalf("the proxy is back but: %v", err)
	}
	if n := sim.ConnectionsFrom("mx.ok.test", "127.0.4.71") - before; n != 1 {
		t.Errorf("server saw %d new sessions through the proxy, want 1", n)
	}
	if st := p.Stats()[1]; st.State != StateUsable || st.ConsecutiveFailures != 0 || st.CoolDowns != 0 {
		t.Errorf("after a success: %+v", st)
	}
}

func TestSingleProxyDownIsUnavailable(t *testing.T) {
	proxy := startSOCKS(t, socksOptions{})
	proxy.stop()
	clock := newFakeClock()
	p := newPool(t, Config{Proxies: []string{proxy.url("")}, FailureThreshold: 1, CoolDown: time.Minute, Now: clock.Now})
	if _, err := p.Dial(t.Context(), "tcp", "127.0.0.1:25"); err == nil {
		t.Fatal("dial through a closed proxy succeeded")
	}
	_, err := p.Pick("op")
	var ue *UnavailableError
	if !errors.As(err, &ue) || !ue.Until.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("Pick: %v, want an UnavailableError until the cool-down ends", err)
	}
	if _, err := p.Dial(t.Context(), "tcp", "127.0.0.1:25"); !errors.As(err, &ue) {
		t.Errorf("Dial during the cool-down: %v", err)
	}
	p.Disable(p.Egresses()[0], "reaches no canary")
	if _, err := p.Pick("op"); !errors.As(err, &ue) || !ue.Until.IsZero() || !strings.Contains(err.Error(), "reaches no canary") {
		t.Errorf("all disabled: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	clock := newFakeClock()
	p := newPool(t, Config{SourceIPs: []string{"127.0.4.81", "127.0.4.82"}, Now: clock.Now})
	a, b := p.Egresses()[0], p.Egresses()[1]
	const reason = "554 5.7.1 Service unavailable; Client host [127.0.4.81] blocked using zen.spamhaus.org"
	if !p.Refused(a, "Microsoft", reason) {
		t.Error("first refusal not reported as first")
	}
	if p.Refused(a, "microsoft", "again") {
		t.Error("second refusal reported as first")
	}
	if !p.IsRefused(a, "MICROSOFT") || p.IsRefused(b, "microsoft") || p.IsRefused(a, "google") {
		t.Error("IsRefused wrong")
	}
	for range 4 {
		if e, err := p.Pick("microsoft"); err != nil || e != b {
			t.Fatalf("Pick(microsoft) = %v, %v; want only %v", e, err, b)
		}
	}
	if e, err := p.Pick("google"); err != nil || e == nil {
		t.Fatalf("Pick(google): %v", err)
	}
	p.Refused(b, "microsoft", "550 5.7.606 Access denied, banned sending IP [127.0.4.82]")
	_, err := p.Pick("microsoft")
	var re *RefusedError
	if !errors.As(err, &re) || re.Operator != "microsoft" || len(re.Refusals) != 2 ||
		re.Refusals[0].Egress != a.Name() || re.Refusals[0].Reason != reason || re.Refusals[1].Egress != b.Name() {
		t.Fatalf("Pick when all refused: %#v", err)
	}
	for _, name := range []string{a.Name(), b.Name(), "banned sending IP", "not routed around"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not mention %q", err, name)
		}
	}
	if _, err := p.Pick("google"); err != nil {
		t.Errorf("another operator is affected: %v", err)
	}
	all := p.Refusals()
	if len(all) != 2 || all[0].Operator != "microsoft" || !all[0].At.Equal(clock.Now()) {
		t.Errorf("Refusals() = %+v", all)
	}
	if st := p.Stats(); len(st[0].Refusals) != 1 || len(st[1].Refusals) != 1 {
		t.Errorf("stats refusals: %+v", st)
	}
}

func TestDialChecksItsTarget(t *testing.T) {
	p := newPool(t, Config{SourceIPs: []string{"127.0.4.91"}})
	e := p.Egresses()[0]
	if _, err := e.DialContext(t.Context(), "tcp", "mx.example.com:25"); !errors.Is(err, ErrNotAnAddress) {
		t.Errorf("dial to a name: %v", err)
	}
	if _, err := e.DialContext(t.Context(), "tcp", "[::1]:25"); !errors.Is(err, ErrAddressFamily) {
		t.Errorf("IPv4 source to an IPv6 target: %v", err)
	}
	if _, err := e.DialContext(t.Context(), "udp", "127.0.0.1:25"); err == nil {
		t.Error("udp accepted")
	}
	if st := p.Stats()[0]; st.Dials != 0 {
		t.Errorf("refused dials were counted: %+v", st)
	}
}

// An address the machine does not have cannot be bound; the kernel refuses
// before any packet is sent.
func TestSourceAddressNotOnThisMachine(t *testing.T) {
	sim := startSim(t, mailWorld())
	p := newPool(t, Config{SourceIPs: []string{"192.0.2.1"}, FailureThreshold: 1})
	_, err := p.Egresses()[0].DialContext(t.Context(), "tcp", hostport(sim, "127.0.4.10"))
	var be *BindError
	if !errors.As(err, &be) || !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("err = %v, want a BindError (EADDRNOTAVAIL)", err)
	}
	if st := p.Stats()[0]; st.State != StateCoolingDown || st.EgressFailures != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Proxy passwords never reach names, errors, Stats, refusals or any
// formatting of an egress.
func TestSecretsAreNeverShown(t *testing.T) {
	const secret = "Pa55-SECRET-w0rd"
	sim := startSim(t, mailWorld())
	authed := startSOCKS(t, socksOptions{users: map[string]string{"alice": "other"}})
	closed := startSOCKS(t, socksOptions{})
	closed.stop()
	p := newPool(t, Config{
		Proxies:          []string{authed.url("alice:" + secret), closed.url("bob:" + secret)},
		FailureThreshold: 1,
	})
	var shown []string
	for _, e := range p.Egresses() {
		_, err := e.DialContext(t.Context(), "tcp", hostport(sim, "127.0.4.10"))
		if err == nil {
			t.Fatal("dial succeeded")
		}
		p.Refused(e, "op", "refused")
		shown = append(shown, err.Error(), fmt.Sprintf("%v|%+v|%#v|%s", e, e, e, e.Name()), fmt.Sprintf("%#v", err))
	}
	_, err := p.Pick("other")
	shown = append(shown, err.Error(), fmt.Sprintf("%+v %#v", p.Stats(), p.Refusals()))
	for _, bad := range []string{"socks5://x:" + secret, "socks5://x:" + secret + "@", "socks5://x:" + secret + "@h"} {
		if _, err := New(Config{Proxies: []string{bad}}); err != nil {
			shown = append(shown, err.Error())
		}
	}
	for _, s := range shown {
		if strings.Contains(s, secret) {
			t.Errorf("the password shows in %q", s)
		}
	}
}
