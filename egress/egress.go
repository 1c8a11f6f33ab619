package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/proxy"
)

// Kind says how an egress sends.
type Kind int

const (
	// Direct connections from the machine, bound to a source address or
	// from the system's choice.
	Direct Kind = iota
	// SOCKS5 connections through a proxy.
	SOCKS5
)

func (k Kind) String() string {
	if k == SOCKS5 {
		return "socks5"
	}
	return "direct"
}

// DirectName is the name of the egress of a pool configured with neither
// source addresses nor proxies: direct, from the system's source address.
const DirectName = "direct"

// Egress is one way out: a source address or a proxy. Its methods are safe
// for concurrent use. It never shows its credentials: Name, String and
// GoString give the same credential-free name.
type Egress struct {
	name      string
	index     int // in its pool
	kind      Kind
	source    netip.Addr  // Direct: the bound address; invalid = the system's choice
	proxyAddr string      // SOCKS5: "host:port"
	auth      *proxy.Auth // SOCKS5: nil without credentials
	pool      *Pool
}

// Name is the egress's stable display name, for the output column and
// logs: the source address ("203.0.113.5"), "direct", or the proxy as
// "socks5://host:port" (without user or password; "#2", "#3" are appended
// when two proxies share host and port).
func (e *Egress) Name() string { return e.name }

func (e *Egress) String() string   { return e.name }
func (e *Egress) GoString() string { return "egress.Egress(" + strconv.Quote(e.name) + ")" }

// Kind says whether the egress is direct or a proxy.
func (e *Egress) Kind() Kind { return e.kind }

// Source is the address a direct egress binds; invalid for the system's
// choice and for proxies.
func (e *Egress) Source() netip.Addr { return e.source }

// DialContext opens a TCP connection to addr ("ip:port") through the egress;
// it has probe.Config.Dial's signature. The outcome is recorded in the
// pool's health of the egress: failures of the egress itself (*ProxyError,
// *BindError) count towards taking it out of rotation; failures at the
// target (*TargetError, refused or timed-out direct connections) do not.
func (e *Egress) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("egress %s: network %q not supported", e.name, network)
	}
	target, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("egress %s: %q: %w", e.name, addr, ErrNotAnAddress)
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	if e.kind == SOCKS5 {
		return e.dialSOCKS(ctx, target)
	}
	return e.dialDirect(ctx, target)
}

func (e *Egress) dialDirect(ctx context.Context, target netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{}
	if e.source.IsValid() {
		if e.source.Is4() != target.Addr().Is4() {
			return nil, fmt.Errorf("egress %s: dial %s: %w", e.name, target, ErrAddressFamily)
		}
		d.LocalAddr = &net.TCPAddr{IP: e.source.AsSlice()}
	}
	e.pool.dialing(e)
	conn, err := d.DialContext(ctx, "tcp", target.String())
	switch {
	case err == nil:
		e.pool.record(e, outcomeConnected)
		return conn, nil
	case e.source.IsValid() && errors.Is(err, syscall.EADDRNOTAVAIL):
		e.pool.record(e, outcomeEgressFailed)
		return nil, &BindError{Source: e.name, Err: err}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		e.pool.record(e, outcomeAbandoned)
	default:
		e.pool.record(e, outcomeTargetFailed)
	}
	return nil, fmt.Errorf("egress %s: %w", e.name, err)
}

// envRef is a credential written as a reference to an environment variable.
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// parseProxy reads "socks5://[user[:password]@]host:port". A user or
// password written ${NAME} is the value of the environment variable NAME
// (lookup may be nil when none may be used); otherwise it is percent-decoded,
// so "%40" is an "@". The returned errors quote the URL with the password
// masked.
func parseProxy(raw string, lookup func(string) (string, bool)) (hostport string, auth *proxy.Auth, err error) {
	shown := redact(raw)
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !strings.EqualFold(scheme, "socks5") {
		return "", nil, fmt.Errorf("egress: proxy %q: want socks5://[user:password@]host:port", shown)
	}
	userinfo, hostport := "", rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo, hostport = rest[:at], rest[at+1:]
	}
	if strings.ContainsAny(hostport, "/?#") {
		return "", nil, fmt.Errorf("egress: proxy %q: no path or query allowed after host:port", shown)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return "", nil, fmt.Errorf("egress: proxy %q: want host:port after the scheme", shown)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", nil, fmt.Errorf("egress: proxy %q: bad port", shown)
	}
	hostport = net.JoinHostPort(strings.ToLower(host), port)
	if userinfo == "" {
		return hostport, nil, nil
	}
	user, pass, _ := strings.Cut(userinfo, ":")
	credential := func(what, v string) (string, error) {
		if m := envRef.FindStringSubmatch(v); m != nil {
			if lookup == nil {
				return "", fmt.Errorf("egress: proxy %q: %s refers to $%s, but no environment is available", shown, what, m[1])
			}
			val, ok := lookup(m[1])
			if !ok {
				return "", fmt.Errorf("egress: proxy %q: %s refers to $%s, which is not set", shown, what, m[1])
			}
			return val, nil
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return "", fmt.Errorf("egress: proxy %q: bad percent-encoding in the %s", shown, what)
		}
		return val, nil
	}
	if user, err = credential("user", user); err != nil {
		return "", nil, err
	}
	if pass, err = credential("password", pass); err != nil {
		return "", nil, err
	}
	// RFC 1929 carries each in one length byte, and an empty user name
	// cannot be sent.
	if user == "" || len(user) > 255 || len(pass) > 255 {
		return "", nil, fmt.Errorf("egress: proxy %q: user must be 1 to 255 bytes and password at most 255", shown)
	}
	return hostport, &proxy.Auth{User: user, Password: pass}, nil
}

// CheckProxy reports whether raw is a usable proxy URL, for config
// validation: ${NAME} references are accepted without being read.
func CheckProxy(raw string) error {
	_, _, err := parseProxy(raw, func(string) (string, bool) { return "set", true })
	return err
}

// CheckSourceIP reports whether s can be a source address.
func CheckSourceIP(s string) error {
	_, err := parseSource(s)
	return err
}

// redact masks the password of a proxy URL for messages.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if strings.Contains(raw, "@") {
			return "(unparsable proxy URL with credentials)"
		}
		return raw
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		// Without "@", a forgotten host may have left "user:password"
		// looking like "host:port": mask a port that is not a number.
		if host, port, ok := strings.Cut(rest, ":"); ok && strings.Trim(port, "0123456789") != "" {
			return scheme + "://" + host + ":xxxxx"
		}
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if hasPass {
		user += ":xxxxx"
	}
	return scheme + "://" + user + "@" + rest[at+1:]
}

// parseSource reads a source address for direct connections.
func parseSource(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("egress: source address %q is not an IP address", s)
	}
	a = a.Unmap()
	if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("egress: source address %s cannot be bound for outgoing connections", a)
	}
	return a, nil
}
