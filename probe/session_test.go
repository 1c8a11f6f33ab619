package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDialMultilineEHLO(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.greet("PIPELINING", "SIZE 35882577", "8BITMIME", "auth PLAIN LOGIN", "ENHANCEDSTATUSCODES")
		p.drain()
	})
	s := dial(t, addr, testConfig())

	if got := s.Banner(); got.Code != 220 || got.Text() != "mx.test ESMTP ready" {
		t.Errorf("Banner = %v", got)
	}
	want := map[string]string{
		"PIPELINING":          "",
		"SIZE":                "35882577",
		"8BITMIME":            "",
		"AUTH":                "PLAIN LOGIN",
		"ENHANCEDSTATUSCODES": "",
	}
	if got := s.Extensions(); !reflect.DeepEqual(got, want) {
		t.Errorf("Extensions = %v, want %v", got, want)
	}
	for _, kw := range []string{"pipelining", "Auth", "SIZE"} {
		if !s.Supports(kw) {
			t.Errorf("Supports(%q) = false", kw)
		}
	}
	if s.Supports("SMTPUTF8") || s.Supports("mx.test") {
		t.Error("Supports reports a keyword that was not advertised")
	}
	if s.RemoteAddr() != addr {
		t.Errorf("RemoteAddr = %q, want %q", s.RemoteAddr(), addr)
	}
	// Banner and EHLO are one wait each.
	if n := s.RoundTrips(); n != 2 {
		t.Errorf("RoundTrips = %d, want 2", n)
	}
}

func TestReplyParsing(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		want   Reply
		errSub string // non-empty: a *ProtocolError whose reason contains this
	}{
		{name: "enhanced present", raw: "550 5.1.1 no such user\r\n",
			want: Reply{550, "5.1.1", []string{"no such user"}}},
		{name: "enhanced absent", raw: "250 ok\r\n",
			want: Reply{250, "", []string{"ok"}}},
		{name: "enhanced class mismatch", raw: "550 2.1.1 odd\r\n",
			want: Reply{550, "", []string{"2.1.1 odd"}}},
		{name: "enhanced without separator", raw: "250 2.0.0ok\r\n",
			want: Reply{250, "", []string{"2.0.0ok"}}},
		{name: "enhanced alone", raw: "452 4.2.2\r\n",
			want: Reply{452, "4.2.2", []string{""}}},
		{name: "bare code", raw: "250\r\n",
			want: Reply{250, "", []string{""}}},
		{name: "LF endings", raw: "250-first\n250 2.0.0 second\n",
			want: Reply{250, "2.0.0", []string{"first", "second"}}},
		{name: "enhanced on every line", raw: "550-5.7.1 blocked\r\n550-5.7.1 see\r\n550 5.7.1 https://x.test\r\n",
			want: Reply{550, "5.7.1", []string{"blocked", "see", "https://x.test"}}},
		{name: "different enhanced kept in text", raw: "550-5.7.1 blocked\r\n550 5.7.0 other\r\n",
			want: Reply{550, "5.7.1", []string{"blocked", "5.7.0 other"}}},
		{name: "non-UTF-8 text", raw: "250 caf\xe9 \x00\x7f\r\n",
			want: Reply{250, "", []string{"caf\xe9 \x00\x7f"}}},
		{name: "inconsistent codes", raw: "250-a\r\n251 b\r\n", errSub: "code 251"},
		{name: "letters for code", raw: "abc hello\r\n", errSub: "malformed"},
		{name: "code 1xx", raw: "150 hello\r\n", errSub: "malformed"},
		{name: "code 6xx", raw: "650 hello\r\n", errSub: "malformed"},
		{name: "two digits", raw: "25 ok\r\n", errSub: "malformed"},
		{name: "four digits", raw: "2500 ok\r\n", errSub: "malformed"},
		{name: "bad separator", raw: "250_ok\r\n", errSub: "malformed"},
		{name: "empty line", raw: "\r\n", errSub: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, func(p *peer) {
				p.greet()
				if p.expect("MAIL FROM:<>") {
					p.send(tt.raw)
				}
				p.drain()
			})
			s := dial(t, addr, testConfig())
			r, err := s.Mail(context.Background(), false)
			if tt.errSub != "" {
				var pe *ProtocolError
				if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tt.errSub) {
					t.Fatalf("err = %v, want ProtocolError containing %q", err, tt.errSub)
				}
				if !s.Closed() {
					t.Error("session not closed after protocol error")
				}
				if _, err := s.Rcpt(context.Background(), "a@b.test"); !errors.Is(err, ErrClosed) {
					t.Errorf("Rcpt after protocol error: %v, want ErrClosed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mail: %v", err)
			}
			if !reflect.DeepEqual(r, tt.want) {
				t.Errorf("reply = %#v, want %#v", r, tt.want)
			}
			if s.Closed() {
				t.Error("session closed after a valid reply")
			}
		})
	}
}

func TestOversizedReplies(t *testing.T) {
	tests := []struct {
		name   string
		write  func(c net.Conn)
		reason string
	}{
		{"10 MB line", func(c net.Conn) {
			_, _ = c.Write(append([]byte("250 "), bytes.Repeat([]byte("a"), 10<<20)...))
		}, "line longer than 4096"},
		{"endless multi-line reply", func(c net.Conn) {
			chunk := bytes.Repeat([]byte("250-more\r\n"), 100)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}, "longer than 128 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, func(p *peer) {
				p.greet()
				if p.expect("MAIL FROM:<>") {
					tt.write(p.c) // fails once the client hangs up
				}
			})
			// testConfig's timeouts are an hour: only the limits can end
			// this, and the error says which one did.
			s := dial(t, addr, testConfig())
			_, err := s.Mail(context.Background(), false)
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("err = %v, want ProtocolError %q", err, tt.reason)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("err = %v: a timeout, not the limit, ended the read", err)
			}
			if !s.Closed() {
				t.Error("session not closed")
			}
		})
	}
}

func TestGreetingTimeout(t *testing.T) {
	addr := serve(t, func(p *peer) { p.drain() })
	// The other timeouts are an hour (testConfig): were the greeting not
	// bounded by its own, the server's safety net would end the wait, with
	// an EOF and a complaint from drain, not a deadline error.
	cfg := testConfig()
	cfg.GreetingTimeout = 200 * time.Millisecond
	start := time.Now()
	s, err := Dial(context.Background(), addr, cfg)
	d := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Dial succeeded against a silent server")
	}
	var ne *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) {
		t.Errorf("err = %v, want a deadline *net.OpError", err)
	}
	if d < cfg.GreetingTimeout {
		t.Errorf("Dial returned after %v, before the greeting timeout of %v", d, cfg.GreetingTimeout)
	}
}

func TestConnectionDropDuringSetup(t *testing.T) {
	tests := []struct {
		name   string
		script func(p *peer)
		want   error // nil: any non-reply error
	}{
		{"reset after EHLO", func(p *peer) {
			p.send("220 mx.test\r\n")
			p.expect("EHLO probe.test")
			_ = p.c.(*net.TCPConn).SetLinger(0) // Close now sends RST
		}, syscall.ECONNRESET},
		{"close after EHLO", func(p *peer) {
			p.send("220 mx.test\r\n")
			p.expect("EHLO probe.test")
		}, io.EOF},
		{"reset right after banner", func(p *peer) {
			p.send("220 mx.test\r\n")
			_ = p.c.(*net.TCPConn).SetLinger(0)
		}, nil},
		{"close inside multi-line banner", func(p *peer) {
			p.send("220-mx.test\r\n")
		}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, tt.script)
			// The drop ends Dial, not a timeout: testConfig's are an hour,
			// and a Dial that waited for one would not return.
			var s *Session
			var err error
			returns(t, "Dial", func() { s, err = Dial(context.Background(), addr, testConfig()) })
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			var re *ReplyError
			if errors.As(err, &re) || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want a connection error", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNegativeBanner(t *testing.T) {
	tests := []struct {
		banner   string
		code     int
		enhanced string
		wantQuit bool
	}{
		{"554 5.7.1 go away\r\n", 554, "5.7.1", true},
		{"554-blocked\r\n554 see https://x.test\r\n", 554, "", true},
		{"421 4.3.2 too busy\r\n", 421, "4.3.2", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code, tt.wantQuit), func(t *testing.T) {
			gotQuit := make(chan bool, 1)
			addr := serve(t, func(p *peer) {
				p.send(tt.banner)
				l, err := p.line()
				gotQuit <- err == nil && l == "QUIT"
				if err == nil {
					p.send("221 bye\r\n")
				}
				p.drain()
			})
			s, err := Dial(context.Background(), addr, testConfig())
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			var re *ReplyError
			if !errors.As(err, &re) || re.Command != "banner" || re.Reply.Code != tt.code || re.Reply.Enhanced != tt.enhanced {
				t.Fatalf("err = %#v, want banner ReplyError %d", err, tt.code)
			}
			if q := <-gotQuit; q != tt.wantQuit {
				t.Errorf("server saw QUIT = %v, want %v", q, tt.wantQuit)
			}
		})
	}
}

func TestGreetingFallback(t *testing.T) {
	tests := []struct {
		name     string
		ehlo     string // reply to EHLO
		helo     string // reply to HELO; "" if HELO must not be sent
		wantCmd  string // "" for success, else ReplyError.Command
		wantQuit bool
	}{
		{"502 falls back", "502 5.5.1 command not implemented\r\n", "250 mx.test\r\n", "", false},
		{"500 falls back", "500 syntax error\r\n", "250 mx.test\r\n", "", false},
		{"504 falls back", "504 5.5.2 no\r\n", "250 mx.test\r\n", "", false},
		{"550 falls back", "550 not here\r\n", "250 mx.test\r\n", "", false},
		{"HELO refused", "502 no\r\n", "550 5.7.1 go away\r\n", "HELO", true},
		{"EHLO 4xx is not retried as HELO", "451 4.3.0 later\r\n", "", "EHLO", true},
		{"EHLO 421 closes", "421 4.3.2 bye\r\n", "", "EHLO", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			quit := make(chan bool, 1)
			addr := serve(t, func(p *peer) {
				p.send("220 mx.test\r\n")
				if !p.expect("EHLO probe.test") {
					return
				}
				p.send(tt.ehlo)
				if tt.helo != "" {
					if !p.expect("HELO probe.test") {
						return
					}
					p.send(tt.helo)
				}
				if tt.wantCmd == "" {
					if p.expect("MAIL FROM:<>") {
						p.send("250 ok\r\n")
					}
					p.drain()
					return
				}
				l, err := p.line()
				quit <- err == nil && l == "QUIT"
				if err == nil {
					p.send("221 bye\r\n")
				}
				p.drain()
			})
			s, err := Dial(context.Background(), addr, testConfig())
			if tt.wantCmd != "" {
				var re *ReplyError
				if !errors.As(err, &re) || re.Command != tt.wantCmd {
					t.Fatalf("err = %v, want ReplyError for %s", err, tt.wantCmd)
				}
				if q := <-quit; q != tt.wantQuit {
					t.Errorf("server saw QUIT = %v, want %v", q, tt.wantQuit)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer s.Close()
			if ext := s.Extensions(); ext == nil || len(ext) != 0 {
				t.Errorf("Extensions after HELO = %#v, want empty map", ext)
			}
			if s.Supports("PIPELINING") {
				t.Error("Supports(PIPELINING) after HELO")
			}
			if r, err := s.Mail(context.Background(), false); err != nil || r.Code != 250 {
				t.Errorf("Mail = %v, %v", r, err)
			}
		})
	}
}

func TestReply421ClosesSession(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.greetMail()
		if p.expect("RCPT TO:<a@b.test>") {
			p.send("421 4.7.0 too many errors, closing\r\n")
		}
	})
	s := dial(t, addr, testConfig())
	ctx := context.Background()
	if _, err := s.Mail(ctx, false); err != nil {
		t.Fatal(err)
	}
	r, err := s.Rcpt(ctx, "a@b.test")
	if err != nil || r.Code != 421 || r.Enhanced != "4.7.0" {
		t.Fatalf("Rcpt = %v, %v; want the 421 reply", r, err)
	}
	if !s.Closed() {
		t.Fatal("Closed() = false after 421")
	}
	if _, err := s.Rcpt(ctx, "c@b.test"); !errors.Is(err, ErrClosed) {
		t.Errorf("Rcpt: %v, want ErrClosed", err)
	}
	if _, err := s.RcptBatch(ctx, []string{"c@b.test"}); !errors.Is(err, ErrClosed) {
		t.Errorf("RcptBatch: %v, want ErrClosed", err)
	}
	if _, err := s.Reset(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Reset: %v, want ErrClosed", err)
	}
	if err := s.Quit(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Quit: %v, want ErrClosed", err)
	}
}

func batchAddrs(n int) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = fmt.Sprintf("u%d@example.test", i)
	}
	return a
}

// batchReply is the scripted answer for address i: even ones exist.
func batchReply(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("250 2.1.5 u%d ok\r\n", i)
	}
	return fmt.Sprintf("550 5.1.1 u%d unknown\r\n", i)
}

func checkBatch(t *testing.T, replies []Reply) {
	t.Helper()
	for i, r := range replies {
		want := "250 2.1.5 u" + fmt.Sprint(i) + " ok"
		if i%2 == 1 {
			want = "550 5.1.1 u" + fmt.Sprint(i) + " unknown"
		}
		if r.String() != want {
			t.Errorf("reply %d = %q, want %q", i, r, want)
		}
	}
}

func TestRcptBatchPipelined(t *testing.T) {
	const n = 50
	addrs := batchAddrs(n)
	addr := serve(t, func(p *peer) {
		p.greetMail("PIPELINING")
		// Read the whole batch before answering anything: a client that
		// waited for a reply between commands would stall here.
		for i := range n {
			if !p.expect("RCPT TO:<" + addrs[i] + ">") {
				return
			}
		}
		var b strings.Builder
		for i := range n {
			b.WriteString(batchReply(i))
		}
		p.send(b.String())
		p.drain()
	})
	s := dial(t, addr, testConfig())
	if _, err := s.Mail(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	before := s.RoundTrips()
	replies, err := s.RcptBatch(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != n {
		t.Fatalf("%d replies, want %d", len(replies), n)
	}
	checkBatch(t, replies)
	if d := s.RoundTrips() - before; d != 1 {
		t.Errorf("batch took %d round trips, want 1", d)
	}
}

func TestRcptBatchLockStep(t *testing.T) {
	const n = 20
	addrs := batchAddrs(n)
	addr := serve(t, func(p *peer) {
		p.greetMail("8BITMIME")
		for i := range n {
			if !p.expect("RCPT TO:<" + addrs[i] + ">") {
				return
			}
			// A pipelining client would have sent more in the same segment.
			if b := p.r.Buffered(); b != 0 {
				t.Errorf("server has %d more bytes before answering command %d", b, i)
			}
			p.send(batchReply(i))
		}
		p.drain()
	})
	s := dial(t, addr, testConfig())
	if _, err := s.Mail(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	before := s.RoundTrips()
	replies, err := s.RcptBatch(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != n {
		t.Fatalf("%d replies, want %d", len(replies), n)
	}
	checkBatch(t, replies)
	if d := s.RoundTrips() - before; d != n {
		t.Errorf("batch took %d round trips, want %d", d, n)
	}
}

func TestRcptBatchInterrupted(t *testing.T) {
	const n, k = 10, 4
	addrs := batchAddrs(n)
	tests := []struct {
		name       string
		pipelining bool
		last       string // sent after k normal replies; "" just hangs up
		wantLen    int
		wantErr    error
	}{
		{"pipelined drop", true, "", k, io.EOF},
		{"lock-step drop", false, "", k, io.EOF},
		{"pipelined 421", true, "421 4.7.0 bye\r\n", k + 1, ErrClosed},
		{"lock-step 421", false, "421 4.7.0 bye\r\n", k + 1, ErrClosed},
		{"pipelined garbage", true, "hello\r\n", k, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, func(p *peer) {
				if tt.pipelining {
					p.greetMail("PIPELINING")
					for i := range n {
						if !p.expect("RCPT TO:<" + addrs[i] + ">") {
							return
						}
					}
					for i := range k {
						p.send(batchReply(i))
					}
				} else {
					p.greetMail()
					for i := range k {
						if !p.expect("RCPT TO:<" + addrs[i] + ">") {
							return
						}
						p.send(batchReply(i))
					}
					if !p.expect("RCPT TO:<" + addrs[k] + ">") {
						return
					}
				}
				if tt.last != "" {
					p.send(tt.last)
				}
			})
			s := dial(t, addr, testConfig())
			if _, err := s.Mail(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			replies, err := s.RcptBatch(context.Background(), addrs)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(replies) != tt.wantLen {
				t.Fatalf("%d replies, want %d (err %v)", len(replies), tt.wantLen, err)
			}
			checkBatch(t, replies[:k])
			if !s.Closed() {
				t.Error("session not closed")
			}
		})
	}
}

func TestContextInterruptsStalledRead(t *testing.T) {
	tests := []struct {
		name       string
		pipelining bool
		cancel     bool // else the ctx deadline expires
		want       error
	}{
		{"cancel MAIL", false, true, context.Canceled},
		{"cancel pipelined batch", true, true, context.Canceled},
		{"ctx deadline", false, false, os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stalled := make(chan struct{})
			addr := serve(t, func(p *peer) {
				if tt.pipelining {
					p.greetMail("PIPELINING")
					p.expect("RCPT TO:<u0@example.test>")
					p.expect("RCPT TO:<u1@example.test>")
				} else {
					p.greet()
					p.expect("MAIL FROM:<>")
				}
				close(stalled)
				p.drain() // never answer
			})
			// testConfig's CommandTimeout is an hour: only ctx may end the
			// wait. Were ctx ignored, the server's safety net would end it
			// (an EOF, and a complaint from drain).
			s := dial(t, addr, testConfig())

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if !tt.cancel {
				// Long enough for MAIL to be sent before it passes, even
				// on a loaded machine: the wait for its reply is what the
				// deadline must end.
				ctx, cancel = context.WithTimeout(ctx, time.Second)
				defer cancel()
			}
			if tt.cancel {
				go func() {
					<-stalled
					cancel()
				}()
			}
			var err error
			if tt.pipelining {
				if _, err = s.Mail(context.Background(), false); err != nil {
					t.Fatal(err)
				}
				var replies []Reply
				replies, err = s.RcptBatch(ctx, batchAddrs(2))
				if len(replies) != 0 {
					t.Errorf("%d replies", len(replies))
				}
			} else {
				_, err = s.Mail(ctx, false)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !s.Closed() {
				t.Error("session not closed")
			}
		})
	}
}

func TestArgumentsCannotInjectCommands(t *testing.T) {
	bad := []string{
		"a@b.test\r\nDATA",
		"a@b.test\nRSET",
		"a@b.test\r",
		"a\x00@b.test",
		"a\t@b.test",
		"a\x7f@b.test",
		"a\u0085@b.test",
		"a@b.test> NOTIFY=NEVER",
		"<a@b.test",
		"a\xff@b.test",
	}
	addr := serve(t, func(p *peer) {
		p.greetMail()
		// The next thing on the wire must be RSET: none of the refused
		// commands may have sent a byte.
		if p.expect("RSET") {
			p.send("250 2.0.0 flushed\r\n")
		}
		p.drain()
	})
	s := dial(t, addr, testConfig())
	ctx := context.Background()
	if _, err := s.Mail(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, a := range bad {
		if r, err := s.Rcpt(ctx, a); !errors.Is(err, ErrBadArgument) {
			t.Errorf("Rcpt(%q) = %v, %v; want ErrBadArgument", a, r, err)
		}
		replies, err := s.RcptBatch(ctx, []string{"ok@b.test", a})
		if !errors.Is(err, ErrBadArgument) || len(replies) != 0 {
			t.Errorf("RcptBatch with %q = %v, %v; want ErrBadArgument", a, replies, err)
		}
	}
	// A cancelled ctx is refused before sending as well.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Rcpt(cctx, "ok@b.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("Rcpt with cancelled ctx: %v", err)
	}
	if s.Closed() {
		t.Fatal("refused arguments closed the session")
	}
	if r, err := s.Reset(ctx); err != nil || r.Code != 250 {
		t.Fatalf("Reset = %v, %v", r, err)
	}
}

func TestDialRejectsConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no HELO name", Config{}},
		{"CRLF in HELO name", Config{HeloName: "probe.test\r\nDATA"}},
		{"space in HELO name", Config{HeloName: "probe.test MAIL"}},
		{"CRLF in MAIL FROM", Config{HeloName: "probe.test", MailFrom: "a@b\r\nDATA"}},
		{"bracket in MAIL FROM", Config{HeloName: "probe.test", MailFrom: "a@b> SIZE=1"}},
		{"unknown TLS mode", Config{HeloName: "probe.test", TLS: TLSMode(9)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialed := false
			tt.cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed = true
				return nil, errors.New("must not dial")
			}
			s, err := Dial(context.Background(), "127.0.0.1:1", tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Dial accepted the config")
			}
			if !errors.Is(err, ErrBadArgument) {
				t.Errorf("err = %v, want ErrBadArgument", err)
			}
			if dialed {
				t.Error("Dial connected before rejecting the config")
			}
		})
	}
}

func TestTranscript(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test ESMTP\r\n")
		p.expect("EHLO probe.test")
		p.send("250-mx.test\r\n250 SMTPUTF8\r\n")
		p.expect("MAIL FROM:<bounce@probe.test> SMTPUTF8")
		p.send("250 2.1.0 ok\r\n")
		p.expect("RCPT TO:<jörg@example.test>")
		p.send("550 5.1.1 unknown\r\n")
		p.expect("QUIT")
		p.send("221 2.0.0 bye\r\n")
		p.drain()
	})
	var tr bytes.Buffer
	cfg := testConfig()
	cfg.MailFrom = "bounce@probe.test"
	cfg.Transcript = &tr
	s := dial(t, addr, cfg)
	ctx := context.Background()
	if _, err := s.Mail(ctx, true); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Rcpt(ctx, "jörg@example.test"); err != nil || r.Code != 550 {
		t.Fatalf("Rcpt = %v, %v", r, err)
	}
	if err := s.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Closed() {
		t.Error("not closed after Quit")
	}
	want := `S: 220 mx.test ESMTP
C: EHLO probe.test
S: 250-mx.test
S: 250 SMTPUTF8
C: MAIL FROM:<bounce@probe.test> SMTPUTF8
S: 250 2.1.0 ok
C: RCPT TO:<jörg@example.test>
S: 550 5.1.1 unknown
C: QUIT
S: 221 2.0.0 bye
`
	if tr.String() != want {
		t.Errorf("transcript:\n%s\nwant:\n%s", tr.String(), want)
	}
}

func TestConnectTimeout(t *testing.T) {
	// The dial hook stands in for an unreachable host: it only returns when
	// the context Dial gives it ends, which must be after ConnectTimeout.
	// Its context must carry a deadline ConnectTimeout after Dial was
	// called: between start+timeout and the hook's own now+timeout.
	cfg := testConfig()
	cfg.ConnectTimeout = 100 * time.Millisecond
	start := time.Now()
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		called := time.Now()
		if network != "tcp" || addr != "127.0.0.1:25" {
			t.Errorf("dial %s %s", network, addr)
		}
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(start.Add(cfg.ConnectTimeout)) || dl.After(called.Add(cfg.ConnectTimeout)) {
			t.Errorf("dial context deadline %v (set: %v), want ConnectTimeout (%v) after Dial was called",
				dl.Sub(start), ok, cfg.ConnectTimeout)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	s, err := Dial(context.Background(), "127.0.0.1:25", cfg)
	if err == nil {
		s.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < cfg.ConnectTimeout {
		t.Errorf("Dial gave up after %v, before ConnectTimeout (%v)", d, cfg.ConnectTimeout)
	}
}
