package mailsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	w := oneHostWorld("tls", "127.0.2.1", Host{STARTTLS: true})
	w.Hosts = append(w.Hosts, Host{Name: "mx.plain.test", IP: "127.0.2.2"})
	s := startSim(t, w)
	if s.CertPool() == nil {
		t.Fatal("CertPool is nil with a STARTTLS host")
	}
	tests := []struct {
		name string
		conf *tls.Config
	}{
		{"insecure", &tls.Config{InsecureSkipVerify: true}},
		{"verified by name", &tls.Config{RootCAs: s.CertPool(), ServerName: "mx.tls.test"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialSMTP(t, s, "127.0.2.1")
			code, ext := c.ehlo()
			if code != 250 || !slices.Contains(ext, "STARTTLS") || !slices.Contains(ext, "PIPELINING") {
				t.Fatalf("EHLO before TLS: %d %q", code, ext)
			}
			c.expect("STARTTLS", 220, "2.0.0")
			tconn := tls.Client(c.conn, tc.conf)
			if err := tconn.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c.tp = textproto.NewConn(tconn)
			code, ext = c.ehlo()
			if code != 250 || slices.Contains(ext, "STARTTLS") || !slices.Contains(ext, "PIPELINING") {
				t.Fatalf("EHLO after TLS: %d %q", code, ext)
			}
			// Checked after a reply over TLS: the client's side of the
			// handshake ends before the server's.
			if got := s.TLSSessions("mx.tls.test"); got != i+1 {
				t.Errorf("TLSSessions = %d, want %d", got, i+1)
			}
			c.expect("MAIL FROM:<>", 250, "")
			c.expect("RCPT TO:<alice@tls.test>", 250, "")
			c.expect("RCPT TO:<nobody@tls.test>", 550, "5.1.1")
			c.expect("STARTTLS", 502, "") // already secured
			c.expect("QUIT", 221, "")
		})
	}
	// Commands after the handshake are still seen and counted.
	for verb, want := range map[string]int{"EHLO": 4, "STARTTLS": 4, "RCPT": 4, "QUIT": 2} {
		if got := s.Commands("mx.tls.test", verb); got != want {
			t.Errorf("Commands(%s) = %d, want %d", verb, got, want)
		}
	}

	t.Run("not offered", func(t *testing.T) {
		c := dialSMTP(t, s, "127.0.2.2")
		if code, ext := c.ehlo(); code != 250 || slices.Contains(ext, "STARTTLS") {
			t.Fatalf("EHLO: %d %q", code, ext)
		}
		c.expect("STARTTLS", 502, "")
		c.expect("NOOP", 250, "") // still plaintext SMTP
		if got := s.TLSSessions("mx.plain.test"); got != 0 {
			t.Errorf("TLSSessions = %d", got)
		}
	})
}

func TestNoCertPoolWithoutSTARTTLS(t *testing.T) {
	t.Parallel()
	if s := startSim(t, Example()); s.CertPool() != nil {
		t.Error("CertPool without any STARTTLS host")
	}
}

// TestEHLOVariants checks what the greeting offers and that a session works
// after it.
func TestEHLOVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		host       Host
		ehloCode   int
		pipelining bool
		starttls   bool
	}{
		{"default", Host{}, 250, true, false},
		{"no pipelining", Host{NoPipelining: true}, 250, false, false},
		{"no pipelining, starttls", Host{NoPipelining: true, STARTTLS: true}, 250, false, true},
		{"helo only", Host{HELOOnly: true}, 502, false, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := fmt.Sprintf("127.0.2.%d", 10*(i+1))
			s := startSim(t, oneHostWorld("ehlo", ip, tc.host))
			c := dialSMTP(t, s, ip)
			code, ext := c.ehlo()
			if code != tc.ehloCode {
				t.Fatalf("EHLO: %d, want %d", code, tc.ehloCode)
			}
			if got := slices.Contains(ext, "PIPELINING"); got != tc.pipelining {
				t.Errorf("PIPELINING offered: %v, want %v (%q)", got, tc.pipelining, ext)
			}
			if got := slices.Contains(ext, "STARTTLS"); got != tc.starttls {
				t.Errorf("STARTTLS offered: %v, want %v (%q)", got, tc.starttls, ext)
			}
			if code == 250 && !slices.Contains(ext, "ENHANCEDSTATUSCODES") {
				t.Errorf("rewritten EHLO lost other extensions: %q", ext)
			}
			if code != 250 {
				c.expect("HELO client.test", 250, "")
			}
			// Pipelined commands are answered in order either way.
			c.send("MAIL FROM:<>", "RCPT TO:<alice@ehlo.test>", "RCPT TO:<zed@ehlo.test>", "NOOP")
			for _, want := range []int{250, 250, 550, 250} {
				if got, msg := c.read(); got != want {
					t.Fatalf("pipelined reply %d %s, want %d", got, msg, want)
				}
			}
		})
	}
}

func TestBannerDelay(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	s := startSim(t, oneHostWorld("tarpit", "127.0.2.60", Host{BannerDelay: delay}))
	start := time.Now()
	c := dialSMTP(t, s, "127.0.2.60")
	if d := time.Since(start); d < delay {
		t.Errorf("banner after %v, want >= %v", d, delay)
	}
	// Only the banner is delayed. Were every reply held back as long, the
	// lock-step exchanges below would take at least commands*delay, longer
	// than the connection's deadline (ioTimeout), and fail; undelayed they
	// take a few milliseconds.
	commands := int(ioTimeout/delay) + 10
	_ = c.conn.SetDeadline(time.Now().Add(ioTimeout))
	c.expect("EHLO client.test", 250, "")
	for range commands - 1 {
		c.expect("NOOP", 250, "")
	}
}

func TestClose421After(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("limit", "127.0.2.61", Host{Close421After: 3}))
	t.Run("lock-step", func(t *testing.T) {
		c := dialSMTP(t, s, "127.0.2.61")
		c.expect("EHLO client.test", 250, "")
		c.expect("MAIL FROM:<>", 250, "")
		c.expect("RCPT TO:<alice@limit.test>", 250, "")
		c.expect("RCPT TO:<bob@limit.test>", 421, "4.7.0 too many commands")
		if b, err := io.ReadAll(c.conn); err != nil || len(b) != 0 {
			t.Fatalf("after 421: %q, %v; want the connection closed", b, err)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		c := dialSMTP(t, s, "127.0.2.61") // the limit is per connection
		c.send("HELO client.test", "MAIL FROM:<>", "RCPT TO:<alice@limit.test>", "RCPT TO:<bob@limit.test>", "NOOP")
		for _, want := range []int{250, 250, 250, 421} {
			if got, msg := c.read(); got != want {
				t.Fatalf("reply %d %s, want %d", got, msg, want)
			}
		}
		if b, err := io.ReadAll(c.conn); err != nil || len(b) != 0 {
			t.Fatalf("after 421: %q, %v; want the connection closed", b, err)
		}
	})
}

func TestResetAfterRcpts(t *testing.T) {
	t.Parallel()
	const n = 2
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run("rtt="+rtt.String(), func(t *testing.T) {
			t.Parallel()
			ip := "127.0.2.62"
			if rtt > 0 {
				ip = "127.0.2.63"
			}
			w := oneHostWorld("reset", ip, Host{ResetAfterRcpts: n})
			s, err := Start(t.Context(), w, Options{RTT: rtt})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			c := dialSMTP(t, s, ip)
			c.expect("EHLO client.test", 250, "")
			c.expect("MAIL FROM:<>", 250, "")
			for range n {
				c.expect("RCPT TO:<alice@reset.test>", 250, "")
			}
			c.send("RCPT TO:<bob@reset.test>")
			if _, _, err := c.tp.ReadResponse(0); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after RCPT %d: %v, want ECONNRESET", n+1, err)
			}
			if got := s.Commands(w.Hosts[0].Name, "RCPT"); got != n+1 {
				t.Errorf("Commands(RCPT) = %d, want %d", got, n+1)
			}

			// Pipelined: the replies before the reset still arrive.
			c = dialSMTP(t, s, ip)
			c.expect("EHLO client.test", 250, "")
			c.send("MAIL FROM:<>", "RCPT TO:<alice@reset.test>", "RCPT TO:<bob@reset.test>", "RCPT TO:<x@reset.test>", "RCPT TO:<y@reset.test>")
			for range 1 + n {
				if code, msg := c.read(); code != 250 {
					t.Fatalf("pipelined reply %d %s", code, msg)
				}
			}
			if _, _, err := c.tp.ReadResponse(0); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("pipelined, after RCPT %d: %v, want ECONNRESET", n+1, err)
			}
		})
	}
}

func TestGreylist(t *testing.T) {
	t.Parallel()
	const delay = 5 * time.Minute
	clock := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	w := World{
		Domains: []Domain{
			{Name: "grey.test", MX: []MX{{Preference: 10, Host: "mx.grey.test"}}, Mailboxes: []string{"alice", "bob"}, Greylist: delay},
			{Name: "white.test", MX: []MX{{Preference: 10, Host: "mx.grey.test"}}, Mailboxes: []string{"carol"}},
		},
		Hosts: []Host{{Name: "mx.grey.test", IP: "127.0.2.64"}},
	}
	s, err := Start(t.Context(), w, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	steps := []struct {
		advance time.Duration // before this step
		from    string
		rcpt    string
		code    int
	}{
		{0, "a@client.test", "alice@grey.test", 451},
		{0, "a@client.test", "carol@white.test", 250}, // not greylisted
		{delay - time.Second, "a@client.test", "alice@grey.test", 451},
		{time.Second, "a@client.test", "alice@grey.test", 250},
		{0, "a@client.test", "ALICE@grey.test", 250}, // case does not make a new triplet
		{0, "a@client.test", "bob@grey.test", 451},   // own triplet
		{0, "b@client.test", "alice@grey.test", 451}, // other sender: own triplet
		{0, "a@client.test", "nobody@grey.test", 451},
		{delay, "a@client.test", "bob@grey.test", 250},
		{0, "a@client.test", "nobody@grey.test", 550}, // after the wait, the truth
		{0, "b@client.test", "alice@grey.test", 250},
		{0, "a@client.test", "alice@grey.test", 250}, // stays passed
	}
	c := dialSMTP(t, s, "127.0.2.64")
	c.expect("EHLO client.test", 250, "")
	for i, st := range steps {
		clock.advance(st.advance)
		c.expect("RSET", 250, "")
		c.expect("MAIL FROM:<"+st.from+">", 250, "")
		code, msg := c.cmd("RCPT TO:<" + st.rcpt + ">")
		if code != st.code {
			t.Fatalf("step %d, %s -> %s: %d %s, want %d", i, st.from, st.rcpt, code, msg, st.code)
		}
		if code == 451 && msg != "4.7.1 Greylisted, try again later" {
			t.Errorf("step %d: greylisting reply %q", i, msg)
		}
	}
	// The triplet is remembered across connections from the same IP.
	c = dialSMTP(t, s, "127.0.2.64")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<a@client.test>", 250, "")
	c.expect("RCPT TO:<alice@grey.test>", 250, "")
}

func TestTurns(t *testing.T) {
	t.Parallel()
	const n = 10
	host := "mx.turns.test"
	s := startSim(t, oneHostWorld("turns", "127.0.2.65", Host{}))
	c := dialSMTP(t, s, "127.0.2.65")
	c.expect("EHLO client.test", 250, "")
	if got := s.Turns(host); got != 1 {
		t.Fatalf("Turns after EHLO = %d, want 1", got)
	}

	batch := []string{"MAIL FROM:<>"}
	for range n {
		batch = append(batch, "RCPT TO:<alice@turns.test>")
	}
	c.send(batch...)
	for range batch {
		if code, msg := c.read(); code != 250 {
			t.Fatalf("pipelined: %d %s", code, msg)
		}
	}
	if got := s.Turns(host); got != 2 {
		t.Fatalf("Turns after one pipelined group = %d, want 2", got)
	}

	for range n {
		c.expect("RCPT TO:<bob@turns.test>", 250, "")
	}
	if got := s.Turns(host); got != 2+n {
		t.Fatalf("Turns after %d lock-step RCPT = %d, want %d", n, got, 2+n)
	}

	// A command that arrives in pieces, with no reply in between, is still
	// one turn. The pause only makes the server likely to read the pieces
	// separately; the count must not depend on it.
	if _, err := c.conn.Write([]byte("RCPT TO:<alice")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.expect("@turns.test>", 250, "")
	if got := s.Turns(host); got != 3+n {
		t.Fatalf("Turns after a command in two writes = %d, want %d", got, 3+n)
	}
}

func TestCommandTimes(t *testing.T) {
	t.Parallel()
	s := startSim(t, oneHostWorld("times", "127.0.2.66", Host{}))
	c := dialSMTP(t, s, "127.0.2.66")
	c.expect("EHLO client.test", 250, "")
	c.expect("MAIL FROM:<>", 250, "")
	var sent, answered []time.Time
	for range 3 {
		sent = append(sent, time.Now())
		c.expect("RCPT TO:<alice@times.test>", 250, "")
		answered = append(answered, time.Now())
	}
	c.send("RCPT TO:<a@times.test>", "RCPT TO:<b@times.test>")
	c.read()
	c.read()

	got := s.CommandTimes("MX.times.test.", "rcpt")
	if len(got) != 5 {
		t.Fatalf("%d RCPT times, want 5", len(got))
	}
	for i := range 3 {
		if got[i].Before(sent[i]) || got[i].After(answered[i]) {
			t.Errorf("RCPT %d arrived at %v, outside [%v, %v]", i, got[i], sent[i], answered[i])
		}
	}
	if !got[3].Equal(got[4]) || got[3].Before(got[2]) {
		t.Errorf("pipelined RCPT times %v, %v: want equal and after %v", got[3], got[4], got[2])
	}
	if ts := s.CommandTimes("mx.times.test", "DATA"); len(ts) != 0 {
		t.Errorf("DATA times %v", ts)
	}
	got[0] = time.Time{} // the result is a copy
	if s.CommandTimes("mx.times.test", "RCPT")[0].IsZero() {
		t.Error("CommandTimes returned the Sim's own slice")
	}
}

func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	w := World{Hosts: []Host{
		{Name: "a.conc.test", IP: "127.0.2.67"},
		{Name: "b.conc.test", IP: "127.0.2.68"},
		{Name: "c.conc.test", IP: "127.0.2.69"},
	}}
	s := startSim(t, w)
	for range 3 {
		dialSMTP(t, s, "127.0.2.67") // greeted: accepted and counted
	}
	dialSMTP(t, s, "127.0.2.68")
	// Sequential connections never overlap.
	for range 3 {
		c := dialSMTP(t, s, "127.0.2.69")
		c.expect("QUIT", 221, "")
		if _, err := io.ReadAll(c.conn); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		host string
		want int
	}{{"a.conc.test", 3}, {"b.conc.test", 1}, {"c.conc.test", 1}, {"nowhere.test", 0}}
	for _, tc := range tests {
		if got := s.MaxConcurrent(tc.host); got != tc.want {
			t.Errorf("MaxConcurrent(%s) = %d, want %d", tc.host, got, tc.want)
		}
	}
	if got := s.MaxConcurrentTotal(); got != 5 {
		t.Errorf("MaxConcurrentTotal = %d, want 5 (a, b and one of c)", got)
	}
	if got := s.Connections("c.conc.test"); got != 3 {
		t.Errorf("Connections(c) = %d, want 3", got)
	}
}

// TestMaxConcurrentTotal counts open connections over hosts.
func TestMaxConcurrentTotal(t *testing.T) {
	t.Parallel()
	w := World{Hosts: []Host{{Name: "a.total.test", IP: "127.0.2.70"}, {Name: "b.total.test", IP: "127.0.2.71"}}}
	s := startSim(t, w)
	dialSMTP(t, s, "127.0.2.70")
	dialSMTP(t, s, "127.0.2.70")
	dialSMTP(t, s, "127.0.2.71")
	if got := s.MaxConcurrentTotal(); got != 3 {
		t.Errorf("MaxConcurrentTotal = %d, want 3", got)
	}
}

// TestRewriteEHLO checks that only a positive EHLO reply is rewritten.
func TestRewriteEHLO(t *testing.T) {
	t.Parallel()
	full := "250-mx Hello c\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10\r\n"
	tests := []struct {
		name         string
		in           string
		drop, addTLS bool
		want         string
	}{
		{"unchanged", full, false, false, full},
		{"drop", full, true, false, "250-mx Hello c\r\n250-8BITMIME\r\n250 SIZE 10\r\n"},
		{"add", full, false, true, "250-mx Hello c\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10\r\n"},
		{"single line", "250 mx Hello c\r\n", true, true, "250-mx Hello c\r\n250 STARTTLS\r\n"},
		{"error", "501 5.5.2 bad\r\n", true, true, "501 5.5.2 bad\r\n"},
	}
	for _, tc := range tests {
		if got := string(rewriteEHLO([]byte(tc.in), tc.drop, tc.addTLS)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if strings.Contains(full, "STARTTLS") {
		t.Fatal("bad fixture")
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	w := World{Hosts: []Host{{Name: "one.conn.test", IP: "127.0.2.70", MaxConnections: 1}}}
	s := startSim(t, w)
	first := dialSMTP(t, s, "127.0.2.70") // greeted
	second := dialRaw(t, s, "127.0.2.70")
	if code, msg := second.read(); code != 421 || !strings.Contains(msg, "too many connections") {
		t.Fatalf("second connection: %d %q, want 421", code, msg)
	}
	if _, err := io.ReadAll(second.conn); err != nil {
		t.Fatalf("after 421: %v, want the connection closed", err)
	}
	first.expect("QUIT", 221, "")
	io.ReadAll(first.conn)
	// The slot is free again once the first session is over.
	third := dialSMTP(t, s, "127.0.2.70")
	third.expect("QUIT", 221, "")
}
