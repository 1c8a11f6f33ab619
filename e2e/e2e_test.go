package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPostfixNSD runs bulkverify against a real postfix and a real nsd. One
// stack serves every subtest; they run in order because each reads the
// part of the postfix log its own bulkverify run wrote.
func TestPostfixNSD(t *testing.T) {
	st := startStack(t)
	t.Run("Servers", func(t *testing.T) { testServers(t, st) })
	t.Run("UpAgain", func(t *testing.T) { testUpAgain(t, st) })
	t.Run("OneOfEach", func(t *testing.T) { testOneOfEach(t, st) })
	t.Run("Failover", func(t *testing.T) { testFailover(t, st) })
	t.Run("ErrorLimit", func(t *testing.T) { testErrorLimit(t, st) })
	t.Run("SOCKS", func(t *testing.T) { testSOCKS(t, st) })
	t.Run("DataIsSeen", func(t *testing.T) { testDataIsSeen(t, st) })
}

// testServers proves the world is what the other tests assume: every
// listener offers PIPELINING and STARTTLS and completes a TLS handshake,
// and nothing listens on the "down" MX host's address.
func testServers(t *testing.T, st *stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ip := range []string{mx1Addr, mx2Addr, implicitAddr, strictAddr} {
		addr := net.JoinHostPort(ip, strconv.Itoa(st.smtpPort))
		if err := checkServer(ctx, addr, st.env["TLS_CERT"]); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	down := net.JoinHostPort(downAddr, strconv.Itoa(st.smtpPort))
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", down)
	if err == nil {
		c.Close()
		t.Fatalf("something listens on %s, which must be down for the failover test", down)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing %s: %v, want connection refused", down, err)
	}
}

// testUpAgain proves up.sh is idempotent: run again on a running world it
// succeeds and starts nothing new.
func testUpAgain(t *testing.T, st *stack) {
	pids := func() (string, string) {
		nsd, err1 := os.ReadFile(filepath.Join(st.work, "nsd", "nsd.pid"))
		master, err2 := os.ReadFile(filepath.Join(st.env["POSTFIX_QUEUE"], "pid", "master.pid"))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(nsd)), strings.TrimSpace(string(master))
	}
	nsd1, master1 := pids()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, st.bash, filepath.Join(st.scripts, "up.sh"), st.work).CombinedOutput()
	if err != nil {
		t.Fatalf("up.sh a second time: %v\n%s", err, out)
	}
	for _, want := range []string{"nsd already running", "postfix already running"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("up.sh a second time says:\n%s\nwant it to say %q", out, want)
		}
	}
	if nsd2, master2 := pids(); nsd2 != nsd1 || master2 != master1 {
		t.Errorf("PIDs changed: nsd %s -> %s, postfix master %s -> %s", nsd1, nsd2, master1, master2)
	}
}

// want is the verdict one input row must get.
type want struct {
	id, input string
	email     string // the address as written in the output
	status    string
	reason    string
	code      string // smtp_code; "" when no SMTP reply decided it
	enhanced  string
	mx        string
	msg       string // a part of smtp_message
	catchAll  string // "true", "false", or "" for not determined
	attempts  string // "" = not checked here
}

// accepted is a mailbox postfix has, in a domain that is not catch-all:
// the random address of bulkverify's catch-all check is refused there.
func accepted(id, addr, email, mx string) want {
	return want{id: id, input: addr, email: email, status: "deliverable", reason: "accepted",
		code: "250", enhanced: "2.1.5", mx: mx, msg: "Ok", catchAll: "false", attempts: "1"}
}

// acceptAll is any address of the catch-all domain: accepted, but that
// says nothing (DESIGN.md: risky, accept_all).
func acceptAll(id, addr, email, mx string) want {
	return want{id: id, input: addr, email: email, status: "risky", reason: "accept_all",
		code: "250", enhanced: "2.1.5", mx: mx, msg: "Ok", catchAll: "true", attempts: "1"}
}

func userUnknown(id, addr, mx string) want {
	return want{id: id, input: addr, email: addr, status: "undeliverable", reason: "mailbox_unknown",
		code: "550", enhanced: "5.1.1", mx: mx, msg: "User unknown in virtual mailbox table",
		catchAll: "false", attempts: "1"}
}

// decidedWithoutSMTP is a row no mail server was asked about: the address
// is invalid or DNS settled it. Nothing is known about catch-all then.
func decidedWithoutSMTP(id, addr, email, status, reason, mx string) want {
	return want{id: id, input: addr, email: email, status: status, reason: reason, mx: mx, attempts: "0"}
}

// mainWants is one of each kind of address. Every domain served by mx1
// (acme, catchall, relay) shares one MX host, so bulkverify should ask all
// of them on one connection; 30 of them are accepted, more than postfix's
// smtpd_recipient_limit of 20, so that connection needs several MAIL
// transactions.
func mainWants() []want {
	const mx1, implicit = "mx1.acme.test", "implicit.test"
	ws := []want{
		accepted("acme-alice", "alice@acme.test", "alice@acme.test", mx1),
		accepted("acme-alice-again", "alice@acme.test", "alice@acme.test", mx1),
		accepted("acme-bob", "bob@acme.test", "bob@acme.test", mx1),
		// The domain is case-folded, the local part is not (RFC 5321);
		// postfix's lookup tables fold it anyway.
		accepted("acme-carol", "Carol@Acme.Test", "Carol@acme.test", mx1),
		userUnknown("acme-zack", "zack@acme.test", mx1),
		userUnknown("acme-nobody", "nobody@acme.test", mx1),
		acceptAll("catchall-anyone", "anyone@catchall.test", "anyone@catchall.test", mx1),
		acceptAll("catchall-sales", "sales@CatchAll.test", "sales@catchall.test", mx1),
		acceptAll("catchall-dotted", "first.last@catchall.test", "first.last@catchall.test", mx1),
		// Postfix is not a destination for relay.test: the host does not
		// take that domain's mail, which says nothing about the mailbox, nor
		// about catch-all (and nothing against our address either).
		{id: "relay-someone", input: "someone@relay.test", email: "someone@relay.test", status: "unknown",
			reason: "relay_denied", code: "554", enhanced: "5.7.1", mx: mx1, msg: "Relay access denied", attempts: "1"},
		accepted("implicit-info", "info@implicit.test", "info@implicit.test", implicit),
		userUnknown("implicit-ghost", "ghost@implicit.test", implicit),
		// The null MX wins over the A record nullmx.test also has.
		decidedWithoutSMTP("nullmx", "nora@nullmx.test", "nora@nullmx.test", "invalid", "null_mx", ""),
		decidedWithoutSMTP("nomail", "nemo@nomail.test", "nemo@nomail.test", "invalid", "no_mail_host", ""),
		decidedWithoutSMTP("nxdomain", "ned@nowhere.test", "ned@nowhere.test", "invalid", "nxdomain", ""),
		decidedWithoutSMTP("dangling", "dan@dangling.test", "dan@dangling.test", "undeliverable", "mx_unresolvable", "nohost.dangling.test"),
		decidedWithoutSMTP("bad-syntax", "not-an-address", "not-an-address", "invalid", "syntax", ""),
		decidedWithoutSMTP("bad-empty", "", "", "invalid", "empty", ""),
		decidedWithoutSMTP("bad-literal", "user@[127.0.0.21]", "user@[127.0.0.21]", "invalid", "address_literal", ""),
	}
	for i := 1; i <= 24; i++ {
		addr := fmt.Sprintf("user%02d@acme.test", i)
		ws = append(ws, accepted("acme-"+addr[:6], addr, addr, mx1))
	}
	return ws
}

func rowsOf(ws []want) [][2]string {
	rows := make([][2]string, len(ws))
	for i, w := range ws {
		rows[i] = [2]string{w.id, w.input}
	}
	return rows
}

// checkVerdicts compares every output row with its want.
func checkVerdicts(t *testing.T, r run, ws []want, started, finished time.Time) {
	t.Helper()
	for i, w := range ws {
		t.Run(w.id, func(t *testing.T) {
			got, ok := r.rows[w.id]
			if !ok {
				t.Fatal("no output row")
			}
			check := func(col, want string) {
				t.Helper()
				if got[col] != want {
					t.Errorf("%s = %q, want %q (row %v)", col, got[col], want, got)
				}
			}
			check("row", strconv.Itoa(i+1))
			check("email", w.email)
			check("status", w.status)
			check("reason", w.reason)
			check("smtp_code", w.code)
			check("enhanced_code", w.enhanced)
			check("mx_host", w.mx)
			if w.attempts != "" {
				check("attempts", w.attempts)
			}
			if !strings.Contains(got["smtp_message"], w.msg) {
				t.Errorf("smtp_message = %q, want it to contain %q", got["smtp_message"], w.msg)
			}
			if w.code == "" && got["smtp_message"] != "" {
				t.Errorf("smtp_message = %q without an SMTP reply", got["smtp_message"])
			}
			at, err := time.Parse(time.RFC3339, got["checked_at"])
			if err != nil || at.Before(started.Truncate(time.Second)) || at.After(finished) {
				t.Errorf("checked_at = %q, want RFC 3339 within the run (%s .. %s)", got["checked_at"],
					started.UTC().Format(time.RFC3339), finished.UTC().Format(time.RFC3339))
			}
			check("catch_all", w.catchAll)
			// tls: whether the session that answered used STARTTLS, empty
			// when no session did. Postfix offers STARTTLS everywhere.
			// README promises the column; verify checked the header has it,
			// and a missing value fails here.
			wantTLS := ""
			if w.code != "" {
				wantTLS = "true"
			}
			if _, ok := got["tls"]; !ok {
				t.Errorf("no tls column (row %v)", got)
			}
			check("tls", wantTLS)
		})
	}
}

// testOneOfEach runs every kind of address in one batch and checks the
// verdicts, the sessions postfix saw, that nothing was submitted, and STARTTLS.
func testOneOfEach(t *testing.T, st *stack) {
	ws := mainWants()
	started := time.Now()
	r := st.verify(t, rowsOf(ws))
	finished := time.Now()

	t.Run("Verdicts", func(t *testing.T) { checkVerdicts(t, r, ws, started, finished) })

	mx1 := sessionsOf(r.sessions, svcMX1)
	t.Run("OneSessionPerMXHost", func(t *testing.T) {
		// Addresses are grouped by MX host: one connection to mx1 for
		// three domains, one to implicit.test's A address, none to the
		// second MX of acme.test, since the first one works.
		for svc, n := range map[string]int{svcMX1: 1, svcImplicit: 1, svcMX2: 0, svcStrict: 0} {
			if got := len(sessionsOf(r.sessions, svc)); got != n {
				t.Errorf("%s: %d sessions, want %d", svc, got, n)
			}
		}
		if len(r.sessions) != 2 {
			t.Errorf("%d sessions in all, want 2", len(r.sessions))
		}
		if len(mx1) != 1 {
			t.FailNow()
		}
		s := mx1[0]
		// 33 distinct addresses for mx1 (acme 29, catchall 3, relay 1).
		const asked = 33
		if s.stats["rcpt"][1] < asked {
			t.Errorf("mx1 got %d RCPT, want at least %d: %v", s.stats["rcpt"][1], asked, s.lines[len(s.lines)-1])
		}
		// 30 accepted recipients (31 with bulkverify's catch-all check)
		// need at least two transactions of 20.
		if s.stats["mail"][1] < 2 || s.stats["rset"][1] < 1 {
			t.Errorf("mx1 session had MAIL %v and RSET %v, want several transactions: %s",
				s.stats["mail"], s.stats["rset"], s.lines[len(s.lines)-1])
		}
		// One EHLO, and a second one after STARTTLS if it was used.
		if s.stats["ehlo"][1] != 1+s.stats["starttls"][1] || s.stats["quit"] != [2]int{1, 1} {
			t.Errorf("mx1 session: want one EHLO (two with STARTTLS) and a QUIT: %s", s.lines[len(s.lines)-1])
		}
		// Every refused recipient was asked exactly once: an answer is final.
		checkRejected(t, ws, mx1, "zack@acme.test", "nobody@acme.test", "someone@relay.test")
		checkRejected(t, ws, sessionsOf(r.sessions, svcImplicit), "ghost@implicit.test")
		for _, l := range s.lines {
			if strings.Contains(l, "reject: RCPT") && !strings.Contains(l, "helo=<"+heloName+">") {
				t.Errorf("the HELO name given with --helo is not the one postfix saw: %s", l)
			}
		}
	})

	t.Run("NoDATA", func(t *testing.T) { checkNoData(t, st, r) })

	t.Run("STARTTLS", func(t *testing.T) {
		// Postfix offers STARTTLS on every listener (see Servers), and
		// bulkverify's default is to use it when offered: every session
		// must have upgraded, and the tls column says so (Verdicts).
		if !slices.Contains(r.header, "tls") {
			t.Fatalf("output header %q has no tls column, which README promises", r.header)
		}
		checked := 0
		for _, svc := range []string{svcMX1, svcImplicit} {
			for _, s := range sessionsOf(r.sessions, svc) {
				checked++
				if s.stats["starttls"] != [2]int{1, 1} || !containsLine(s.lines, "TLS connection established from") {
					t.Errorf("%s: session without STARTTLS although postfix offers it:\n%s", svc, strings.Join(s.lines, "\n"))
				}
			}
		}
		if checked == 0 {
			t.Error("no session of mx1 or implicit.test was logged: STARTTLS use was not checked")
		}
	})
}

// checkNoData proves no message was ever submitted: no session used DATA
// or BDAT, postfix's cleanup and queue manager never saw a message, and the
// queue is empty (a message that got through DATA would be held there).
func checkNoData(t *testing.T, st *stack, r run) {
	t.Helper()
	for _, p := range dataSigns(t, st, r) {
		t.Error(p)
	}
}

// dataSigns lists every sign that a message was submitted during r.
func dataSigns(t *testing.T, st *stack, r run) []string {
	t.Helper()
	var signs []string
	for _, s := range r.sessions {
		for _, cmd := range []string{"data", "bdat"} {
			if _, ok := s.stats[cmd]; ok {
				signs = append(signs, fmt.Sprintf("%s session used %s: %s", s.service, strings.ToUpper(cmd), s.lines[len(s.lines)-1]))
			}
		}
	}
	for _, l := range r.log {
		for _, sign := range []string{"/cleanup[", "/qmgr[", "message-id=", " hold: ", "queued as"} {
			if strings.Contains(l, sign) {
				signs = append(signs, fmt.Sprintf("postfix logged a message (%q): %s", sign, l))
			}
		}
	}
	if files := st.queueFiles(t); len(files) > 0 {
		signs = append(signs, fmt.Sprintf("postfix queue holds %v", files))
	}
	if out := st.postqueueList(t); !strings.Contains(out, "Mail queue is empty") {
		signs = append(signs, "postqueue -p:\n"+out)
	}
	return signs
}

// testDataIsSeen proves checkNoData can fail: a real DATA, sent by hand,
// shows in the session summary, in the log and in the queue. It runs last,
// as it leaves a message in the hold queue.
func testDataIsSeen(t *testing.T, st *stack) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := st.logSize(t)
	nc, br, err := smtpDial(ctx, net.JoinHostPort(mx1Addr, strconv.Itoa(st.smtpPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, c := range []struct {
		cmd  string
		want int
	}{
		{"EHLO " + heloName, 250},
		{"MAIL FROM:<>", 250},
		{"RCPT TO:<alice@acme.test>", 250},
		{"DATA", 354},
		{"Subject: e2e\r\n\r\nThe DATA detector must see this.\r\n.", 250},
		{"QUIT", 221},
	} {
		if _, err := smtpCmd(nc, br, c.want, c.cmd); err != nil {
			t.Fatal(err)
		}
	}
	var r run
	r.log, r.sessions = st.waitSessions(t, from, 1)
	signs := strings.Join(dataSigns(t, st, r), "\n")
	for _, want := range []string{"session used DATA", "message-id=", " hold: ", "postfix queue holds", "postqueue -p"} {
		if !strings.Contains(signs, want) {
			t.Errorf("after a real DATA, no %q among the signs found:\n%s", want, signs)
		}
	}
}

// testFailover: failover.test's first MX host has an address where nothing
// listens; its addresses must be asked at the second MX host.
func testFailover(t *testing.T, st *stack) {
	const backup = "backup.failover.test"
	ws := []want{
		accepted("failover-dora", "dora@failover.test", "dora@failover.test", backup),
		userUnknown("failover-zed", "zed@failover.test", backup),
	}
	started := time.Now()
	r := st.verify(t, rowsOf(ws))
	checkVerdicts(t, r, ws, started, time.Now())
	if n := len(sessionsOf(r.sessions, svcMX2)); n != 1 || len(r.sessions) != 1 {
		t.Errorf("%d sessions, %d of them at the second MX (127.0.0.22), want exactly that one", len(r.sessions), n)
	}
	checkRejected(t, ws, r.sessions, "zed@failover.test")
	checkNoData(t, st, r)
}

// testErrorLimit: postfix drops a session with "421 4.7.0 Error: too many
// errors" after 5 refused recipients (smtpd_hard_error_limit on the strict
// listener). bulkverify must carry on over new connections, ask each
// address no more than its attempts allow, and give every one its verdict.
func testErrorLimit(t *testing.T, st *stack) {
	const mx = "mx.strict.test"
	ws := []want{accepted("strict-sam", "sam@strict.test", "sam@strict.test", mx)}
	for i := 1; i <= 12; i++ {
		w := userUnknown(fmt.Sprintf("strict-s%02d", i), fmt.Sprintf("s%02d@strict.test", i), mx)
		w.attempts = "" // depends on where the 421 cut the session
		ws = append(ws, w)
	}
	started := time.Now()
	r := st.verify(t, rowsOf(ws))
	checkVerdicts(t, r, ws, started, time.Now())
	for _, w := range ws {
		if n, err := strconv.Atoi(r.rows[w.id]["attempts"]); err != nil || n < 1 || n > 3 {
			t.Errorf("%s: attempts = %q, want 1..3 (the default max_attempts)", w.id, r.rows[w.id]["attempts"])
		}
	}

	strict := sessionsOf(r.sessions, svcStrict)
	if len(strict) < 2 || len(strict) != len(r.sessions) {
		t.Fatalf("%d sessions at the strict listener (of %d), want at least 2: 12 refusals at 5 per session", len(strict), len(r.sessions))
	}
	for i, s := range strict[:len(strict)-1] {
		if !containsLine(s.lines, "too many errors") {
			t.Errorf("session %d was not ended by postfix's error limit:\n%s", i+1, strings.Join(s.lines, "\n"))
		}
	}
	// Each refused address was asked once: an answered question is not
	// asked again on the next connection.
	var refused []string
	for _, w := range ws[1:] {
		refused = append(refused, w.email)
	}
	checkRejected(t, ws, strict, refused...)
	checkNoData(t, st, r)
}

// checkRejected checks the recipients postfix refused in sessions: each of
// the input addresses in want exactly once, no other input address, and
// apart from them at most one address per domain, bulkverify's own
// catch-all check.
func checkRejected(t *testing.T, ws []want, sessions []*session, want ...string) {
	t.Helper()
	input := map[string]bool{}
	for _, w := range ws {
		input[w.email] = true
	}
	wantN := map[string]int{}
	for _, a := range want {
		wantN[a] = 1
	}
	ours, others := map[string]int{}, map[string]int{}
	for addr, n := range rejectedRecipients(sessions) {
		if input[addr] {
			ours[addr] = n
			continue
		}
		_, domain, _ := strings.Cut(addr, "@")
		others[domain] += n
	}
	if !maps.Equal(ours, wantN) {
		t.Errorf("postfix refused %v of the input addresses, want %v", ours, wantN)
	}
	for domain, n := range others {
		if n > 1 {
			t.Errorf("postfix refused %d addresses of %s that are not in the input, want at most the one catch-all check", n, domain)
		}
	}
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
