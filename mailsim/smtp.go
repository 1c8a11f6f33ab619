package mailsim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	smtpTimeout     = 60 * time.Second
	maxMessageBytes = 1 << 20
	// maxVerbLine is how much of a client line is kept to find its verb (and
	// BDAT's size); the rest of a long line is skipped, not buffered.
	maxVerbLine = 40
	// maxVerbs bounds the distinct verbs counted per host, so a client
	// sending garbage cannot grow the map without limit.
	maxVerbs = 64
)

// hostState is the per-host counters. The struct is created by Start and
// lives as long as the Sim, so counters stay readable after Close.
type hostState struct {
	name  string
	conns atomic.Int64
	mu    sync.Mutex
	cmds  map[string]int
}

func (h *hostState) countVerb(verb string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.cmds[verb]; ok || len(h.cmds) < maxVerbs {
		h.cmds[verb]++
	}
}

func (h *hostState) commands(verb string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmds[verb]
}

// Reading states of a cmdTracker.
const (
	stCmd  = iota // lines are commands
	stBody        // inside a DATA body, until a line "."
	stBDAT        // skipping the announced bytes of a BDAT chunk
)

// cmdTracker splits the client byte stream of one connection into lines and
// counts the command verbs. It watches the server's replies too: a DATA body
// starts only once the server has sent 354, which keeps a rejected DATA
// from turning the following commands into "body".
type cmdTracker struct {
	host     *hostState
	mu       sync.Mutex
	state    int
	line     []byte // first maxVerbLine bytes of the current line
	bdatLeft int64
	wLen     int // bytes seen of the current reply line, capped at 3
	wCode    [3]byte
}

func (t *cmdTracker) read(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 {
		if t.state == stBDAT {
			n := min(int64(len(p)), t.bdatLeft)
			p = p[n:]
			t.bdatLeft -= n
			if t.bdatLeft == 0 {
				t.state = stCmd
			}
			continue
		}
		b := p[0]
		p = p[1:]
		if b == '\n' {
			t.endLine()
			continue
		}
		if len(t.line) < maxVerbLine {
			t.line = append(t.line, b)
		}
	}
}

func (t *cmdTracker) endLine() {
	line := strings.TrimSuffix(string(t.line), "\r")
	t.line = t.line[:0]
	if t.state == stBody {
		if line == "." {
			t.state = stCmd
		}
		return
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	verb := strings.ToUpper(fields[0])
	t.host.countVerb(verb)
	if verb == "BDAT" && len(fields) > 1 {
		if n, err := strconv.ParseInt(fields[1], 10, 64); err == nil && n > 0 {
			t.state = stBDAT
			t.bdatLeft = n
		}
	}
}

func (t *cmdTracker) wrote(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.wLen = 0
			continue
		}
		if t.wLen < len(t.wCode) {
			t.wCode[t.wLen] = b
			t.wLen++
			if t.wLen == len(t.wCode) && string(t.wCode[:]) == "354" && t.state == stCmd {
				t.state = stBody
			}
		}
	}
}

// trackedConn counts the commands crossing one accepted connection.
type trackedConn struct {
	net.Conn
	t *cmdTracker
	l *trackingListener
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.read(p[:n])
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	// Observed before sending: once the client sees 354 it may send the body
	// at once, and the tracker must already expect it.
	c.t.wrote(p)
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.l.forget(c)
	return c.Conn.Close()
}

// trackingListener counts accepted connections and remembers the open ones,
// because go-smtp's Shutdown waits for handlers but does not close idle
// connections, and its Close closes them but does not wait.
type trackingListener struct {
	net.Listener
	host   *hostState
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.host.conns.Add(1)
	tc := &trackedConn{Conn: c, t: &cmdTracker{host: l.host}, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
	} else {
		l.conns[tc] = struct{}{}
	}
	return tc, nil
}

func (l *trackingListener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		_ = c.Conn.Close()
	}
	clear(l.conns)
}

var (
	errNoDomain = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "no such domain"}
	errRelay    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied"}
	errNoUser   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	errSyntax   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}
	errClosing  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	errNoData   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "mailsim never accepts messages"}
)

// backend is one host's go-smtp backend.
type backend struct {
	host    *hostModel
	m       *model
	closing <-chan struct{}
}

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

type session struct{ b *backend }

func (s *session) Reset()                                    {}
func (s *session) Logout() error                             { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *session) Data(r io.Reader) error                    { _, _ = io.Copy(io.Discard, r); return errNoData }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { return s.b.rcpt(to) }

func (b *backend) rcpt(to string) error {
	if d := b.host.rcptDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.closing:
			return errClosing
		}
	}
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 {
		return errSyntax
	}
	local, domain := strings.ToLower(to[:at]), normName(to[at+1:])
	d := b.m.domains[domain]
	switch {
	case d == nil:
		return errNoDomain
	case !b.host.serves[domain]:
		return errRelay
	}
	if r, ok := d.replies[local]; ok {
		return replyError(r)
	}
	if d.catchAll || d.mailboxes[local] {
		return nil
	}
	return errNoUser
}

func replyError(r Reply) error {
	e := &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.NoEnhancedCode, Message: r.Message}
	if ec, err := parseEnhanced(r.Enhanced); err == nil && ec != nil {
		e.EnhancedCode = smtp.EnhancedCode{ec[0], ec[1], ec[2]}
	}
	return e
}

func newSMTPServer(b *backend) *smtp.Server {
	srv := smtp.NewServer(b)
	srv.Domain = b.host.name
	srv.ReadTimeout = smtpTimeout
	srv.WriteTimeout = smtpTimeout
	srv.MaxRecipients = b.host.maxRecipients
	srv.MaxMessageBytes = maxMessageBytes
	srv.ErrorLog = discardLogger{}
	return srv
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// listenCommonPort binds every host IP (Down hosts included, to check that
// nothing else answers there) on one port, then releases the Down ones. The
// result is aligned with hosts; Down entries are nil.
func listenCommonPort(hosts []*hostModel, port int) ([]net.Listener, int, error) {
	if len(hosts) == 0 {
		return nil, port, nil
	}
	const attempts = 20
	var lastErr error
	for range attempts {
		ls, p, err := listenAll(hosts, port)
		if err == nil {
			for i, h := range hosts {
				if h.down {
					_ = ls[i].Close()
					ls[i] = nil
				}
			}
			return ls, p, nil
		}
		var first *firstListenError
		if port != 0 || errors.As(err, &first) {
			return nil, 0, err
		}
		lastErr = err // the port taken on another IP: try another one
	}
	return nil, 0, lastErr
}

type firstListenError struct{ err error }

func (e *firstListenError) Error() string { return e.err.Error() }
func (e *firstListenError) Unwrap() error { return e.err }

func listenAll(hosts []*hostModel, port int) ([]net.Listener, int, error) {
	ls := make([]net.Listener, 0, len(hosts))
	for i, h := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(h.ip.String(), strconv.Itoa(port)))
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			err = fmt.Errorf("mailsim: SMTP listen for host %q: %w", h.name, err)
			if i == 0 {
				return nil, 0, &firstListenError{err}
			}
			return nil, 0, err
		}
		if i == 0 {
			port = l.Addr().(*net.TCPAddr).Port
		}
		ls = append(ls, l)
	}
	return ls, port, nil
}
