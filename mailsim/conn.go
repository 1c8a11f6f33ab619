package mailsim

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Every accepted SMTP connection is a stack of net.Conns, bottom up:
//
//	hostConn   the TCP connection: tracked for Close, concurrency counters, reset
//	delayConn  only when Options.RTT > 0: delivers every write RTT later
//	tls.Conn   only after STARTTLS
//	smtpConn   reads commands for go-smtp one at a time, counts them, and
//	           applies the behaviours go-smtp has no setting for
//
// A hostile host gets the bottom of the stack only and speaks for itself.

const (
	// maxVerbs bounds the distinct verbs counted per host, so a client
	// sending garbage cannot grow the map without limit.
	maxVerbs = 64
	// maxCommandTimes bounds the arrival times kept per host and verb; later
	// ones are counted but not timed.
	maxCommandTimes = 1 << 16
)

// hostState is the per-host counters. The struct is created by Start and
// lives as long as the Sim, so counters stay readable after Close.
type hostState struct {
	name        string
	conns       atomic.Int64
	turns       atomic.Int64
	tlsSessions atomic.Int64

	mu      sync.Mutex
	cmds    map[string]int
	times   map[string][]time.Time
	clients map[netip.Addr]int        // connections by client address
	rcpts   map[string]map[string]int // recipient -> client address -> RCPT TO (Options.RecordRecipients)

	// open and maxOpen are guarded by the Sim's conc.mu.
	open, maxOpen int
}

func newHostState(name string) *hostState {
	return &hostState{name: name, cmds: make(map[string]int), times: make(map[string][]time.Time),
		clients: make(map[netip.Addr]int)}
}

// maxClients bounds the distinct client addresses counted per host.
const maxClients = 4096

func (h *hostState) countClient(remote net.Addr) {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := ap.Addr().Unmap(); h.clients[a] > 0 || len(h.clients) < maxClients {
		h.clients[a]++
	}
}

// maxRecipients bounds the distinct recipients remembered per host.
const maxRecipients = 1 << 16

func (h *hostState) countRecipient(rcpt, ip string) {
	rcpt = strings.ToLower(rcpt)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rcpts == nil {
		h.rcpts = make(map[string]map[string]int)
	}
	byIP := h.rcpts[rcpt]
	if byIP == nil {
		if len(h.rcpts) >= maxRecipients {
			return
		}
		byIP = make(map[string]int, 1)
		h.rcpts[rcpt] = byIP
	}
	byIP[ip]++
}

func (h *hostState) countVerb(verb string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.cmds[verb]; !ok && len(h.cmds) >= maxVerbs {
		return
	}
	h.cmds[verb]++
	if ts := h.times[verb]; len(ts) < maxCommandTimes {
		h.times[verb] = append(ts, at)
	}
}

func (h *hostState) commands(verb string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmds[verb]
}

// concurrency counts open connections of all hosts of a Sim and remembers the
// highest counts, per host and in total.
type concurrency struct {
	mu            sync.Mutex
	open, maxOpen int
	watches       []*ConcurrencyWatch
}

func (c *concurrency) opened(h *hostState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.open++
	h.maxOpen = max(h.maxOpen, h.open)
	c.open++
	c.maxOpen = max(c.maxOpen, c.open)
	for _, w := range c.watches {
		if w.hosts[h] {
			w.open++
			w.maxOpen = max(w.maxOpen, w.open)
		}
	}
}

// openAt is how many connections h has open now.
func (c *concurrency) openAt(h *hostState) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return h.open
}

func (c *concurrency) closed(h *hostState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.open--
	c.open--
	for _, w := range c.watches {
		if w.hosts[h] {
			w.open--
		}
	}
}

// transport is the bottom of a connection stack: the TCP connection or the
// latency injector over it. reset aborts the connection with a TCP RST.
type transport interface {
	net.Conn
	reset() error
	// sessionOver stops counting the connection as open once the client
	// has said QUIT: the client may connect again as soon as it reads 221,
	// before the server has got round to closing this one.
	sessionOver()
}

// connEnv is what a listener needs from its Sim to build connection stacks.
type connEnv struct {
	rtt     time.Duration
	closing <-chan struct{}
	conc    *concurrency
	wg      *sync.WaitGroup // the Sim's; counts delay writers
}

// trackingListener counts accepted connections and remembers the open ones,
// because go-smtp's Shutdown waits for handlers but does not close idle
// connections, and its Close closes them but does not wait.
type trackingListener struct {
	net.Listener
	host   *hostState
	env    connEnv
	mu     sync.Mutex
	conns  map[*hostConn]struct{}
	closed bool
}

// acceptTransport accepts one connection and returns the bottom of its
// stack. It must be called from a goroutine counted in env.wg, because it
// may start a delay writer counted there too.
func (l *trackingListener) acceptTransport() (transport, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	hc := &hostConn{Conn: c, l: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[hc] = struct{}{}
	l.mu.Unlock()
	l.host.conns.Add(1)
	l.host.countClient(c.RemoteAddr())
	l.env.conc.opened(l.host)
	if l.env.rtt <= 0 {
		return hc, nil
	}
	dc := newDelayConn(hc, l.env.rtt, l.env.closing)
	l.env.wg.Add(1)
	go func() {
		defer l.env.wg.Done()
		dc.run()
	}()
	return dc, nil
}

func (l *trackingListener) release(c *hostConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.sessionOver()
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*hostConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// smtpListener hands go-smtp the top of each connection stack.
type smtpListener struct {
	*trackingListener
	host    *hostModel
	tlsConf *tls.Config // nil unless the host offers STARTTLS
}

func (l smtpListener) Accept() (net.Conn, error) {
	for {
		t, err := l.acceptTransport()
		if err != nil {
			return nil, err
		}
		if limit := l.host.maxConnections; limit > 0 && l.env.conc.openAt(l.trackingListener.host) > limit {
			// Refused at once, before any banner delay, the way servers
			// limiting connections per client do.
			_, _ = io.WriteString(t, "421 4.7.0 too many connections from you\r\n")
			_ = t.Close()
			continue
		}
		if b := l.host.block; b != nil && !b.atRcpt {
			if r, refused := b.refuses(clientIP(t.RemoteAddr())); refused {
				l.env.wg.Add(1)
				go func() {
					defer l.env.wg.Done()
					refuseSession(t, r)
				}()
				continue
			}
		}
		return newSMTPConn(t, l.host, l.trackingListener.host, l.tlsConf, l.env.closing), nil
	}
}

// hostConn is an accepted TCP connection. Closing it, by whoever, releases
// it from its listener exactly once.
type hostConn struct {
	net.Conn
	l        *trackingListener
	once     sync.Once
	closeErr error
	over     sync.Once // the concurrency counters let go of it
}

func (c *hostConn) sessionOver() {
	c.over.Do(func() { c.l.env.conc.closed(c.l.host) })
}

func (c *hostConn) Close() error {
	c.once.Do(func() {
		// Released before the socket closes, so a client that has seen the
		// end of the connection also sees it no longer counted as open.
		c.l.release(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// reset closes with SO_LINGER 0, so the kernel sends RST instead of FIN and
// the peer's next read fails with ECONNRESET.
func (c *hostConn) reset() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

const (
	// maxDelayQueue bounds the bytes a delayConn holds; a writer beyond it
	// waits, as it would for a full socket buffer.
	maxDelayQueue = 1 << 20
	// maxDelayBatch bounds one write of due bytes to the socket.
	maxDelayBatch = 64 << 10
)

// delayConn injects latency: every write reaches the socket rtt after it was
// made, so a reply arrives rtt after the client bytes that caused it (plus
// whatever time the server took). Writes are queued with their due time and a
// writer goroutine sends them in order; the server never waits for the delay,
// so fifty pipelined replies written at once all arrive about rtt later,
// not fifty times rtt. Close and reset are queued behind the pending bytes.
type delayConn struct {
	raw  *hostConn
	rtt  time.Duration
	stop <-chan struct{} // the Sim is closing: drop everything

	mu      sync.Mutex
	queue   []delayedWrite
	queued  int       // bytes in queue
	closing bool      // Close or reset was called; the writer ends after the queue
	err     error     // the writer has ended; later writes fail with this
	wdl     time.Time // write deadline, for a Write waiting for room

	wake chan struct{} // the queue or closing changed
	room chan struct{} // the queue shrank
	done chan struct{} // closed when the writer has ended
}

type delayedWrite struct {
	due   time.Time
	b     []byte
	reset bool
}

func newDelayConn(raw *hostConn, rtt time.Duration, stop <-chan struct{}) *delayConn {
	return &delayConn{
		raw: raw, rtt: rtt, stop: stop,
		wake: make(chan struct{}, 1),
		room: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *delayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.queued >= maxDelayQueue && !c.closing && c.err == nil {
		dl := c.wdl
		c.mu.Unlock()
		err := c.waitRoom(dl)
		c.mu.Lock()
		if err != nil {
			return 0, err
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.closing {
		return 0, net.ErrClosed
	}
	c.queue = append(c.queue, delayedWrite{due: time.Now().Add(c.rtt), b: append([]byte(nil), p...)})
	c.queued += len(p)
	signal(c.wake)
	return len(p), nil
}

func (c *delayConn) waitRoom(deadline time.Time) error {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-c.room:
		return nil
	case <-c.done:
		return net.ErrClosed
	case <-c.stop:
		return net.ErrClosed
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

// Read reads from the socket directly: only the server's direction is
// delayed, which is enough to make every round trip last rtt.
func (c *delayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return 0, net.ErrClosed
	}
	return c.raw.Read(p)
}

// Close lets the writer deliver what is queued, then close the socket; it
// does not wait for that.
func (c *delayConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.closing = true
		signal(c.wake)
	}
	return nil
}

func (c *delayConn) sessionOver() { c.raw.sessionOver() }

func (c *delayConn) reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing {
		c.closing = true
		c.queue = append(c.queue, delayedWrite{due: time.Now().Add(c.rtt), reset: true})
		signal(c.wake)
	}
	return nil
}

func (c *delayConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *delayConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *delayConn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *delayConn) SetWriteDeadline(t time.Time) error { c.setWDL(t); return nil }
func (c *delayConn) SetDeadline(t time.Time) error {
	c.setWDL(t)
	return c.raw.SetReadDeadline(t)
}

func (c *delayConn) setWDL(t time.Time) {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
}

// run is the writer goroutine. It always closes the socket before it returns.
func (c *delayConn) run() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closing {
			c.mu.Unlock()
			select {
			case <-c.wake:
			case <-c.stop:
				c.end(net.ErrClosed, false)
				return
			}
			c.mu.Lock()
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			c.end(net.ErrClosed, false)
			return
		}
		due := c.queue[0].due
		c.mu.Unlock()

		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-c.stop:
				timer.Stop()
				c.end(net.ErrClosed, false)
				return
			}
		}

		// Everything due now goes out in one write, in order.
		c.mu.Lock()
		now := time.Now()
		var batch []byte
		reset := false
		n := 0
		for n < len(c.queue) && !c.queue[n].due.After(now) && len(batch) < maxDelayBatch {
			w := c.queue[n]
			n++
			if w.reset {
				reset = true
				break
			}
			batch = append(batch, w.b...)
		}
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.queued -= len(batch)
		signal(c.room)
		c.mu.Unlock()

		if len(batch) > 0 {
			_ = c.raw.SetWriteDeadline(now.Add(smtpTimeout))
			if _, err := c.raw.Write(batch); err != nil {
				c.end(err, false)
				return
			}
		}
		if reset {
			c.end(net.ErrClosed, true)
			return
		}
	}
}

// end records why writing stopped and closes (or resets) the socket.
func (c *delayConn) end(err error, reset bool) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.queue, c.queued = nil, 0
	c.mu.Unlock()
	if reset {
		_ = c.raw.reset()
	} else {
		_ = c.raw.Close()
	}
}

// clientIP is the address part of a remote address, "" if it has none.
func clientIP(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// refuseSession greets a blocked client with the refusal and, as RFC 5321
// §3.1 asks of a server that opens with 554, answers every command but QUIT
// with 503 until the client quits, goes idle or sends too much.
func refuseSession(t transport, r Reply) {
	defer t.Close()
	if hostileWrite(t, []byte(r.line()+"\r\n")) != nil {
		return
	}
	br := bufio.NewReaderSize(t, maxCmdLine)
	for range 100 {
		_ = t.SetReadDeadline(time.Now().Add(smtpTimeout))
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		if strings.EqualFold(verb, "QUIT") {
			t.sessionOver()
			_ = hostileWrite(t, []byte("221 2.0.0 Bye\r\n"))
			return
		}
		if hostileWrite(t, []byte("503 5.5.1 Bad sequence of commands\r\n")) != nil {
			return
		}
	}
}
