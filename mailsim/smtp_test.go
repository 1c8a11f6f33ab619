package mailsim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestRcptReplies(t *testing.T) {
	t.Parallel()
	w := Example()
	s := startSim(t, w)
	tests := []struct {
		host string
		rcpt string
		code int
		msg  string // prefix of the reply text
	}{
		{"mx1.acme.test", "alice@acme.test", 250, ""},
		{"mx1.acme.test", "ALICE@Acme.Test", 250, ""},
		{"mx1.acme.test", "zack@acme.test", 550, "5.1.1 no such user"},
		{"mx1.acme.test", "full@acme.test", 552, "5.2.2 mailbox full"},
		{"mx1.acme.test", "Blocked@acme.test", 550, "5.7.1 policy rejection"},
		{"mx1.acme.test", "hank@globex.test", 554, "5.7.1 relay access denied"},
		{"mx1.acme.test", "x@nowhere.test", 550, "5.1.2"},
		{"mx1.acme.test", "postmaster", 501, "5.5.2"}, // go-smtp rejects it before the backend
		{"mx2.acme.test", "bob@acme.test", 250, ""},
		{"mx.mailhost.test", "hank@globex.test", 250, ""},
		{"mx.mailhost.test", "peter@initech.test", 250, ""},
		{"mx.mailhost.test", "hank@initech.test", 550, "5.1.1"},
		{"implicit.test", "info@implicit.test", 250, ""},
		{"implicit.test", "ghost@implicit.test", 550, "5.1.1"},
		{"mx.catchall.test", "anything-at-all@catchall.test", 250, ""},
		{"mx.catchall.test", "x@acme.test", 554, "5.7.1"},
	}
	clients := map[string]*rawClient{}
	rcpts := map[string]int{}
	for _, tc := range tests {
		c := clients[tc.host]
		if c == nil {
			c = dialSMTP(t, s, ipOf(t, w, tc.host))
			if !strings.HasPrefix(c.greeting, tc.host+" ") {
				t.Errorf("greeting %q does not name %s", c.greeting, tc.host)
			}
			c.expect("EHLO client.test", 250, "")
			c.expect("MAIL FROM:<probe@client.test>", 250, "")
			clients[tc.host] = c
		}
		code, msg := c.cmd("RCPT TO:<" + tc.rcpt + ">")
		rcpts[tc.host]++
		if code != tc.code || !strings.HasPrefix(msg, tc.msg) {
			t.Errorf("%s RCPT %s: got %d %q, want %d %q", tc.host, tc.rcpt, code, msg, tc.code, tc.msg)
		}
	}
	for host, c := range clients {
		c.expect("QUIT", 221, "")
		counts := map[string]int{
			"EHLO": 1, "MAIL": 1, "RCPT": rcpts[host], "QUIT": 1, "DATA": 0, "RSET": 0,
		}
		for verb, want := range counts {
			if got := s.Commands(host, verb); got != want {
				t.Errorf("Commands(%s, %s) = %d, want %d", host, verb, got, want)
			}
		}
		if got := s.Connections(host); got != 1 {
			t.Errorf("Connections(%s) = %d, want 1", host, got)
		}
	}
	if got := s.TotalConnections(); got != len(clients) {
		t.Errorf("TotalConnections = %d, want %d", got, len(clients))
	}
	if got := s.TotalCommands("rcpt"); got != len(tests) {
		t.Errorf("TotalCommands(rcpt) = %d, want %d", got, len(tests))
	}
	if got := s.Connections("mx.slow.test"); got != 0 {
		t.Errorf("Connections(mx.slow.test) = %d, want 0", got)
	}
}

// TestPipelinedBatch sends MAIL and many RCPT in one write, as a pipelining
// prober does, and checks every command is counted on one connection.
func TestPipelinedBatch(t *testing.T) {
	t.Parallel()
	w := Example()
	s := startSim(t, w)
	c := dialSMTP(t, s, ipOf(t, w, "mx.mailhost.test"))
	c.expect("EHLO client.test", 250, "")

	batch := []string{"MAIL FROM:<>"}
	want := []int{250}
	for i := range 20 {
		if i%2 == 0 {
			batch = append(batch, "RCPT TO:<peter@initech.test>")
			want = append(want, 250)
		} else {
			batch = append(batch, fmt.Sprintf("rcpt to:<nobody%d@globex.test>", i))
			want = append(want, 550)
		}
	}
	batch = append(batch, "RSET")
	want = append(want, 250)
	if _, err := c.conn.Write([]byte(strings.Join(batch, "\r\n") + "\r\n")); err != nil {
		t.Fatal(err)
	}
	for i, code := range want {
		if got, msg := c.read(); got != code {
			t.Fatalf("reply %d to %q: %d %s, want %d", i, batch[i], got, msg, code)
		}
	}
	tests := []struct {
		verb string
		want int
	}{{"EHLO", 1}, {"MAIL", 1}, {"RCPT", 20}, {"RSET", 1}, {"DATA", 0}}
	for _, tc := range tests {
		if got := s.Commands("MX.MAILHOST.TEST.", tc.verb); got != tc.want {
			t.Errorf("Commands(%s) = %d, want %d", tc.verb, got, tc.want)
		}
	}
	if got := s.Connections("mx.mailhost.test"); got != 1 {
		t.Errorf("Connections = %d, want 1", got)
	}
}

func TestEHLOAdvertisesPipelining(t *testing.T) {
	t.Parallel()
	w := Example()
	s := startSim(t, w)
	c, err := smtp.Dial(net.JoinHostPort(ipOf(t, w, "mx1.acme.test"), strconv.Itoa(s.SMTPPort())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("PIPELINING"); !ok {
		t.Error("PIPELINING not advertised")
	}
	if err := c.Mail("probe@client.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("dave@acme.test", nil); err != nil {
		t.Errorf("Rcpt existing: %v", err)
	}
	var se *smtp.SMTPError
	if err := c.Rcpt("nobody@acme.test", nil); !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("Rcpt missing: %v, want 550 5.1.1", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// TestDataCounted proves DATA is visible in the counters, that body lines
// which look like commands are not counted, and that a rejected DATA does
// not swallow the commands after it.
func TestDataCounted(t *testing.T) {
	t.Parallel()
	w := Example()
	s := startSim(t, w)
	host := "mx1.acme.test"

	c := dialSMTP(t, s, ipOf(t, w, host))
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<a@client.test>", 250, "")
	c.expect("DATA", 502, "") // no recipient yet: rejected, no body follows
	c.expect("RCPT TO:<alice@acme.test>", 250, "")
	c.expect("DATA", 354, "")
	body := "Subject: hi\r\n\r\nRCPT TO:<x@acme.test>\r\nQUIT\r\n..leading dot\r\n.\r\n"
	if _, err := c.conn.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if code, msg := c.read(); code != 554 {
		t.Fatalf("end of DATA: %d %s, want 554", code, msg)
	}
	c.expect("RSET", 250, "")

	// A BDAT chunk's bytes are not commands either.
	c.expect("MAIL FROM:<a@client.test>", 250, "")
	c.expect("RCPT TO:<bob@acme.test>", 250, "")
	chunk := "MAIL FROM:<x>\r\nQUIT\r\n"
	if _, err := fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(chunk), chunk); err != nil {
		t.Fatal(err)
	}
	if code, msg := c.read(); code != 554 {
		t.Fatalf("BDAT: %d %s, want 554", code, msg)
	}
	c.expect("NOOP", 250, "")
	c.expect("QUIT", 221, "")

	tests := []struct {
		verb string
		want int
	}{{"DATA", 2}, {"BDAT", 1}, {"RCPT", 2}, {"MAIL", 2}, {"RSET", 1}, {"QUIT", 1}, {"NOOP", 1}, {"SUBJECT:", 0}}
	for _, tc := range tests {
		if got := s.Commands(host, tc.verb); got != tc.want {
			t.Errorf("Commands(%s) = %d, want %d", tc.verb, got, tc.want)
		}
	}
	if got := s.TotalCommands("DATA"); got != 2 {
		t.Errorf("TotalCommands(DATA) = %d, want 2", got)
	}
}

func TestMaxRecipients(t *testing.T) {
	t.Parallel()
	w := World{
		Domains: []Domain{{Name: "limit.test", MX: []MX{{Preference: 1, Host: "mx.limit.test"}}, CatchAll: true}},
		Hosts:   []Host{{Name: "mx.limit.test", IP: "127.0.0.70", MaxRecipients: 2}},
	}
	s := startSim(t, w)
	c := dialSMTP(t, s, "127.0.0.70")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<a@limit.test>", 250, "")
	c.expect("RCPT TO:<b@limit.test>", 250, "")
	c.expect("RCPT TO:<c@limit.test>", 452, "4.5.3")
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<c@limit.test>", 250, "") // the limit is per transaction
}

func TestDownHostRefuses(t *testing.T) {
	t.Parallel()
	w := World{
		Domains: []Domain{{Name: "down.test", MX: []MX{{Preference: 1, Host: "mx1.down.test"}, {Preference: 2, Host: "mx2.down.test"}}, Mailboxes: []string{"a"}}},
		Hosts: []Host{
			{Name: "mx1.down.test", IP: "127.0.0.71", Down: true},
			{Name: "mx2.down.test", IP: "127.0.0.72"},
		},
	}
	s := startSim(t, w)
	_, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.71", strconv.Itoa(s.SMTPPort())), ioTimeout)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial down host: %v, want connection refused", err)
	}
	c := dialSMTP(t, s, "127.0.0.72")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RCPT TO:<a@down.test>", 250, "") // the backup serves the domain
	if got := s.Connections("mx1.down.test"); got != 0 {
		t.Errorf("Connections(down host) = %d", got)
	}
}

func TestRcptDelay(t *testing.T) {
	t.Parallel()
	const delay = 150 * time.Millisecond
	w := World{
		Domains: []Domain{{Name: "tarpit.test", MX: []MX{
			{Preference: 1, Host: "mx.tarpit.test"}, {Preference: 2, Host: "mx.tarpit2.test"},
		}, Mailboxes: []string{"a"}}},
		Hosts: []Host{
			{Name: "mx.tarpit.test", IP: "127.0.0.73", RcptDelay: delay},
			{Name: "mx.tarpit2.test", IP: "127.0.0.75", RcptDelay: time.Hour},
		},
	}
	s := startSim(t, w)
	c := dialSMTP(t, s, "127.0.0.73")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	for _, rcpt := range []string{"a", "b"} {
		start := time.Now()
		c.cmd("RCPT TO:<" + rcpt + "@tarpit.test>")
		if d := time.Since(start); d < delay {
			t.Errorf("RCPT %s answered after %v, want >= %v", rcpt, d, delay)
		}
	}

	// Only RCPT is delayed: on a host that holds every RCPT for an hour,
	// the other commands are answered within ioTimeout, which an hour's
	// delay would exceed, and a RCPT is not.
	c = dialSMTP(t, s, "127.0.0.75")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("RSET", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	c.expect("NOOP", 250, "")
	// And the hour is real: the RCPT is still unanswered a while later.
	if err := c.tp.PrintfLine("RCPT TO:<a@tarpit.test>"); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if code, msg, err := c.tp.ReadResponse(0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("RCPT answered %d %q (%v) by a host that delays it an hour", code, msg, err)
	}
}

// TestCloseInterruptsDelay shows Close does not wait out a long RCPT delay.
func TestCloseInterruptsDelay(t *testing.T) {
	t.Parallel()
	w := World{
		Domains: []Domain{{Name: "tarpit.test", MX: []MX{{Preference: 1, Host: "mx.tarpit.test"}}, CatchAll: true}},
		Hosts:   []Host{{Name: "mx.tarpit.test", IP: "127.0.0.74", RcptDelay: time.Hour}},
	}
	s, err := Start(t.Context(), w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, s, "127.0.0.74")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	if err := c.tp.PrintfLine("RCPT TO:<a@tarpit.test>"); err != nil {
		t.Fatal(err)
	}
	// The server counts the line when it reads it, just before it sleeps.
	for deadline := time.Now().Add(ioTimeout); s.Commands("mx.tarpit.test", "RCPT") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("RCPT never reached the server")
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Close waited for the RCPT delay")
	}
	// Whatever the server managed to say, the connection is over.
	if _, _, err := c.tp.ReadResponse(250); err == nil {
		t.Fatal("RCPT accepted after Close")
	}
}

// A Raw reply reaches the client byte for byte, one or more lines.
func TestRawRcptReplies(t *testing.T) {
	t.Parallel()
	raws := map[string]string{
		"google": "550-5.1.1 The email account that you tried to reach does not exist. Please try\n" +
			"550-5.1.1 double-checking the recipient's email address for typos or\n" +
			"550-5.1.1 unnecessary spaces. Learn more at\n" +
			"550 5.1.1  https://support.google.com/mail/?p=NoSuchUser x - gsmtp",
		"chkuser": "511 sorry, no mailbox here by that name (#5.1.1 - chkuser)",
		"exim":    "550-Verification failed for <probe@client.test>\n550-Unrouteable address\n550 Sender verify failed",
		"ok":      "250 2.1.5 Recipient ok, and a trailing space ",
	}
	w := World{
		Domains: []Domain{{Name: "raw.test", MX: []MX{{Preference: 10, Host: "mx.raw.test"}}, Replies: map[string]Reply{}}},
		Hosts:   []Host{{Name: "mx.raw.test", IP: "127.0.0.90"}},
	}
	for local, raw := range raws {
		w.Domains[0].Replies[local] = Reply{Raw: raw}
	}
	s := startSim(t, w)
	c := dialSMTP(t, s, "127.0.0.90")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<probe@client.test>", 250, "")
	for local, raw := range raws {
		if err := c.tp.PrintfLine("RCPT TO:<%s@raw.test>", local); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			line, err := c.tp.ReadLine()
			if err != nil {
				t.Fatalf("%s: %v", local, err)
			}
			got = append(got, line)
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
		if g := strings.Join(got, "\n"); g != raw {
			t.Errorf("%s: server wrote\n%s\nwant\n%s", local, g, raw)
		}
	}
	c.expect("QUIT", 221, "")
}
