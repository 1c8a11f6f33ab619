package mailsim

import (
	"bytes"
	"time"
)

// Hostile hosts are served by these plain goroutines instead of go-smtp: what
// they do is not SMTP, and go-smtp has no way to be this broken. Every read
// and write carries a deadline, and every wait also ends on the Sim's
// closing channel, while Close closes the sockets, so none of them can hold
// Close up.

const (
	// neverEndsInterval is HostileNeverEnds' pace.
	neverEndsInterval = 100 * time.Millisecond
	// hostileChunk is the size of one write of HostileHugeLine and
	// HostileEndlessReply.
	hostileChunk = 64 << 10
)

// serveHostile accepts connections on l until it is closed. It runs in a
// goroutine counted in the Sim's WaitGroup.
func (s *Sim) serveHostile(l *trackingListener, name string, mode Hostility) {
	for {
		c, err := l.acceptTransport()
		if err != nil {
			s.noteServeErr(err)
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			runHostile(c, name, mode, s.closing)
		}()
	}
}

func runHostile(c transport, name string, mode Hostility, stop <-chan struct{}) {
	banner := []byte("220 " + name + " ESMTP mailsim\r\n")
	switch mode {
	case HostileSilent:
		drain(c)
	case HostileResetAfterBanner:
		// Resetting at once could beat the client's connect() to reading
		// the handshake's outcome (it would see a failed dial, not a
		// banner); waiting for its first line makes the banner certain.
		if hostileWrite(c, banner) == nil && readLine(c) == nil {
			_ = c.reset()
		}
	case HostileEndlessReply:
		if hostileWrite(c, banner) != nil || readLine(c) != nil {
			return
		}
		chunk := bytes.Repeat([]byte("250-mailsim has more to say\r\n"), hostileChunk/30)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if hostileWrite(c, chunk) != nil {
				return
			}
		}
	case HostileHugeLine:
		if hostileWrite(c, []byte("220 ")) != nil {
			return
		}
		chunk := bytes.Repeat([]byte("x"), hostileChunk)
		for left := HugeLineSize; left > 0; left -= len(chunk) {
			if hostileWrite(c, chunk[:min(left, len(chunk))]) != nil {
				return
			}
		}
		if hostileWrite(c, []byte("\r\n")) == nil {
			drain(c)
		}
	case HostileNeverEnds:
		if hostileWrite(c, []byte("220 ")) != nil {
			return
		}
		tick := time.NewTicker(neverEndsInterval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if hostileWrite(c, []byte("x")) != nil {
					return
				}
			}
		}
	}
}

func hostileWrite(c transport, p []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(smtpTimeout))
	_, err := c.Write(p)
	return err
}

// drain reads and discards until the client leaves, the Sim closes or the
// client has been idle for smtpTimeout.
func drain(c transport) {
	buf := make([]byte, 512)
	for {
		_ = c.SetReadDeadline(time.Now().Add(smtpTimeout))
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// readLine reads up to a line end, at most maxCmdLine bytes.
func readLine(c transport) error {
	buf := make([]byte, 1)
	for range maxCmdLine {
		_ = c.SetReadDeadline(time.Now().Add(smtpTimeout))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if n == 1 && buf[0] == '\n' {
			return nil
		}
	}
	return nil
}
