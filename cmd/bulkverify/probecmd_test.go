package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/mailsim"
)

// probeCase is one run of "bulkverify probe" and what it must print.
type probeCase struct {
	name    string
	args    []string
	code    int
	verdict string   // prefix of the last stdout line; "" = no stdout at all
	suffix  string   // the verdict line contains this (from mx= on)
	has     []string // stdout lines that must appear (as prefixes)
	hasNot  []string // stdout lines that must not appear (as prefixes)
}

// run runs the CLI with args before the case's own and checks the result.
func (pc probeCase) run(t *testing.T, args ...string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, "", append(args, pc.args...)...)
	if code != pc.code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, pc.code, stdout, stderr)
	}
	if pc.verdict == "" {
		if stdout != "" {
			t.Errorf("stdout = %q, want nothing", stdout)
		}
		if stderr == "" {
			t.Error("no explanation on stderr")
		}
		return
	}
	if !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout does not end in a line:\n%s", stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasSuffix(last, " tls=yes") && !strings.HasSuffix(last, " tls=no") {
		t.Errorf("verdict line does not end in tls=yes|no: %s", last)
	}
	if !strings.HasPrefix(last, pc.verdict) || !strings.Contains(last, pc.suffix) {
		t.Errorf("verdict line\n  %s\nwant prefix\n  %s\nand %q", last, pc.verdict, pc.suffix)
	}
	for _, want := range pc.has {
		if !hasLine(lines, want) {
			t.Errorf("stdout lacks a line starting %q:\n%s", want, stdout)
		}
	}
	for _, bad := range pc.hasNot {
		if hasLine(lines, bad) {
			t.Errorf("stdout has a line starting %q:\n%s", bad, stdout)
		}
	}
}

// TestProbeCommand runs against the sandbox's example world. It does not
// assume whether the example hosts offer STARTTLS; TestProbeCommandTLS does.
func TestProbeCommand(t *testing.T) {
	tests := []probeCase{
		{
			name:    "deliverable with transcript",
			args:    []string{"alice@acme.test", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@acme.test status=deliverable reason=accepted code=250 enhanced=2.0.0 message=",
			suffix:  " mx=mx1.acme.test tls=",
			has: []string{"* MX of acme.test:", "*   10 mx1.acme.test", "*   20 mx2.acme.test",
				"* connecting to mx1.acme.test [127.0.0.11:", "S: 220 ", "C: EHLO sandbox.bulkverify.test",
				"C: MAIL FROM:<>", "C: RCPT TO:<alice@acme.test>", "S: 250 ", "C: QUIT"},
			hasNot: []string{"C: DATA", "C: BDAT"},
		},
		{
			name:    "undeliverable, flags first",
			args:    []string{"--transcript", "zack@acme.test"},
			code:    exitOK,
			verdict: "address=zack@acme.test status=undeliverable reason=mailbox_unknown code=550 enhanced=5.1.1 message=\"no such user\"",
			suffix:  " mx=mx1.acme.test tls=",
			has:     []string{"C: RCPT TO:<zack@acme.test>", "S: 550 5.1.1 no such user"},
			hasNot:  []string{"C: DATA"},
		},
		{
			name:    "mailbox full, no transcript",
			args:    []string{"full@acme.test"},
			code:    exitOK,
			verdict: "address=full@acme.test status=risky reason=mailbox_full code=552 enhanced=5.2.2",
			hasNot:  []string{"C: ", "S: ", "* "},
		},
		{
			name:    "shared MX host",
			args:    []string{"peter@initech.test"},
			code:    exitOK,
			verdict: "address=peter@initech.test status=deliverable reason=accepted code=250",
			suffix:  " mx=mx.mailhost.test tls=",
		},
		{
			name:    "nonexistent domain is a verdict",
			args:    []string{"ned@nonexistent.test", "--transcript"},
			code:    exitOK,
			verdict: "address=ned@nonexistent.test status=invalid reason=nxdomain code= enhanced= message=\"\" catch_all= mx= tls=no",
			has:     []string{"* MX lookup for nonexistent.test: "},
			hasNot:  []string{"C: "},
		},
		{
			// The same verdict verify gives: the domain accepts everything.
			name:    "accept-all domain, catch-all check in the transcript",
			args:    []string{"anyone@catchall.test", "--transcript"},
			code:    exitOK,
			verdict: "address=anyone@catchall.test status=risky reason=accept_all code=250",
			suffix:  " catch_all=yes mx=mx.catchall.test tls=",
			has:     []string{"C: RCPT TO:<bv-", "C: RCPT TO:<anyone@catchall.test>"},
		},
		{
			name:    "null MX",
			args:    []string{"x@nullmx.test"},
			code:    exitOK,
			verdict: "address=x@nullmx.test status=invalid reason=null_mx",
		},
		{
			name:    "TLS off",
			args:    []string{"--tls=off", "bob@acme.test", "--transcript"},
			code:    exitOK,
			verdict: "address=bob@acme.test status=deliverable",
			suffix:  " tls=no",
			hasNot:  []string{"C: STARTTLS"},
		},
		{
			name:    "session times out",
			args:    []string{"sam@slow.test", "--timeout", "200ms"},
			code:    exitFatal,
			verdict: "address=sam@slow.test status=unknown reason=timeout",
			suffix:  " mx=mx.slow.test tls=",
		},
		{name: "syntax error", args: []string{"bad@@acme.test"}, code: exitUsage},
		{name: "address literal", args: []string{"a@[127.0.0.1]"}, code: exitUsage},
		{name: "no address", args: nil, code: exitUsage},
		{name: "two addresses", args: []string{"alice@acme.test", "bob@acme.test"}, code: exitUsage},
		{name: "bad --tls", args: []string{"alice@acme.test", "--tls", "maybe"}, code: exitUsage},
		{name: "unknown flag", args: []string{"alice@acme.test", "--nope"}, code: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, "probe", "--sandbox") })
	}
}

func hasLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestEscapingWriter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"S: 250 ok\n", "S: 250 ok\n"},
		{"S: 250 caf\u00e9 \u65e5\u672c\n", "S: 250 caf\u00e9 \u65e5\u672c\n"},
		{"S: 550 \x1b[2J\x1b]0;owned\x07\n", `S: 550 \x1b[2J\x1b]0;owned\a` + "\n"},
		{"S: 250 a\rb\tc\x00\n", `S: 250 a\rb\tc\x00` + "\n"},
		{"S: 250 \xff\xfe\n", `S: 250 \xff\xfe` + "\n"},
		{"S: 250 \u009b31m\n", `S: 250 \u009b31m` + "\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		n, err := (&escapingWriter{w: &b}).Write([]byte(tt.in))
		if err != nil || n != len(tt.in) {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", tt.in, n, err, len(tt.in))
		}
		if b.String() != tt.want {
			t.Errorf("Write(%q) wrote %q, want %q", tt.in, b.String(), tt.want)
		}
	}
}

// TestProbeCommandTLS runs against a small world of its own, so that it knows
// which exchanger offers STARTTLS:
//
//	tls.test    MX 10 mx.tls.test    -> 127.0.0.1, offers STARTTLS
//	plain.test  MX 10 mx.plain.test  -> 127.0.0.2, does not
//	mixed.test  MX 10 mx.plain.test, MX 20 mx.tls.test
//
// The transcript is the client's own account; what the servers counted
// proves it. The SNI the client sends is left to probe/tls_test.go.
func TestProbeCommandTLS(t *testing.T) {
	const tlsHost, plainHost = "mx.tls.test", "mx.plain.test"
	alice := []string{"alice"}
	world := mailsim.World{
		Domains: []mailsim.Domain{
			{Name: "tls.test", MX: []mailsim.MX{{Preference: 10, Host: tlsHost}}, Mailboxes: alice},
			{Name: "plain.test", MX: []mailsim.MX{{Preference: 10, Host: plainHost}}, Mailboxes: alice},
			{Name: "mixed.test", MX: []mailsim.MX{{Preference: 10, Host: plainHost}, {Preference: 20, Host: tlsHost}},
				Mailboxes: alice},
		},
		Hosts: []mailsim.Host{
			{Name: tlsHost, IP: "127.0.0.1", STARTTLS: true},
			{Name: plainHost, IP: "127.0.0.2"},
		},
	}
	// counted is what one host saw during a run.
	type counted struct{ conns, starttls, handshakes, rcpts int }
	tests := []struct {
		probeCase
		tls, plain counted
	}{
		{probeCase: probeCase{
			name:    "opportunistic upgrades",
			args:    []string{"alice@tls.test", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@tls.test status=deliverable reason=accepted code=250 ",
			suffix:  " mx=mx.tls.test tls=yes",
			has: []string{"C: STARTTLS", "S: 220 2.0.0 Ready to start TLS", "* TLS handshake done: TLS 1.3 ",
				"C: RCPT TO:<alice@tls.test>"},
			hasNot: []string{"C: DATA"},
		}, tls: counted{conns: 1, starttls: 1, handshakes: 1, rcpts: 2}},
		{probeCase: probeCase{
			name:    "require, undeliverable over TLS",
			args:    []string{"--tls", "require", "zack@tls.test"},
			code:    exitOK,
			verdict: "address=zack@tls.test status=undeliverable reason=mailbox_unknown code=550 enhanced=5.1.1",
			suffix:  " mx=mx.tls.test tls=yes",
		}, tls: counted{conns: 1, starttls: 1, handshakes: 1, rcpts: 2}},
		{probeCase: probeCase{
			name:    "off",
			args:    []string{"alice@tls.test", "--tls=off", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@tls.test status=deliverable",
			suffix:  " mx=mx.tls.test tls=no",
			hasNot:  []string{"C: STARTTLS"},
		}, tls: counted{conns: 1, rcpts: 2}},
		{probeCase: probeCase{
			name:    "opportunistic, not offered",
			args:    []string{"alice@plain.test"},
			code:    exitOK,
			verdict: "address=alice@plain.test status=deliverable",
			suffix:  " mx=mx.plain.test tls=no",
		}, plain: counted{conns: 1, rcpts: 2}},
		{probeCase: probeCase{
			name:    "require, not offered",
			args:    []string{"alice@plain.test", "--tls", "require", "--transcript"},
			code:    exitFatal,
			verdict: "address=alice@plain.test status=unknown reason=tls_unavailable code= ",
			suffix:  " mx=mx.plain.test tls=no",
			has:     []string{"C: QUIT", "* mx.plain.test: probe: TLS required: STARTTLS not offered"},
			hasNot:  []string{"C: STARTTLS", "C: MAIL"},
		}, plain: counted{conns: 1}},
		{probeCase: probeCase{
			name:    "require skips to the MX that offers TLS",
			args:    []string{"alice@mixed.test", "--tls", "require", "--transcript"},
			code:    exitOK,
			verdict: "address=alice@mixed.test status=deliverable",
			suffix:  " mx=mx.tls.test tls=yes",
			has:     []string{"* connecting to mx.plain.test [127.0.0.2:", "* connecting to mx.tls.test [127.0.0.1:"},
		}, tls: counted{conns: 1, starttls: 1, handshakes: 1, rcpts: 2}, plain: counted{conns: 1}},
	}
	// rcpts counts the address and the domain's catch-all check, which probe
	// asks as verify does.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A world per case, so that its counters are this case's alone.
			sim, err := mailsim.Start(t.Context(), world, mailsim.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sim.Close() })
			tt.run(t, "probe", "--resolver", sim.DNSAddr(), "--port", strconv.Itoa(sim.SMTPPort()), "--helo", "probe.test")
			if err := sim.Close(); err != nil {
				t.Error(err)
			}
			for host, want := range map[string]counted{tlsHost: tt.tls, plainHost: tt.plain} {
				got := counted{sim.Connections(host), sim.Commands(host, "STARTTLS"), sim.TLSSessions(host), sim.Commands(host, "RCPT")}
				if got != want {
					t.Errorf("%s counted %+v, want %+v", host, got, want)
					continue
				}
				if want.handshakes == 0 {
					continue
				}
				// One connection, one handshake: a RCPT that reached the
				// server after the STARTTLS came over TLS, since mailsim
				// discards plaintext sent behind STARTTLS.
				upgrades := sim.CommandTimes(host, "STARTTLS")
				for _, at := range sim.CommandTimes(host, "RCPT") {
					if len(upgrades) == 0 || !at.After(upgrades[0]) {
						t.Errorf("%s: RCPT arrived before STARTTLS", host)
					}
				}
			}
			if n := sim.TotalCommands("DATA"); n != 0 {
				t.Errorf("DATA sent %d times", n)
			}
		})
	}
}
