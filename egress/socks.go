package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/net/proxy"
)

// SOCKS5 reply codes (RFC 1928 §6) that are about the target, not the proxy.
const (
	replyNetUnreachable  = 0x03
	replyHostUnreachable = 0x04
	replyConnRefused     = 0x05
	replyTTLExpired      = 0x06
)

// socksReplyText names the reply codes that are the proxy's own failures.
var socksReplyText = map[int]string{
	0x01: "general SOCKS server failure",
	0x02: "connection not allowed by ruleset (does the proxy allow port 25?)",
	0x07: "command not supported",
	0x08: "address type not supported",
}

// dialSOCKS connects to target through the proxy. golang.org/x/net/proxy
// speaks the protocol, but its errors are plain text ("unknown error
// connection refused"), so the bytes the proxy sent during the handshake are
// kept and read back to tell which step failed and whether the proxy or the
// target is to blame.
func (e *Egress) dialSOCKS(ctx context.Context, target netip.AddrPort) (net.Conn, error) {
	fwd := &recordingDialer{}
	d, err := proxy.SOCKS5("tcp", e.proxyAddr, e.auth, fwd)
	if err != nil { // x/net never fails here; kept for the contract
		return nil, &ProxyError{Proxy: e.name, Step: "connect", Err: err}
	}
	e.pool.dialing(e)
	conn, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", target.String())
	if err == nil {
		var bound netip.Addr
		if b, ok := conn.(interface{ BoundAddr() net.Addr }); ok {
			if ta, ok := b.BoundAddr().(interface{ String() string }); ok {
				if ap, err := netip.ParseAddrPort(ta.String()); err == nil {
					bound = ap.Addr().Unmap()
				}
			}
		}
		e.pool.recordBound(e, bound)
		// The handshake is over: hand out the proxy connection itself, with
		// the target as its remote address, as a direct connection has.
		return &proxiedConn{Conn: fwd.raw(), remote: net.TCPAddrFromAddrPort(target)}, nil
	}
	ferr := e.classify(ctx, target, fwd, err)
	var pe *ProxyError
	switch {
	case errors.As(ferr, &pe):
		e.pool.record(e, outcomeEgressFailed)
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		e.pool.record(e, outcomeAbandoned)
	default:
		e.pool.record(e, outcomeTargetFailed)
	}
	return nil, ferr
}

// classify turns a failed SOCKS dial into a *ProxyError, a *TargetError or,
// when the caller gave up, the context's error.
func (e *Egress) classify(ctx context.Context, target netip.AddrPort, fwd *recordingDialer, err error) error {
	cancelled := ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled)
	proxyErr := func(step string, code int, cause error) error {
		if cancelled {
			return fmt.Errorf("egress %s: %w", e.name, err)
		}
		return &ProxyError{Proxy: e.name, Step: step, Code: code, Err: cause}
	}
	b, dialErr := fwd.result()
	if dialErr != nil {
		return proxyErr("connect", 0, dialErr)
	}
	// The proxy's bytes in order: method choice (2), the RFC 1929 status (2)
	// when it chose username/password, then the request's reply (4+).
	if len(b) < 2 {
		return proxyErr("greeting", 0, err)
	}
	if b[0] != 0x05 {
		return proxyErr("greeting", 0, ErrNotSOCKS5)
	}
	switch method := b[1]; {
	case method == 0xff:
		return proxyErr("auth", 0, ErrProxyNeedsAuth)
	case method == 0x02 && e.auth != nil:
		if len(b) < 4 {
			return proxyErr("auth", 0, err)
		}
		if b[3] != 0x00 {
			return proxyErr("auth", 0, ErrProxyAuth)
		}
		b = b[4:]
	case method == 0x00:
		b = b[2:]
	default:
		return proxyErr("greeting", 0, fmt.Errorf("proxy chose authentication method %d, which we did not offer", method))
	}
	if len(b) < 4 {
		if isTimeout(err) && !cancelled {
			// The proxy took the request and is still trying to reach the
			// target, as a direct connect would be.
			return &TargetError{Proxy: e.name, Addr: target.String(), Err: err}
		}
		return proxyErr("request", 0, err)
	}
	if b[0] != 0x05 {
		return proxyErr("request", 0, ErrNotSOCKS5)
	}
	code := int(b[1])
	var errno syscall.Errno
	switch code {
	case replyConnRefused:
		errno = syscall.ECONNREFUSED
	case replyHostUnreachable, replyTTLExpired:
		errno = syscall.EHOSTUNREACH
	case replyNetUnreachable:
		errno = syscall.ENETUNREACH
	case 0x00:
		return proxyErr("request", 0, fmt.Errorf("malformed reply: %w", err))
	default:
		text, ok := socksReplyText[code]
		if !ok {
			text = fmt.Sprintf("unknown reply code %d", code)
		}
		return proxyErr("request", code, errors.New(text))
	}
	if cancelled {
		return fmt.Errorf("egress %s: %w", e.name, err)
	}
	return &TargetError{Proxy: e.name, Addr: target.String(), Code: code, Err: errno}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// recordingDialer reaches the proxy for x/net's SOCKS client and keeps the
// first bytes the proxy sends: enough for the method choice, the
// authentication status and the request's reply header.
type recordingDialer struct {
	mu      sync.Mutex
	dialErr error
	conn    *recordingConn
}

const handshakeBytes = 16

func (d *recordingDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.dialErr = err
		return nil, err
	}
	d.conn = &recordingConn{Conn: c}
	return d.conn, nil
}

// result is the error of reaching the proxy, or the bytes it sent.
func (d *recordingDialer) result() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dialErr != nil || d.conn == nil {
		return nil, d.dialErr
	}
	return d.conn.seen(), nil
}

// raw is the TCP connection to the proxy, without the recorder.
func (d *recordingDialer) raw() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn.Conn
}

type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if room := handshakeBytes - len(c.buf); room > 0 && n > 0 {
		c.buf = append(c.buf, p[:min(n, room)]...)
	}
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) seen() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}

// proxiedConn is an established connection through a proxy; its remote
// address is the target's, as for a direct connection.
type proxiedConn struct {
	net.Conn
	remote net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
