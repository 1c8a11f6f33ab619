package main

// The README's promises about Ctrl-C and SIGTERM, checked on the real
// binary: the first signal stops gracefully (open connections say QUIT,
// decided rows are in the output, the command says how to resume, exit
// 130); a second one exits at once.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/mailsim"
)

// signalGuard bounds every wait of these tests; it only keeps a broken
// binary from hanging the suite.
const signalGuard = time.Minute

// buildBinary builds bulkverify into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and signals the real binary")
	}
	bin := filepath.Join(t.TempDir(), "bulkverify")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// stallingDNS is a DNS server in front of the world's that never answers
// for names under stall.test while stall is set (and passes them on, to be
// refused as NXDOMAIN, once it is not). A domain still being looked up
// keeps a run going with its connections idle, waiting for more work:
// exactly the state in which a graceful stop must say QUIT.
type stallingDNS struct {
	addr    string
	stall   atomic.Bool
	stalled atomic.Int64 // queries left unanswered
}

func startStallingDNS(t *testing.T, upstream string) *stallingDNS {
	t.Helper()
	d := &stallingDNS{}
	d.stall.Store(true)
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		if d.stall.Load() && strings.HasSuffix(q.Question[0].Name, "stall.test.") {
			d.stalled.Add(1)
			return
		}
		r, err := dns.Exchange(q, upstream)
		if err != nil {
			return
		}
		w.WriteMsg(r)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	d.addr = pc.LocalAddr().String()
	return d
}

// signalRun is the binary verifying in.csv into out.csv in dir.
type signalRun struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	in, out  string
	args     []string
	finished chan struct{} // closed when the process has ended; then err is set
	err      error
}

// startSignalRun starts the binary on input. The config keeps idle
// connections open while a domain is being looked up, never times out a
// DNS query, and retries nothing.
func startSignalRun(t *testing.T, bin, dnsAddr string, smtpPort int, input string) *signalRun {
	t.Helper()
	isolateStore(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "smtp:\n  idle_timeout: 1h\ndns:\n  timeout: 1h\n  attempts: 1\nretry:\n  max_wait: 0s\n")
	r := &signalRun{in: writeFile(t, dir, "in.csv", input), out: filepath.Join(dir, "out.csv"), finished: make(chan struct{})}
	r.args = []string{"verify", r.in, "-o", r.out, "--config", cfg, "--resolver", dnsAddr,
		"--port", strconv.Itoa(smtpPort), "--helo", "probe.cli.test", "--progress", "off", "--no-preflight"}
	r.cmd = exec.Command(bin, r.args...)
	r.cmd.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.finished)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill() // a no-op once it has ended
		<-r.finished
	})
	return r
}

// waitRows polls the output file until it holds n data rows (the run
// flushes every second).
func (r *signalRun) waitRows(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(signalGuard)
	for {
		data, _ := os.ReadFile(r.out)
		if got := strings.Count(string(data), "\n") - 1; got >= n {
			return
		}
		select {
		case <-r.finished:
			t.Fatalf("the run ended (%v) before writing %d rows:\n%s", r.err, n, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run wrote %q in %v, want %d rows", data, signalGuard, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process and returns its exit code.
func (r *signalRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.finished:
		var ee *exec.ExitError
		if r.err != nil && !errors.As(r.err, &ee) {
			t.Fatal(r.err)
		}
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(signalGuard):
		t.Fatalf("the run did not end %v after the signal:\n%s", signalGuard, r.stderr.String())
		return 0
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(signalGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", signalGuard, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSignalStopsGracefully(t *testing.T) {
	bin := buildBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			sim := startWorld(t, cliWorld())
			dnsSrv := startStallingDNS(t, sim.DNSAddr())
			input := "id,email\n1,ann@fast.test\n2,someone@stall.test\n3,ben@fast.test\n4,nobody@fast.test\n"
			r := startSignalRun(t, bin, dnsSrv.addr, sim.SMTPPort(), input)

			// fast.test's rows are written and its connection is idle,
			// waiting for stall.test's addresses, which never resolve.
			r.waitRows(t, 3)
			waitUntil(t, "the stalled lookup", func() bool { return dnsSrv.stalled.Load() > 0 })
			if got := sim.Commands("mx.fast.test", "QUIT"); got != 0 {
				t.Fatalf("QUIT sent before the signal (%d): the connection is not idle, the test proves nothing", got)
			}
			if err := r.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := r.wait(t); code != exitInterrupted {
				t.Errorf("exit %d, want %d:\n%s", code, exitInterrupted, r.stderr.String())
			}
			// The idle connection said QUIT (the server counts it when
			// it reads it, which may be just after the process ended).
			waitUntil(t, "QUIT at the fast host", func() bool { return sim.Commands("mx.fast.test", "QUIT") == 1 })
			if got := sim.Connections("mx.fast.test"); got != 1 {
				t.Errorf("%d connections to the fast host, want 1", got)
			}
			hint := fmt.Sprintf("interrupted: the rows decided so far are in %s; to finish, run the same command with --resume", r.out)
			if !strings.Contains(r.stderr.String(), hint) {
				t.Errorf("stderr lacks the resume hint %q:\n%s", hint, r.stderr.String())
			}
			data, err := os.ReadFile(r.out)
			if err != nil {
				t.Fatal(err)
			}
			rows := byRow(t, readCSV(t, string(data)))
			want := map[string]string{"1": "deliverable", "3": "deliverable", "4": "undeliverable"}
			if len(rows) != len(want) || !strings.HasSuffix(string(data), "\n") {
				t.Errorf("output after the signal, want exactly the %d decided rows, complete:\n%s", len(want), data)
			}
			for n, status := range want {
				if r := rows[n]; r["status"] != status || r["id"] != n {
					t.Errorf("row %s: %v, want %s", n, r, status)
				}
			}

			// The hint is right: the same command with --resume finishes
			// the file (stall.test now resolves, to NXDOMAIN).
			dnsSrv.stall.Store(false)
			code, _, stderr := runCLI(t, "", append(r.args, "--resume")...)
			if code != exitOK {
				t.Fatalf("resume: exit %d\n%s", code, stderr)
			}
			data, err = os.ReadFile(r.out)
			if err != nil {
				t.Fatal(err)
			}
			rows = byRow(t, readCSV(t, string(data)))
			if len(rows) != 4 || rows["2"]["status"] != "invalid" || rows["2"]["reason"] != "nxdomain" {
				t.Errorf("after --resume, want 4 rows with row 2 invalid/nxdomain:\n%s", data)
			}
		})
	}
}

// quitHolder is an SMTP server that answers everything at once except
// QUIT, which it never answers: a graceful stop then waits for it (up to
// the client's QUIT timeout). quit is closed when QUIT arrives, gone when
// the client has closed the connection.
type quitHolder struct {
	quit, gone chan struct{}
}

func startQuitHolder(t *testing.T, addr string) *quitHolder {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	q := &quitHolder{quit: make(chan struct{}), gone: make(chan struct{})}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		defer close(q.gone)
		_ = c.SetDeadline(time.Now().Add(signalGuard))
		fmt.Fprintf(c, "220 holder ESMTP\r\n")
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				fmt.Fprintf(c, "250-holder\r\n250 PIPELINING\r\n")
			case strings.HasPrefix(cmd, "RCPT TO:<ANN@"):
				fmt.Fprintf(c, "250 2.1.5 ok\r\n")
			case strings.HasPrefix(cmd, "RCPT"):
				fmt.Fprintf(c, "550 5.1.1 no such user\r\n")
			case cmd == "QUIT":
				close(q.quit)
				_, _ = br.ReadString('\n') // until the client goes
				return
			default:
				fmt.Fprintf(c, "250 ok\r\n")
			}
		}
	}()
	return q
}

// A second Ctrl-C while the first one's graceful stop waits (here for a
// QUIT reply that never comes) exits at once, with 130.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	bin := buildBinary(t)
	sim := startWorld(t, mailsim.World{
		Hosts:   []mailsim.Host{{Name: "mx.hold.test", IP: "127.0.9.10", Down: true}},
		Domains: []mailsim.Domain{{Name: "hold.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.hold.test"}}}},
	})
	holder := startQuitHolder(t, net.JoinHostPort("127.0.9.10", strconv.Itoa(sim.SMTPPort())))
	dnsSrv := startStallingDNS(t, sim.DNSAddr())
	r := startSignalRun(t, bin, dnsSrv.addr, sim.SMTPPort(), "email\nann@hold.test\nbob@hold.test\nx@stall.test\n")
	r.waitRows(t, 2)
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-holder.quit:
	case <-r.finished:
		t.Fatalf("the run ended (%v) without QUIT to the idle connection:\n%s", r.err, r.stderr.String())
	case <-time.After(signalGuard):
		t.Fatal("no QUIT after the first signal")
	}
	// The graceful stop now waits for the QUIT reply, which never comes.
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != exitInterrupted {
		t.Errorf("exit %d, want %d:\n%s", code, exitInterrupted, r.stderr.String())
	}
	// Without the second signal the run would also end, once its QUIT
	// timeout passed, but it would not say this.
	if !strings.Contains(r.stderr.String(), "interrupted again: exiting now") {
		t.Errorf("the second signal did not end the run at once:\n%s", r.stderr.String())
	}
	<-holder.gone
}
