package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bulkverify/bulkverify/internal/ascii"
)

// Config holds the settings of one session. The zero value of every field but
// HeloName is usable.
type Config struct {
	HeloName        string        // name sent in EHLO/HELO; required
	MailFrom        string        // envelope sender; "" means the null sender <>
	ConnectTimeout  time.Duration // default 10s
	GreetingTimeout time.Duration // wait for the 220 banner, default 30s
	CommandTimeout  time.Duration // per command: write + reading its reply, default 30s
	MaxLineLength   int           // bytes per reply line incl. CRLF, default 4096
	MaxReplyLines   int           // lines per reply, default 128
	// Transcript, if non-nil, receives every line sent ("C: ...") and
	// received ("S: ..."), one per line, raw, and notes on TLS ("* ...").
	// Write errors are ignored. A
	// writer shared between sessions must be safe for concurrent use.
	Transcript io.Writer
	// Dial opens the connection; nil means (&net.Dialer{}).DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLS says whether to upgrade with STARTTLS (RFC 3207); the zero value
	// is TLSOpportunistic.
	TLS TLSMode
	// TLSConfig is cloned for the handshake. nil means a config that does
	// not verify the certificate: opportunistic SMTP TLS protects against
	// passive eavesdropping only (RFC 7435), and MX certificates often do
	// not match the host name.
	TLSConfig *tls.Config
	// TLSServerName, if not empty, is the name sent as SNI and checked
	// against the certificate when verification is on (the MX host name);
	// it overrides TLSConfig.ServerName.
	TLSServerName string
}

const (
	// readBufferSize holds the replies to a whole pipelined group, so bytes
	// the server sent beyond them are seen as soon as the group is read.
	readBufferSize = 16 << 10

	defaultConnectTimeout  = 10 * time.Second
	defaultGreetingTimeout = 30 * time.Second
	defaultCommandTimeout  = 30 * time.Second
	defaultMaxLineLength   = 4096
	defaultMaxReplyLines   = 128
)

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.GreetingTimeout <= 0 {
		c.GreetingTimeout = defaultGreetingTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = defaultCommandTimeout
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = defaultMaxLineLength
	}
	if c.MaxReplyLines <= 0 {
		c.MaxReplyLines = defaultMaxReplyLines
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	return c
}

// ReplyError reports that the server answered a session-setup command
// (banner, EHLO/HELO, MAIL) negatively.
type ReplyError struct {
	Command string // "banner", "EHLO", "HELO", "STARTTLS", "MAIL"
	Reply   Reply
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("probe: %s rejected: %s", e.Command, e.Reply)
}

// ErrBadArgument is wrapped by the error for a command argument or Config
// value refused before anything was sent: an address or HELO name with
// control characters, angle brackets or invalid UTF-8, or a missing HELO name.
// It tells a bad input apart from a failure of the connection.
var ErrBadArgument = errors.New("probe: argument refused")

// ErrClosed is returned by calls on a session that can no longer be used: the
// server sent 421, an earlier I/O or protocol error occurred, or the session
// was quit or closed.
var ErrClosed = errors.New("probe: session closed")

// Session is one SMTP connection to a mail exchanger. Its methods must not be
// called concurrently, except Close, Closed and RoundTrips, which may be called
// from any goroutine (Close interrupts a blocked call).
type Session struct {
	cfg    Config
	raw    net.Conn // the TCP connection: deadlines and Close act on it
	conn   net.Conn // raw, or the TLS connection over it after STARTTLS
	br     *bufio.Reader
	remote string
	banner Reply
	ext    map[string]string
	tls    *tls.ConnectionState // nil until a TLS handshake succeeded

	closed     atomic.Bool
	closeOnce  sync.Once
	roundTrips atomic.Int64

	// Buffers reused from one command to the next: the commands of a
	// pipelined group, and the reply line being read.
	wbuf, lineBuf []byte
}

// Dial connects to addr ("ip:port"), reads the 220 banner and greets with
// EHLO, falling back to HELO when EHLO gets a 5xx reply. When the server
// advertises STARTTLS and cfg.TLS is not TLSOff, it then upgrades the
// connection to TLS and greets again (see TLSMode for what happens when that
// fails). A negative banner or greeting reply is a *ReplyError (QUIT is still
// sent unless the reply was 421); in TLSRequire mode a session that cannot be
// secured is a *TLSError. The session is returned only when it is ready for
// Mail.
func Dial(ctx context.Context, addr string, cfg Config) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s, err := open(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.TLS == TLSOff {
		return s, nil
	}
	err = s.startTLS(ctx)
	var hf *handshakeError
	if !errors.As(err, &hf) {
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if cfg.TLS == TLSRequire {
		return nil, &TLSError{Reason: "handshake failed", Err: hf.err}
	}
	if ctx.Err() != nil {
		return nil, hf.err
	}
	// A server that offers STARTTLS but cannot complete it (old ciphers, a
	// broken certificate chain, a middlebox) would otherwise be unreachable;
	// opportunistic TLS prefers a plaintext session to none (RFC 7435).
	s.trace("* ", "reconnecting without TLS")
	return open(ctx, addr, cfg)
}

func (c Config) check() error {
	if c.HeloName == "" {
		return fmt.Errorf("%w: Config.HeloName is required", ErrBadArgument)
	}
	if err := checkArg("HELO name", c.HeloName, true); err != nil {
		return err
	}
	if err := checkArg("MAIL FROM address", c.MailFrom, false); err != nil {
		return err
	}
	if c.TLS < TLSOpportunistic || c.TLS > TLSOff {
		return fmt.Errorf("%w: unknown %v", ErrBadArgument, c.TLS)
	}
	return nil
}

// open connects, reads the banner and greets, without STARTTLS.
func open(ctx context.Context, addr string, cfg Config) (*Session, error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	conn, err := cfg.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("probe: connect %s: %w", addr, err)
	}
	s := &Session{
		cfg:    cfg,
		raw:    conn,
		conn:   conn,
		br:     bufio.NewReaderSize(conn, readBufferSize),
		remote: conn.RemoteAddr().String(),
		ext:    map[string]string{},
	}

	banner, err := s.exchange(ctx, "", "banner", cfg.GreetingTimeout)
	if err != nil {
		return nil, err
	}
	s.banner = banner
	if banner.Code != 220 {
		return nil, s.refuse(ctx, "banner", banner)
	}
	if err := s.greet(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// greet sends EHLO, or HELO after a permanent EHLO refusal, and records the
// extensions. On error the session is closed.
func (s *Session) greet(ctx context.Context) error {
	s.ext = map[string]string{}
	r, err := s.exchange(ctx, "EHLO "+s.cfg.HeloName, "EHLO", s.cfg.CommandTimeout)
	if err != nil {
		return err
	}
	switch {
	case r.Positive():
		s.ext = parseExtensions(r)
		return nil
	case !r.Permanent():
		return s.refuse(ctx, "EHLO", r)
	}
	r, err = s.exchange(ctx, "HELO "+s.cfg.HeloName, "HELO", s.cfg.CommandTimeout)
	if err != nil {
		return err
	}
	if !r.Positive() {
		return s.refuse(ctx, "HELO", r)
	}
	return nil
}

// refuse ends a session whose setup was rejected. RFC 5321 §3.1 asks the
// client to QUIT even after a negative banner, unless the server already said
// it is closing (421).
func (s *Session) refuse(ctx context.Context, cmd string, r Reply) error {
	if !s.closed.Load() {
		_ = s.Quit(ctx)
	}
	s.Close()
	return &ReplyError{Command: cmd, Reply: r}
}

func parseExtensions(r Reply) map[string]string {
	ext := make(map[string]string, len(r.Lines))
	// The first line is the server's greeting, not a keyword.
	for _, l := range r.Lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw == "" {
			continue
		}
		ext[strings.ToUpper(kw)] = strings.TrimSpace(params)
	}
	return ext
}

// Banner returns the server's greeting reply.
func (s *Session) Banner() Reply { return s.banner }

// Extensions returns a copy of the EHLO keywords (upper-case) and their
// parameters; it is empty when the session fell back to HELO.
func (s *Session) Extensions() map[string]string { return maps.Clone(s.ext) }

// Supports reports whether the server advertised the EHLO keyword ext,
// compared case-insensitively.
func (s *Session) Supports(ext string) bool {
	_, ok := s.ext[strings.ToUpper(ext)]
	return ok
}

// RemoteAddr returns the address of the server as connected.
func (s *Session) RemoteAddr() string { return s.remote }

// Closed reports whether the session can no longer be used.
func (s *Session) Closed() bool { return s.closed.Load() }

// RoundTrips returns how often the client has waited for the server: once for
// the banner, once per lock-step command and once per pipelined batch.
func (s *Session) RoundTrips() int { return int(s.roundTrips.Load()) }

// Mail sends MAIL FROM:<cfg.MailFrom>, with " SMTPUTF8" appended when
// smtputf8 is true. A negative reply is returned, not treated as an error;
// err reports I/O and protocol failures only.
func (s *Session) Mail(ctx context.Context, smtputf8 bool) (Reply, error) {
	return s.command(ctx, s.mailLine(smtputf8), "MAIL")
}

func (s *Session) mailLine(smtputf8 bool) string {
	return string(s.appendMail(nil, smtputf8))
}

// appendMail appends the MAIL command, without its line ending.
func (s *Session) appendMail(b []byte, smtputf8 bool) []byte {
	b = append(b, "MAIL FROM:<"...)
	b = append(b, s.cfg.MailFrom...)
	b = append(b, '>')
	if smtputf8 {
		b = append(b, " SMTPUTF8"...)
	}
	return b
}

// appendRcpt appends the RCPT command of address, with its line ending.
func appendRcpt(b []byte, address string) []byte {
	b = append(b, "RCPT TO:<"...)
	b = append(b, address...)
	return append(b, ">\r\n"...)
}

// TxnReplies are the replies to one Transaction. Reset is nil when no RSET
// was sent. Rcpts mean something only when Mail is positive: after a refused
// MAIL the server answers RCPT with 503 (bad sequence).
type TxnReplies struct {
	Reset *Reply
	Mail  Reply
	Rcpts []Reply
}

// Transaction starts a mail transaction and asks about addresses: RSET first
// when reset is true, then MAIL FROM, then RCPT TO for each address. When the
// server offers PIPELINING the whole group goes out in one write and costs
// one round trip (RFC 2920 §3.1 lets RSET, MAIL and RCPT all be pipelined);
// otherwise it is lock-step and stops at a refused RSET or MAIL. On error the
// replies read so far are returned, as with RcptBatch: len(Rcpts) says which
// addresses were answered.
func (s *Session) Transaction(ctx context.Context, reset, smtputf8 bool, addresses []string) (TxnReplies, error) {
	var out TxnReplies
	for i, a := range addresses {
		if err := checkArg("recipient address", a, false); err != nil {
			return out, fmt.Errorf("%w (batch index %d)", err, i)
		}
	}
	if !s.Supports("PIPELINING") {
		if reset {
			r, err := s.Reset(ctx)
			out.Reset = &r
			if err != nil || !r.Positive() {
				return out, err
			}
		}
		var err error
		if out.Mail, err = s.Mail(ctx, smtputf8); err != nil || !out.Mail.Positive() {
			return out, err
		}
		out.Rcpts, err = s.RcptBatch(ctx, addresses)
		return out, err
	}
	if s.closed.Load() {
		return out, ErrClosed
	}
	cmds, n := s.wbuf[:0], len(addresses)+1
	if reset {
		cmds = append(cmds, "RSET\r\n"...)
		n++
	}
	cmds = append(s.appendMail(cmds, smtputf8), "\r\n"...)
	for _, a := range addresses {
		cmds = appendRcpt(cmds, a)
	}
	s.wbuf = cmds
	replies, err := s.pipeline(ctx, cmds, n)
	if reset {
		if len(replies) == 0 {
			return out, err
		}
		out.Reset, replies = &replies[0], replies[1:]
	}
	if len(replies) == 0 {
		if err == nil {
			err = fmt.Errorf("probe: no reply to MAIL: %w", ErrClosed)
		}
		return out, err
	}
	out.Mail, out.Rcpts = replies[0], replies[1:]
	return out, err
}

// Rcpt sends RCPT TO:<address>. The address must not contain control
// characters or angle brackets; such an address is refused before anything
// is sent and the session stays usable.
func (s *Session) Rcpt(ctx context.Context, address string) (Reply, error) {
	if err := checkArg("recipient address", address, false); err != nil {
		return Reply{}, err
	}
	return s.command(ctx, "RCPT TO:<"+address+">", "RCPT")
}

// Reset sends RSET.
func (s *Session) Reset(ctx context.Context) (Reply, error) {
	return s.command(ctx, "RSET", "RSET")
}

// RcptBatch sends RCPT TO for each address. When the server advertised
// PIPELINING (RFC 2920) all commands go out in one write and the replies are
// read in order afterwards; otherwise the commands are sent in lock-step.
//
// On error the replies read so far are returned (fewer than addresses), so the
// caller knows exactly which addresses were answered. A 421 reply is included
// in the replies; if addresses remain unanswered after it, the error wraps
// ErrClosed. Invalid addresses are refused before anything is sent.
func (s *Session) RcptBatch(ctx context.Context, addresses []string) ([]Reply, error) {
	for i, a := range addresses {
		if err := checkArg("recipient address", a, false); err != nil {
			return nil, fmt.Errorf("%w (batch index %d)", err, i)
		}
	}
	if len(addresses) == 0 {
		return nil, nil
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if !s.Supports("PIPELINING") {
		replies := make([]Reply, 0, len(addresses))
		for _, a := range addresses {
			r, err := s.command(ctx, "RCPT TO:<"+a+">", "RCPT")
			if err != nil {
				return replies, err
			}
			replies = append(replies, r)
			if r.Code == 421 && len(replies) < len(addresses) {
				return replies, closedAfter(len(replies), len(addresses))
			}
		}
		return replies, nil
	}
	cmds := s.wbuf[:0]
	for _, a := range addresses {
		cmds = appendRcpt(cmds, a)
	}
	s.wbuf = cmds
	return s.pipeline(ctx, cmds, len(addresses))
}

func closedAfter(n, total int) error {
	return fmt.Errorf("probe: server sent 421 after %d of %d recipients: %w", n, total, ErrClosed)
}

// pipeline writes n commands (cmds, each line with its CRLF) at once and
// reads one reply per command. It returns only once the write is over, so
// cmds can be reused then. A big group is written from a goroutine of its
// own, so that it cannot deadlock with a server that blocks writing
// replies we have not read yet; a small one (syncWriteMax) fits in any
// socket buffer, and is written at once.
func (s *Session) pipeline(ctx context.Context, cmds []byte, n int) ([]Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("probe: RCPT: %w", err)
	}
	if err := s.inStep(ctx, "RCPT"); err != nil {
		return nil, err
	}
	if s.cfg.Transcript != nil {
		for _, l := range strings.SplitAfter(string(cmds), "\r\n") {
			if l != "" {
				s.trace("C: ", strings.TrimSuffix(l, "\r\n"))
			}
		}
	}
	disarm := s.arm(ctx, s.cfg.CommandTimeout)
	defer disarm()

	werr := make(chan error, 1)
	if len(cmds) <= syncWriteMax {
		_, err := s.conn.Write(cmds)
		werr <- err
	} else {
		go func() {
			_, err := s.conn.Write(cmds)
			werr <- err
		}()
	}
	s.roundTrips.Add(1)

	replies := make([]Reply, 0, n)
	lines := make([]string, n) // each reply's first line: one allocation for the group
	var err error
	for i := range n {
		// A reply that has to be read from the connection extends the
		// deadlines first, so a slow but progressing server is bounded per
		// reply rather than per batch; one already read (most of a group's
		// replies arrive together) needs no deadline.
		if !s.replyBuffered() {
			err = s.extend(ctx, s.cfg.CommandTimeout)
		} else {
			err = ctx.Err()
		}
		if err != nil {
			break
		}
		var r Reply
		r, err = readReplyInto(s.br, s.cfg.MaxLineLength, s.cfg.MaxReplyLines, s.traceLine, &s.lineBuf, lines[i:i:i+1])
		if err != nil {
			break
		}
		replies = append(replies, r)
		if r.Code == 421 {
			s.shutdown()
			if len(replies) < n {
				err = closedAfter(len(replies), n)
			}
			<-werr
			return replies, err
		}
	}
	if err != nil {
		err = s.fail(ctx, "RCPT", err)
		<-werr // fail closed the conn, so the writer cannot stay blocked
		return replies, err
	}
	if e := <-werr; e != nil {
		// Every reply arrived, so the server read all commands; a write
		// error now still means the connection is unreliable.
		return replies, s.fail(ctx, "RCPT", e)
	}
	if err := s.inStep(ctx, "RCPT"); err != nil {
		// One reply too many: which of the ones read belongs to which
		// command can no longer be told, so none of them is returned.
		return nil, err
	}
	return replies, nil
}

// syncWriteMax is the largest group of commands written without a
// goroutine: far below any TCP socket's buffers, so the write cannot wait
// for the server to read.
const syncWriteMax = 4 << 10

// replyBuffered reports whether a whole one-line reply has already been
// read from the connection, so reading it needs no I/O.
func (s *Session) replyBuffered() bool {
	b, _ := s.br.Peek(s.br.Buffered())
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return false
	}
	line := bytes.TrimSuffix(b[:i], []byte("\r"))
	return len(line) == 3 || len(line) > 3 && line[3] == ' '
}

// inStep checks that no reply is waiting that no command asked for, before
// a command is sent and after a pipelined group has been answered. A server
// that sent a reply too many (two to RSET, say) would otherwise have every
// later reply read as the answer to the command before it. It catches the
// extra bytes once they have reached the read buffer, which for servers
// that write a group's replies together (most do) is when the group's last
// reply is read.
func (s *Session) inStep(ctx context.Context, name string) error {
	n := s.br.Buffered()
	if n == 0 {
		return nil
	}
	return s.fail(ctx, name, &ProtocolError{Reason: fmt.Sprintf("reply out of step: %d bytes arrived that no command asked for", n)})
}

// Quit sends QUIT, reads the reply best-effort and closes the connection. It
// returns ErrClosed if the session was already closed and otherwise only
// reports a failure to send QUIT.
func (s *Session) Quit(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	defer s.shutdown()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("probe: QUIT: %w", err)
	}
	disarm := s.arm(ctx, s.cfg.CommandTimeout)
	defer disarm()
	s.trace("C: ", "QUIT")
	if _, err := io.WriteString(s.conn, "QUIT\r\n"); err != nil {
		return s.wrap(ctx, "QUIT", err)
	}
	s.roundTrips.Add(1)
	if r, err := readReply(s.br, s.cfg.MaxLineLength, s.cfg.MaxReplyLines, s.traceLine); err == nil && r.Code != 221 {
		// Too late to take back what was concluded, but worth seeing.
		s.trace("* ", fmt.Sprintf("QUIT answered %d, not 221: the replies were out of step", r.Code))
	}
	if tc, ok := s.conn.(*tls.Conn); ok {
		// close_notify, so the server sees an orderly TLS shutdown. Close
		// itself only drops the TCP connection, because it must never block.
		_ = tc.CloseWrite()
	}
	return nil
}

// Close closes the connection without QUIT (and, on TLS, without
// close_notify). It is safe to call more than once and from another goroutine.
func (s *Session) Close() error {
	s.closed.Store(true)
	var err error
	s.closeOnce.Do(func() { err = s.raw.Close() })
	return err
}

// command sends one line and reads its reply in lock-step.
func (s *Session) command(ctx context.Context, line, name string) (Reply, error) {
	if s.closed.Load() {
		return Reply{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		// Nothing was sent, so the session is still in a known state.
		return Reply{}, fmt.Errorf("probe: %s: %w", name, err)
	}
	return s.exchange(ctx, line, name, s.cfg.CommandTimeout)
}

// exchange writes line (unless it is empty, as for the banner) and reads one
// reply, all under one deadline. Errors close the session; so does a 421,
// after which the reply is still returned.
func (s *Session) exchange(ctx context.Context, line, name string, timeout time.Duration) (Reply, error) {
	if line != "" {
		if err := s.inStep(ctx, name); err != nil {
			return Reply{}, err
		}
	}
	disarm := s.arm(ctx, timeout)
	defer disarm()
	if line != "" {
		s.trace("C: ", line)
		if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
			return Reply{}, s.fail(ctx, name, err)
		}
	}
	s.roundTrips.Add(1)
	r, err := readReply(s.br, s.cfg.MaxLineLength, s.cfg.MaxReplyLines, s.traceLine)
	if err != nil {
		return Reply{}, s.fail(ctx, name, err)
	}
	if r.Code == 421 {
		s.shutdown()
	}
	return r, nil
}

// arm sets the connection deadline to min(now+timeout, ctx deadline) and
// makes cancellation of ctx interrupt blocked I/O. The returned func must be
// called when the operation is over; it waits for a concurrently running
// interrupt so that it cannot hit the next operation.
func (s *Session) arm(ctx context.Context, timeout time.Duration) (disarm func()) {
	_ = s.raw.SetDeadline(deadline(ctx, timeout))
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		// Any instant in the past wakes blocked I/O at once.
		_ = s.raw.SetDeadline(time.Unix(1, 0))
		close(done)
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}

// extend pushes the deadline out again while an armed operation makes
// progress. Checking ctx after setting the deadline closes the window in which
// it could overwrite the past deadline set by a cancellation.
func (s *Session) extend(ctx context.Context, timeout time.Duration) error {
	_ = s.raw.SetDeadline(deadline(ctx, timeout))
	return ctx.Err()
}

func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// fail closes the session after an I/O or protocol error and wraps err.
func (s *Session) fail(ctx context.Context, name string, err error) error {
	s.shutdown()
	return s.wrap(ctx, name, err)
}

// wrap adds the command name and, when the failure came from ctx (the conn
// deadline fires as a side effect of cancellation), the ctx error too, so
// errors.Is works for both context.Canceled and os.ErrDeadlineExceeded.
func (s *Session) wrap(ctx context.Context, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("probe: %s: %w: %w", name, cerr, err)
	}
	return fmt.Errorf("probe: %s: %w", name, err)
}

func (s *Session) shutdown() { _ = s.Close() }

func (s *Session) trace(prefix, line string) {
	if s.cfg.Transcript != nil {
		_, _ = io.WriteString(s.cfg.Transcript, prefix+line+"\n")
	}
}

func (s *Session) traceLine(line []byte) {
	if s.cfg.Transcript != nil { // no copy of every reply line when nothing is traced
		s.trace("S: ", string(line))
	}
}

// checkArg refuses anything that could end or extend the command line it is
// put into: control characters (CR and LF above all) and invalid UTF-8, and
// angle brackets, which would let an address close the path and add ESMTP
// parameters. A HELO name additionally must not contain spaces or be empty.
// CheckAddress reports whether address can be sent in RCPT TO at all: it
// wraps ErrBadArgument when the client would refuse it.
func CheckAddress(address string) error { return checkArg("address", address, false) }

func checkArg(what, v string, helo bool) error {
	if plainArg(v) {
		return nil // the common case, checked without decoding runes
	}
	return checkRunes(what, v, helo)
}

// checkRunes is checkArg rune by rune.
func checkRunes(what, v string, helo bool) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrBadArgument, what, v)
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == '<' || r == '>' || (helo && r == ' ') {
			return fmt.Errorf("%w: %s %q contains forbidden character %q", ErrBadArgument, what, v, r)
		}
	}
	return nil
}

// plainArg reports whether v is printable ASCII without spaces or angle
// brackets: what checkArg accepts in every case, recognised 8 bytes at a
// time (twice per address and run: the engine's check, then the
// command's).
func plainArg(v string) bool {
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := ascii.Load(v, i)
		if ascii.HasLess(x, '!')|ascii.HasHigh(x)|ascii.HasByte(x, 0x7f)|ascii.HasByte(x, '<')|ascii.HasByte(x, '>') != 0 {
			return false
		}
	}
	for ; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}
