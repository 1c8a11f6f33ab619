package mailsim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	smtpTimeout     = 60 * time.Second
	maxMessageBytes = 1 << 20
)

var (
	errNoDomain = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "no such domain"}
	errRelay    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied"}
	errNoUser   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	errSyntax   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}
	errClosing  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	errNoData   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "mailsim never accepts messages"}
	// errRefuseAll is what anti-harvest appliances answer to every
	// recipient once they have decided the client is harvesting.
	errRefuseAll = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "#5.1.0 Address rejected"}
	// errGreylisted is the reply of common greylisting setups (postgrey).
	errGreylisted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
)

// backend is one host's go-smtp backend.
type backend struct {
	host    *hostModel
	m       *model
	closing <-chan struct{}
	grey    *greylist
	now     func() time.Time
	// st counts recipients by client when recipients is set
	// (Options.RecordRecipients).
	st         *hostState
	recipients bool
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := ""
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		ip = ap.Addr().Unmap().String()
	}
	return &session{b: b, ip: ip}, nil
}

// session is one client's SMTP session; go-smtp calls it from one goroutine.
type session struct {
	b        *backend
	ip       string // client IP, for greylisting
	from     string // reverse path of the current transaction
	accepted int    // recipients accepted in the current transaction
	unknown  int    // recipients refused as unknown on this connection
}

func (s *session) Reset()        { s.from, s.accepted = "", 0 }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.accepted = strings.ToLower(from), 0
	return nil
}
func (s *session) Data(r io.Reader) error { _, _ = io.Copy(io.Discard, r); return errNoData }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	h := s.b.host
	if s.b.recipients {
		s.b.st.countRecipient(to, s.ip)
	}
	if b := h.block; b != nil && b.atRcpt {
		if r, refused := b.refuses(s.ip); refused {
			return replyError(r)
		}
	}
	if h.limitReply != nil && h.maxRecipients > 0 && s.accepted >= h.maxRecipients {
		return replyError(*h.limitReply)
	}
	if h.refuseAllAfter > 0 && s.unknown >= h.refuseAllAfter {
		return errRefuseAll
	}
	err := s.b.rcpt(greyKey{ip: s.ip, from: s.from}, to)
	switch {
	case err == nil:
		s.accepted++
	case err == errNoUser:
		s.unknown++
	}
	return err
}

// rcpt answers RCPT TO:<to>; key carries the client IP and sender of the
// greylisting triplet.
func (b *backend) rcpt(key greyKey, to string) error {
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
	if d.greylist > 0 {
		key.to = local + "@" + domain
		if !b.grey.pass(key, b.now(), d.greylist) {
			return errGreylisted
		}
	}
	if r, ok := d.replies[local]; ok {
		return replyError(r)
	}
	if d.catchAll || d.mailboxes[local] || (local == "postmaster" && !d.noPost) {
		return nil
	}
	if d.unknown != nil {
		return replyError(*d.unknown)
	}
	return errNoUser
}

// greyKey is a greylisting triplet: client IP, sender, recipient (both
// lower-case).
type greyKey struct{ ip, from, to string }

// greylist remembers when each triplet was first seen. It is shared by all
// hosts of a Sim, so a client that retries through another MX of the same
// domain is still recognised, as with a shared greylisting database.
type greylist struct {
	mu    sync.Mutex
	first map[greyKey]time.Time
}

// pass reports whether the triplet has waited long enough, recording its
// first attempt.
func (g *greylist) pass(k greyKey, now time.Time, delay time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, seen := g.first[k]
	if !seen {
		g.first[k] = now
		return false
	}
	return now.Sub(t) >= delay
}

func replyError(r Reply) error {
	if r.Raw != "" {
		// Validated by buildModel. go-smtp writes "code-" before every
		// line but the last and "code " before that one, which is the
		// raw reply again, byte for byte.
		code, texts, _ := rawLines(r.Raw)
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: strings.Join(texts, "\n")}
	}
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
	if b.host.limitReply == nil {
		srv.MaxRecipients = b.host.maxRecipients
	}
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
