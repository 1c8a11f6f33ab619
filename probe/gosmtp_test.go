package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// mailbox is a go-smtp backend that knows a fixed set of recipients and
// records what the client did.
type mailbox struct {
	known map[string]bool

	mu        sync.Mutex
	greetings []bool   // per EHLO/HELO: whether it came over TLS
	mails     []string // every MAIL FROM, in order
	rcpts     int
	rcptTLS   int // RCPT commands that came over TLS
	resets    int
	dataHit   atomic.Int32
}

// NewSession is called by go-smtp for every EHLO/HELO.
func (m *mailbox) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	m.mu.Lock()
	m.greetings = append(m.greetings, isTLS)
	m.mu.Unlock()
	return &mailboxSession{m, c}, nil
}

type mailboxSession struct {
	m *mailbox
	c *smtp.Conn
}

func (s *mailboxSession) Mail(from string, _ *smtp.MailOptions) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.m.mails = append(s.m.mails, from)
	return nil
}

func (s *mailboxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	_, isTLS := s.c.TLSConnectionState()
	s.m.mu.Lock()
	s.m.rcpts++
	if isTLS {
		s.m.rcptTLS++
	}
	s.m.mu.Unlock()
	if s.m.known[to] {
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user " + to}
}

func (s *mailboxSession) Data(r io.Reader) error {
	s.m.dataHit.Add(1)
	_, _ = io.Copy(io.Discard, r)
	return nil
}

func (s *mailboxSession) Reset() {
	s.m.mu.Lock()
	s.m.resets++
	s.m.mu.Unlock()
}

func (s *mailboxSession) Logout() error { return nil }

// startGoSMTP serves be on loopback; a non-nil tlsConf makes the server
// advertise STARTTLS.
func startGoSMTP(t *testing.T, be *mailbox, tlsConf *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.TLSConfig = tlsConf
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return l.Addr().String()
}

func TestAgainstGoSMTP(t *testing.T) {
	const n = 100
	be := &mailbox{known: map[string]bool{}}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%d@example.test", i)
		if i%3 == 0 {
			be.known[addrs[i]] = true
		}
	}
	addr := startGoSMTP(t, be, nil)
	ctx := context.Background()

	s := dial(t, addr, testConfig())
	if !s.Supports("PIPELINING") {
		t.Fatalf("Extensions = %v, want PIPELINING", s.Extensions())
	}
	if r, err := s.Mail(ctx, false); err != nil || !r.Positive() {
		t.Fatalf("Mail = %v, %v", r, err)
	}

	r, err := s.Rcpt(ctx, addrs[0])
	if err != nil || r.Code != 250 {
		t.Fatalf("Rcpt(known) = %v, %v", r, err)
	}
	r, err = s.Rcpt(ctx, addrs[1])
	if err != nil || r.Code != 550 || r.Enhanced != "5.1.1" || r.Text() != "no such user "+addrs[1] {
		t.Fatalf("Rcpt(unknown) = %#v, %v", r, err)
	}

	before := s.RoundTrips()
	replies, err := s.RcptBatch(ctx, addrs)
	if err != nil {
		t.Fatalf("RcptBatch: %v", err)
	}
	if len(replies) != n {
		t.Fatalf("%d replies, want %d", len(replies), n)
	}
	for i, r := range replies {
		if be.known[addrs[i]] {
			if r.Code != 250 {
				t.Errorf("%s: %v, want 250", addrs[i], r)
			}
		} else if r.Code != 550 || r.Enhanced != "5.1.1" || r.Text() != "no such user "+addrs[i] {
			t.Errorf("%s: %v, want 550 5.1.1", addrs[i], r)
		}
	}
	if d := s.RoundTrips() - before; d != 1 {
		t.Errorf("pipelined batch took %d round trips", d)
	}

	if r, err := s.Reset(ctx); err != nil || r.Code != 250 {
		t.Fatalf("Reset = %v, %v", r, err)
	}
	if r, err := s.Mail(ctx, false); err != nil || !r.Positive() {
		t.Fatalf("Mail after Reset = %v, %v", r, err)
	}
	if r, err := s.Rcpt(ctx, addrs[3]); err != nil || r.Code != 250 {
		t.Fatalf("Rcpt after Reset = %v, %v", r, err)
	}
	if err := s.Quit(ctx); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	if !s.Closed() {
		t.Error("not closed after Quit")
	}
	if _, err := s.Rcpt(ctx, addrs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Rcpt after Quit: %v, want ErrClosed", err)
	}

	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.mails) != 2 || be.mails[0] != "" || be.mails[1] != "" {
		t.Errorf("server saw MAIL FROM %q, want two null senders", be.mails)
	}
	if be.rcpts != n+3 {
		t.Errorf("server saw %d RCPT, want %d", be.rcpts, n+3)
	}
	if be.resets < 1 {
		t.Error("server never saw RSET")
	}
	if be.dataHit.Load() != 0 {
		t.Error("backend Data was called")
	}
}

// Transaction sends RSET, MAIL and the RCPTs as one pipelined group: one
// round trip for a whole transaction, replies matched to the right commands.
func TestTransactionPipelined(t *testing.T) {
	be := &mailbox{known: map[string]bool{"a@example.test": true}}
	addr := startGoSMTP(t, be, nil)
	ctx := context.Background()
	s := dial(t, addr, testConfig())
	defer s.Close()
	addrs := []string{"a@example.test", "b@example.test"}
	for i, reset := range []bool{false, true} {
		before := s.RoundTrips()
		tr, err := s.Transaction(ctx, reset, false, addrs)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RoundTrips() - before; got != 1 {
			t.Errorf("transaction %d took %d round trips, want 1", i, got)
		}
		if (tr.Reset != nil) != reset || (reset && tr.Reset.Code != 250) {
			t.Errorf("transaction %d: RSET reply %v", i, tr.Reset)
		}
		if tr.Mail.Code != 250 || len(tr.Rcpts) != 2 || tr.Rcpts[0].Code != 250 || tr.Rcpts[1].Code != 550 {
			t.Errorf("transaction %d: MAIL %v, RCPT %v", i, tr.Mail, tr.Rcpts)
		}
	}
	if len(be.mails) != 2 || be.rcpts != 4 {
		t.Errorf("server saw %d MAIL and %d RCPT", len(be.mails), be.rcpts)
	}
}
