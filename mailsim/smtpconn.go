package mailsim

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// readBufSize is the most client bytes read at once. A pipelined group
	// that arrives in one read is one turn (Sim.Turns).
	readBufSize = 32 << 10
	// maxCmdLine is the longest line handled as a command; a longer one is
	// handed to go-smtp undecided, which rejects it (its limit is 2000).
	maxCmdLine = 4096
	// maxVerbLine is how much of a command line is parsed for its verb and
	// argument.
	maxVerbLine = 40
	// maxEHLOReply bounds the buffered EHLO reply being rewritten.
	maxEHLOReply = 64 << 10
	// maxPendingOutput is how many reply bytes are held before they are
	// written even though the client's group is not finished.
	maxPendingOutput = 64 << 10
)

// Reading states of an smtpConn.
const (
	stCmd  = iota // lines are commands
	stBody        // inside a DATA body, until a line "."
	stBDAT        // passing the announced bytes of a BDAT chunk
)

// smtpConn is the top of a connection stack, the net.Conn go-smtp serves.
//
// go-smtp has no setting for HELO-only servers, for leaving out PIPELINING,
// for closing after N commands or for resetting the TCP connection, and its
// own STARTTLS would hide the commands after the handshake from any wrapper
// below it. So smtpConn reads the client's stream itself and hands go-smtp
// one command line per Read. go-smtp answers a line completely before it
// reads again, so when Read is called every earlier command has been
// answered: smtpConn can answer a command itself (EHLO on a HELO-only host,
// STARTTLS, the 421) or drop the connection without reordering replies, and
// it knows which command the replies it is written belong to (to rewrite the
// EHLO capabilities). Commands are counted when go-smtp takes them, just
// before they are answered.
//
// Read, Write and the deadline setters are called by go-smtp's connection
// goroutine only; Close may come from the Sim.
type smtpConn struct {
	base    transport // reset and the final close act here
	rw      net.Conn  // base, or the TLS connection over it after STARTTLS
	host    *hostModel
	st      *hostState
	tlsConf *tls.Config // nil unless the host offers STARTTLS
	stop    <-chan struct{}

	buf   []byte     // read buffer
	in    []byte     // unread part of buf
	off   int64      // stream offset of in[0]
	marks []readMark // arrival times of the bytes in in
	cur   []byte     // decided bytes not yet handed to go-smtp

	state    int
	bdatLeft int64
	long     bool // inside an over-long line
	wrote    bool // the server wrote since the client's last bytes
	greeted  bool
	tlsOn    bool
	cmds     int // commands on this connection
	rcpts    int // RCPT commands on this connection

	capture bool   // buffering the EHLO reply to rewrite it
	ehlo    []byte // the buffered EHLO reply
	// out holds replies not yet written to the client: like a real
	// server's output buffer, it is flushed when the server needs more
	// client bytes, so the replies to a pipelined group leave in one write.
	// Hosts with a RcptDelay write through, so a slow server trickles.
	out   []byte
	wLen  int // bytes seen of the current reply line, capped at 3
	wCode [3]byte

	mu        sync.Mutex // guards rw against Close from another goroutine
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// readMark says that the stream bytes before offset end arrived at time at.
type readMark struct {
	end int64
	at  time.Time
}

func newSMTPConn(t transport, h *hostModel, st *hostState, tlsConf *tls.Config, stop <-chan struct{}) *smtpConn {
	return &smtpConn{base: t, rw: t, host: h, st: st, tlsConf: tlsConf, stop: stop, buf: make([]byte, readBufSize)}
}

func (c *smtpConn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rw
}

func (c *smtpConn) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// next decides what go-smtp gets next, reading from the client when no
// complete line is buffered. It may leave cur empty (a command answered
// here).
func (c *smtpConn) next() error {
	if c.state == stBDAT {
		if len(c.in) == 0 {
			return c.fill()
		}
		n := int(min(int64(len(c.in)), c.bdatLeft))
		c.bdatLeft -= int64(n)
		if c.bdatLeft == 0 {
			c.state = stCmd
		}
		c.take(n)
		return nil
	}
	i := bytes.IndexByte(c.in, '\n')
	if i < 0 {
		if len(c.in) < maxCmdLine {
			return c.fill()
		}
		c.long = true
		c.take(len(c.in))
		return nil
	}
	n := i + 1
	switch {
	case c.long:
		c.long = false
		c.take(n)
	case c.state == stBody:
		if string(bytes.TrimRight(c.in[:n], "\r\n")) == "." {
			c.state = stCmd
		}
		c.take(n)
	default:
		return c.command(n)
	}
	return nil
}

// command handles the complete command line in[:n].
func (c *smtpConn) command(n int) error {
	at := c.arrival(c.off + int64(n))
	head := c.in[:min(n, maxVerbLine)]
	fields := strings.Fields(string(head))
	if len(fields) == 0 {
		c.take(n) // go-smtp answers the empty line
		return nil
	}
	verb := strings.ToUpper(fields[0])
	c.cmds++
	c.st.countVerb(verb, at)

	if limit := c.host.close421After; limit > 0 && c.cmds > limit {
		c.drop(n)
		if err := c.reply("421 4.7.0 too many commands"); err != nil {
			return err
		}
		_ = c.Close()
		return io.EOF
	}
	if verb == c.host.extraReplyTo {
		// The reply too many goes first; go-smtp's own follows.
		if err := c.reply("250 2.0.0 OK"); err != nil {
			return err
		}
	}
	switch verb {
	case "QUIT":
		c.base.sessionOver()
	case "RCPT":
		c.rcpts++
		if limit := c.host.rcptPerConn; limit > 0 && c.rcpts > limit {
			c.drop(n)
			return c.reply("452 4.5.3 Too many recipients for this session")
		}
		if limit := c.host.resetAfterRcpts; limit > 0 && c.rcpts > limit {
			c.drop(n)
			_ = c.flush() // the replies before the reset were sent
			c.closeOnce.Do(func() {
				c.closed.Store(true)
				c.closeErr = c.base.reset()
			})
			return io.EOF
		}
	case "EHLO":
		if c.host.heloOnly {
			c.drop(n)
			return c.reply("502 5.5.1 EHLO not implemented, use HELO")
		}
		c.capture = c.host.noPipelining || (c.tlsConf != nil && !c.tlsOn)
	case "STARTTLS":
		if c.tlsConf != nil && !c.tlsOn && len(fields) == 1 {
			c.drop(n)
			return c.startTLS()
		}
	case "BDAT":
		// go-smtp reads the chunk even when it rejects the command, unless
		// the size itself is bad.
		if len(fields) > 1 {
			if size, err := strconv.ParseUint(fields[1], 10, 32); err == nil && size > 0 {
				c.take(n)
				c.state = stBDAT
				c.bdatLeft = int64(size)
				return nil
			}
		}
	}
	c.take(n)
	return nil
}

// startTLS upgrades the connection itself, so that the commands after the
// handshake still pass through this smtpConn. go-smtp is not told: the
// client's next EHLO resets its session as RFC 3207 requires.
func (c *smtpConn) startTLS() error {
	if err := c.reply("220 2.0.0 Ready to start TLS"); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	// Plaintext sent after STARTTLS but before the handshake must not be
	// taken as commands of the secured session (CVE-2011-0411).
	c.drop(len(c.in))
	c.long = false
	tc := tls.Server(c.base, c.tlsConf)
	_ = tc.SetDeadline(time.Now().Add(smtpTimeout))
	if err := tc.Handshake(); err != nil {
		_ = c.Close()
		return io.EOF
	}
	_ = tc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.rw = tc
	c.mu.Unlock()
	c.tlsOn = true
	c.st.tlsSessions.Add(1)
	return nil
}

// fill reads more client bytes. Only called when in holds no complete line
// and less than maxCmdLine, so buf has room.
func (c *smtpConn) fill() error {
	if err := c.flush(); err != nil {
		return err
	}
	if len(c.in) > 0 && &c.in[0] != &c.buf[0] {
		copy(c.buf, c.in)
	}
	c.in = c.buf[:len(c.in)]
	n, err := c.rw.Read(c.buf[len(c.in):])
	if n > 0 {
		if c.wrote {
			c.st.turns.Add(1)
			c.wrote = false
		}
		c.in = c.buf[:len(c.in)+n]
		c.marks = append(c.marks, readMark{end: c.off + int64(len(c.in)), at: time.Now()})
		return nil // a read error with data comes back on the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// arrival is when the stream byte before offset end was read.
func (c *smtpConn) arrival(end int64) time.Time {
	for _, m := range c.marks {
		if m.end >= end {
			return m.at
		}
	}
	return time.Now()
}

// take hands in[:n] to go-smtp.
func (c *smtpConn) take(n int) {
	c.cur = c.in[:n]
	c.drop(n)
}

// drop consumes in[:n] without handing it over.
func (c *smtpConn) drop(n int) {
	c.in = c.in[n:]
	c.off += int64(n)
	for len(c.marks) > 0 && c.marks[0].end <= c.off {
		c.marks = c.marks[1:]
	}
}

// reply writes a reply of smtpConn's own.
func (c *smtpConn) reply(line string) error {
	_ = c.rw.SetWriteDeadline(time.Now().Add(smtpTimeout))
	_, err := c.send([]byte(line + "\r\n"))
	return err
}

func (c *smtpConn) Write(p []byte) (int, error) {
	if !c.greeted {
		c.greeted = true
		if err := c.bannerDelay(); err != nil {
			return 0, err
		}
	}
	if c.capture {
		return c.captureEHLO(p)
	}
	return c.send(p)
}

func (c *smtpConn) bannerDelay() error {
	d := c.host.bannerDelay
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.stop:
		return net.ErrClosed
	}
	// go-smtp set its write deadline before the wait, which may have
	// outlasted it.
	return c.rw.SetWriteDeadline(time.Now().Add(smtpTimeout))
}

func (c *smtpConn) send(p []byte) (int, error) {
	c.wrote = true
	c.watch(p)
	if c.host.rcptDelay > 0 {
		return c.rw.Write(p)
	}
	c.out = append(c.out, p...)
	if len(c.out) >= maxPendingOutput {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush writes the replies held in out.
func (c *smtpConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	rw := c.conn()
	_ = rw.SetWriteDeadline(time.Now().Add(smtpTimeout))
	_, err := rw.Write(c.out)
	c.out = c.out[:0]
	return err
}

// watch follows the reply codes: a DATA body starts only once the server
// has sent 354, which keeps a rejected DATA from turning the following
// commands into "body".
func (c *smtpConn) watch(p []byte) {
	for _, b := range p {
		if b == '\n' {
			c.wLen = 0
			continue
		}
		if c.wLen < len(c.wCode) {
			c.wCode[c.wLen] = b
			c.wLen++
			if c.wLen == len(c.wCode) && string(c.wCode[:]) == "354" && c.state == stCmd {
				c.state = stBody
			}
		}
	}
}

// captureEHLO buffers go-smtp's EHLO reply until its last line, then sends
// it rewritten.
func (c *smtpConn) captureEHLO(p []byte) (int, error) {
	c.ehlo = append(c.ehlo, p...)
	final := len(c.ehlo) > maxEHLOReply
	if !final && bytes.HasSuffix(c.ehlo, []byte("\n")) {
		body := c.ehlo[:len(c.ehlo)-1]
		last := body[bytes.LastIndexByte(body, '\n')+1:]
		final = len(last) < 4 || last[3] != '-'
	}
	if !final {
		return len(p), nil
	}
	reply := rewriteEHLO(c.ehlo, c.host.noPipelining, c.tlsConf != nil && !c.tlsOn)
	c.capture, c.ehlo = false, nil
	if _, err := c.send(reply); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rewriteEHLO drops PIPELINING from and adds STARTTLS to a positive EHLO
// reply; any other reply is returned as it is.
func rewriteEHLO(reply []byte, dropPipelining, addStartTLS bool) []byte {
	lines := strings.Split(strings.TrimSuffix(string(reply), "\r\n"), "\r\n")
	if !strings.HasPrefix(lines[0], "250") {
		return reply
	}
	var texts []string
	for i, l := range lines {
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		if i > 0 && dropPipelining && strings.EqualFold(text, "PIPELINING") {
			continue
		}
		texts = append(texts, text)
		if i == 0 && addStartTLS {
			texts = append(texts, "STARTTLS")
		}
	}
	var b strings.Builder
	for i, t := range texts {
		sep := "-"
		if i == len(texts)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + t + "\r\n")
	}
	return []byte(b.String())
}

// Close flushes what go-smtp wrote (its 221 to QUIT, say) and closes. Only
// go-smtp's connection goroutine calls it (the Sim closes the hostConn
// below), so out needs no lock.
func (c *smtpConn) Close() error {
	c.closeOnce.Do(func() {
		_ = c.flush()
		c.closed.Store(true)
		c.closeErr = c.conn().Close()
	})
	return c.closeErr
}

func (c *smtpConn) LocalAddr() net.Addr                { return c.base.LocalAddr() }
func (c *smtpConn) RemoteAddr() net.Addr               { return c.base.RemoteAddr() }
func (c *smtpConn) SetDeadline(t time.Time) error      { return c.conn().SetDeadline(t) }
func (c *smtpConn) SetReadDeadline(t time.Time) error  { return c.conn().SetReadDeadline(t) }
func (c *smtpConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }
