package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/internal/testenv"
)

// Fixed loopback addresses of the zone in scripts/e2e/test.zone; postfix
// listens on all but downAddr (see scripts/e2e/master.cf.in).
const (
	mx1Addr      = "127.0.0.21" // mx1.acme.test: acme, catchall and relay
	mx2Addr      = "127.0.0.22" // mx2.acme.test and backup.failover.test
	downAddr     = "127.0.0.23" // down.failover.test: nothing listens
	implicitAddr = "127.0.0.24" // implicit.test, which has no MX
	strictAddr   = "127.0.0.25" // mx.strict.test: drops a session after 5 errors

	heloName = "probe.e2e.test"
)

// syslog names of the smtpd listeners, as their log lines start.
const (
	svcMX1      = "postfix-mx1"
	svcMX2      = "postfix-mx2"
	svcImplicit = "postfix-implicit"
	svcStrict   = "postfix-strict"
)

// stack is one running mail world and the bulkverify binary to probe it.
type stack struct {
	work      string // WORKDIR of up.sh and down.sh
	scripts   string // scripts/e2e
	bash      string
	bin       string            // bulkverify, built for this run
	env       map[string]string // WORKDIR/stack.env, written by up.sh
	dnsAddr   string
	smtpPort  int
	postqueue string
}

// startStack builds bulkverify and starts nsd and postfix in a temporary
// directory, stopping them when t ends (also when it fails). It skips t
// when the servers cannot be run here, or fails it when the environment
// requires the suite to run (testenv.RequireVar, set by .ci/run).
func startStack(t *testing.T) *stack {
	t.Helper()
	if testing.Short() {
		testenv.Unavailable(t, "e2e: skipped in -short mode")
	}
	tools := map[string]string{}
	for _, name := range []string{"bash", "nsd", "nsd-checkzone", "postfix", "postqueue", "openssl"} {
		p, err := findTool(name)
		if err != nil {
			testenv.Unavailable(t, "e2e: %v; install the Debian packages postfix, nsd and openssl (see .ci/run) to run the end-to-end suite", err)
		}
		tools[name] = p
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "e2e: must run as root (postfix and nsd are started with their own users); skipping the end-to-end suite")
	}
	scripts, err := filepath.Abs(filepath.Join("..", "scripts", "e2e"))
	if err != nil {
		t.Fatal(err)
	}

	// Building takes as long as starting the servers; do both at once.
	// The build is waited for even when t stops early, before binDir
	// (an earlier cleanup, so a later one to run) is removed.
	binDir := t.TempDir()
	built := make(chan error, 1)
	go func() { built <- buildBulkverify(binDir) }()
	waitBuild := sync.OnceValue(func() error { return <-built })
	t.Cleanup(func() { waitBuild() })

	// Not t.TempDir: its parent is private to root, and the postfix
	// daemons, running as postfix, must reach their files through it.
	work, err := os.MkdirTemp("", "bulkverify-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(work); err != nil {
			t.Errorf("removing the work directory: %v", err)
		}
	})
	dnsPort := freeDNSPort(t)
	smtpPort := freeSMTPPort(t, mx1Addr, mx2Addr, downAddr, implicitAddr, strictAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"postfix.log", "nsd.log"} {
				t.Logf("last lines of %s:\n%s", name, tail(filepath.Join(work, "log", name), 40))
			}
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		out, err := exec.CommandContext(dctx, tools["bash"], filepath.Join(scripts, "down.sh"), work).CombinedOutput()
		if err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	up := exec.CommandContext(ctx, tools["bash"], filepath.Join(scripts, "up.sh"), work)
	up.Env = append(os.Environ(),
		"E2E_DNS_PORT="+strconv.Itoa(dnsPort),
		"E2E_SMTP_PORT="+strconv.Itoa(smtpPort))
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("up.sh: %v\n%s", err, out)
	}
	env, err := readEnv(filepath.Join(work, "stack.env"))
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{
		work:      work,
		scripts:   scripts,
		bash:      tools["bash"],
		env:       env,
		dnsAddr:   env["DNS_ADDR"],
		smtpPort:  smtpPort,
		postqueue: tools["postqueue"],
	}
	if st.dnsAddr != net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort)) || env["SMTP_PORT"] != strconv.Itoa(smtpPort) {
		t.Fatalf("stack.env does not match the ports asked for: %v", env)
	}
	if err := waitDNS(ctx, st.dnsAddr); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{mx1Addr, mx2Addr, implicitAddr, strictAddr} {
		if err := waitSMTP(ctx, net.JoinHostPort(ip, strconv.Itoa(smtpPort))); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitBuild(); err != nil {
		t.Fatal(err)
	}
	st.bin = filepath.Join(binDir, "bulkverify")
	return st
}

func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin", name)
}

func buildBulkverify(dir string) error {
	args := []string{"build", "-o", filepath.Join(dir, "bulkverify")}
	if raceBuild {
		args = append(args, "-race")
	}
	args = append(args, "github.com/bulkverify/bulkverify/cmd/bulkverify")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// go test puts its own go command first in PATH.
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("building bulkverify: %w\n%s", err, out)
	}
	return nil
}

// freeDNSPort returns a port free on 127.0.0.1 for both UDP and TCP. The
// window until nsd binds it is short, and a clash makes up.sh fail loudly.
func freeDNSPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// freeSMTPPort returns a TCP port free on every one of ips: bulkverify has
// one SMTP port for all hosts, and on downAddr nothing may listen.
func freeSMTPPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		first.Close()
		if ok {
			return port
		}
	}
	t.Fatalf("no TCP port free on all of %v", ips)
	return 0
}

func readEnv(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading what up.sh wrote: %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}

// waitDNS polls until nsd answers authoritatively for the zone.
func waitDNS(ctx context.Context, addr string) error {
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("test.", dns.TypeSOA)
	var last error
	for {
		r, _, err := c.ExchangeContext(ctx, m, addr)
		switch {
		case err != nil:
			last = err
		case r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1:
			last = fmt.Errorf("unexpected answer %s", r)
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nsd at %s not ready: %w", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSMTP polls until addr greets with 220.
func waitSMTP(ctx context.Context, addr string) error {
	var last error
	for {
		c, _, err := smtpDial(ctx, addr)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("postfix at %s not ready: %w", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// smtpDial connects to addr and reads the 220 banner. The reader must be
// used for every later reply.
func smtpDial(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	if _, _, err := textproto.NewReader(br).ReadResponse(220); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("banner of %s: %w", addr, err)
	}
	return nc, br, nil
}

// smtpCmd sends one command and reads its reply, which must have code want.
func smtpCmd(w io.Writer, br *bufio.Reader, want int, cmd string) (string, error) {
	if _, err := io.WriteString(w, cmd+"\r\n"); err != nil {
		return "", err
	}
	_, msg, err := textproto.NewReader(br).ReadResponse(want)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return msg, nil
}

// checkServer proves the listener at addr is set up as the suite claims:
// EHLO offers PIPELINING, ENHANCEDSTATUSCODES and STARTTLS, and STARTTLS
// completes with the certificate up.sh made.
func checkServer(ctx context.Context, addr, certFile string) error {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", certFile)
	}
	nc, br, err := smtpDial(ctx, addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	ehlo, err := smtpCmd(nc, br, 250, "EHLO "+heloName)
	if err != nil {
		return err
	}
	for _, ext := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if !regexp.MustCompile(`(?m)^` + ext + `\b`).MatchString(ehlo) {
			return fmt.Errorf("EHLO reply does not offer %s:\n%s", ext, ehlo)
		}
	}
	if _, err := smtpCmd(nc, br, 220, "STARTTLS"); err != nil {
		return err
	}
	if br.Buffered() > 0 {
		return errors.New("server sent data after its STARTTLS reply")
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: roots, ServerName: "mx.e2e.test"})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tbr := bufio.NewReader(tc)
	if _, err := smtpCmd(tc, tbr, 250, "EHLO "+heloName); err != nil {
		return fmt.Errorf("inside TLS: %w", err)
	}
	_, err = smtpCmd(tc, tbr, 221, "QUIT")
	return err
}

// queueFiles lists the messages in postfix's queue directories; a message
// there means something went past RCPT.
func (st *stack) queueFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"maildrop", "incoming", "active", "deferred", "hold", "corrupt"} {
		err := filepath.WalkDir(filepath.Join(st.env["POSTFIX_QUEUE"], dir), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("listing the queue: %v", err)
		}
	}
	return files
}

// postqueueList is "postqueue -p" for the e2e instance.
func (st *stack) postqueueList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(st.postqueue, "-c", st.env["POSTFIX_CONFIG"], "-p").CombinedOutput()
	if err != nil {
		t.Fatalf("postqueue -p: %v\n%s", err, out)
	}
	return string(out)
}

func (st *stack) logSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(st.env["POSTFIX_LOG"])
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logSince returns the postfix log written after offset from.
func (st *stack) logSince(t *testing.T, from int64) []string {
	t.Helper()
	f, err := os.Open(st.env["POSTFIX_LOG"])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	// A line still being written is left for the next read.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		b = nil
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// run is one bulkverify run: its output rows by the input's id column, its
// stderr, and the postfix sessions it caused.
type run struct {
	header   []string          // full output header
	rows     map[string]outRow // by input id
	stderr   string
	sessions []*session // smtpd sessions logged during the run
	log      []string   // every postfix log line of the run
}

// outRow is the result columns of one output row, by name.
type outRow map[string]string

// resultColumns are the columns README "Output" promises after the input's.
func resultColumns() []string {
	return []string{"row", "email", "status", "reason", "smtp_code", "enhanced_code",
		"smtp_message", "mx_host", "catch_all", "tls", "attempts", "checked_at"}
}

// verify runs bulkverify on rows (id, email) as a user would, and waits
// until postfix has logged the end of every SMTP session it opened.
func (st *stack) verify(t *testing.T, rows [][2]string) run {
	t.Helper()
	return st.verifyWith(t, rows, verifyOptions{})
}

// verifyOptions changes how verifyWith runs bulkverify.
type verifyOptions struct {
	flags []string // more flags, after the suite's own
	env   []string // more environment, "NAME=value"
	// whileRunning, when set, is called once bulkverify has started, and
	// the run is waited for after it returns.
	whileRunning func()
}

// verifyWith is verify with more flags, environment, or something done
// during the run.
func (st *stack) verifyWith(t *testing.T, rows [][2]string, o verifyOptions) run {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	outPath := filepath.Join(dir, "out.csv")
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"id", "email"})
	for _, r := range rows {
		w.Write(r[:])
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	from := st.logSize(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"verify", in, "-o", outPath,
		"--resolver", st.dnsAddr,
		"--port", strconv.Itoa(st.smtpPort),
		"--helo", heloName,
		"--progress", "off",
		// The test zone has no canary domains of the big providers.
		"--no-preflight",
		// Generous: they only guard against a hang; no verdict here
		// waits for a timeout, and a slow shared machine must not turn
		// a slow reply into "timeout".
		"--connect-timeout", "30s",
		"--timeout", "30s",
		// A store of its own for each run: every run here probes (and
		// nothing is written to the user's cache directory).
		"--store", filepath.Join(dir, "store.db"),
	}
	args = append(args, o.flags...)
	cmd := exec.CommandContext(ctx, st.bin, args...)
	cmd.Env = append(os.Environ(), o.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Start()
	if err == nil {
		if o.whileRunning != nil {
			o.whileRunning()
		}
		err = cmd.Wait()
	}
	if err != nil {
		t.Fatalf("bulkverify %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	res := run{stderr: stderr.String(), rows: map[string]outRow{}}
	t.Logf("bulkverify: %s", strings.TrimSpace(res.stderr))

	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v", err)
	}
	if len(recs) == 0 {
		t.Fatal("output has no header")
	}
	res.header = recs[0]
	// The result columns follow the input's (id, email), "row" first;
	// they are read by name, so a column added later breaks nothing.
	const inputCols = 2
	if len(res.header) <= inputCols || res.header[inputCols] != "row" {
		t.Fatalf("output header %q: want id,email then the result columns, row first", res.header)
	}
	// A result column named like an input column is written with a
	// "result_" prefix (the input has an email column); rows are read by
	// the result's own name.
	resultName := func(name string) string {
		if base, ok := strings.CutPrefix(name, "result_"); ok && slices.Contains(res.header[:inputCols], base) {
			return base
		}
		return name
	}
	names := make([]string, 0, len(res.header)-inputCols)
	for _, name := range res.header[inputCols:] {
		names = append(names, resultName(name))
	}
	for _, col := range resultColumns() {
		if !slices.Contains(names, col) {
			t.Fatalf("output header %q has no %q column", res.header, col)
		}
	}
	for _, rec := range recs[1:] {
		if len(rec) != len(res.header) {
			t.Fatalf("output row %q has %d fields, header has %d", rec, len(rec), len(res.header))
		}
		row := outRow{}
		for i, name := range names {
			row[name] = rec[inputCols+i]
		}
		if _, dup := res.rows[rec[0]]; dup {
			t.Fatalf("input row %q written twice", rec[0])
		}
		res.rows[rec[0]] = row
	}
	if len(res.rows) != len(rows) {
		t.Fatalf("%d output rows for %d input rows", len(res.rows), len(rows))
	}

	m := regexp.MustCompile(`(\d+) SMTP connections`).FindStringSubmatch(res.stderr)
	if m == nil {
		t.Fatalf("no connection count in bulkverify's summary:\n%s", res.stderr)
	}
	conns, _ := strconv.Atoi(m[1])
	res.log, res.sessions = st.waitSessions(t, from, conns)
	return res
}

// waitSessions polls the postfix log from offset until it holds want
// finished smtpd sessions: postfix logs through postlogd, a little after
// the client has gone.
func (st *stack) waitSessions(t *testing.T, from int64, want int) ([]string, []*session) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		lines := st.logSince(t, from)
		sessions := parseSessions(lines)
		closed := 0
		for _, s := range sessions {
			if s.closed {
				closed++
			}
		}
		if closed >= want && closed == len(sessions) {
			return lines, sessions
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix logged %d sessions (%d finished), bulkverify reports %d; log:\n%s",
				len(sessions), closed, want, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// session is one smtpd connection as postfix logged it.
type session struct {
	service string // syslog name, e.g. postfix-mx1
	lines   []string
	closed  bool
	// stats is the command summary of the "disconnect from" line:
	// "mail=2 rcpt=30/33" gives mail:{2,2} rcpt:{30,33} (accepted, sent).
	stats map[string][2]int
}

var (
	logLineRE = regexp.MustCompile(`\s([\w.-]+)/(\w+)\[(\d+)\]: (.*)$`)
	statRE    = regexp.MustCompile(`(\w+)=(\d+)(?:/(\d+))?`)
)

// parseSessions groups smtpd log lines into sessions: one smtpd process
// serves one connection at a time, from "connect from" to "disconnect from".
func parseSessions(lines []string) []*session {
	var all []*session
	open := map[string]*session{}
	for _, line := range lines {
		m := logLineRE.FindStringSubmatch(line)
		if m == nil || m[2] != "smtpd" {
			continue
		}
		key, text := m[1]+"/"+m[3], m[4]
		switch {
		case strings.HasPrefix(text, "connect from "):
			s := &session{service: m[1], lines: []string{text}}
			open[key] = s
			all = append(all, s)
		case strings.HasPrefix(text, "disconnect from "):
			s := open[key]
			if s == nil {
				continue // began before the offset
			}
			delete(open, key)
			s.lines = append(s.lines, text)
			s.closed = true
			s.stats = map[string][2]int{}
			for _, sm := range statRE.FindAllStringSubmatch(text, -1) {
				ok, _ := strconv.Atoi(sm[2])
				total := ok
				if sm[3] != "" {
					total, _ = strconv.Atoi(sm[3])
				}
				s.stats[sm[1]] = [2]int{ok, total}
			}
		default:
			if s := open[key]; s != nil {
				s.lines = append(s.lines, text)
			}
		}
	}
	return all
}

// sessionsOf returns the sessions of one listener.
func sessionsOf(all []*session, service string) []*session {
	var out []*session
	for _, s := range all {
		if s.service == service {
			out = append(out, s)
		}
	}
	return out
}

var rejectToRE = regexp.MustCompile(`reject: RCPT from .*; from=<[^>]*> to=<([^>]*)>`)

// rejectedRecipients counts, per address, the RCPT commands postfix
// refused in the given sessions.
func rejectedRecipients(sessions []*session) map[string]int {
	got := map[string]int{}
	for _, s := range sessions {
		for _, l := range s.lines {
			if m := rejectToRE.FindStringSubmatch(l); m != nil {
				got[m[1]]++
			}
		}
	}
	return got
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
