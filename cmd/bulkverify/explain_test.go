package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(mine, []byte("rules:\n  - id: acme-box\n    text: no such box\n    reason: mailbox_unknown\ndrop: [microsoft-dbeb]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "bulkverify.yaml")
	if err := os.WriteFile(config, []byte("replies:\n  file: "+mine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("rules:\n  - id: x\n    reason: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		has   []string // stdout lines that must appear (as prefixes)
		err   string   // part of stderr
	}{
		{name: "microsoft edge blocking", args: []string{"550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"},
			has: []string{"status:   undeliverable", "reason:   mailbox_unknown", "rule:     microsoft-dbeb (built-in)",
				"source:   https://www.spamresource.com/", "why:      stage rcpt; code 550 is 550; enhanced code 5.4.1 is 5.4.1", "operator: not given"}},
		{name: "qmail code at the end", args: []string{"511 sorry, no mailbox here by that name (#5.1.1 - chkuser)"},
			has: []string{"enhanced: 5.1.1", "reason:   mailbox_unknown", "rule:     mailbox-unknown-text (built-in)"}},
		{name: "lines as arguments, marks missing", args: []string{"550 Verification failed for <p@example.org>", "550 Unrouteable address", "550 Sender verify failed"},
			has: []string{"reply:    550 Verification failed for <p@example.org>", "          550 Sender verify failed", "reason:   sender_rejected", "rule:     exim-sender-verify"}},
		{name: "operator of an MX host", args: []string{"--mx", "contoso-com.mail.protection.outlook.com", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"},
			has: []string{"operator: microsoft", "reason:   mailbox_unknown"}},
		{name: "MX host of no operator", args: []string{"--mx", "mail.example.org", "550 5.1.1 no such user"},
			has: []string{"operator: not given"}},
		{name: "operator and MX both", args: []string{"--mx", "x.example", "--operator", "google", "550 5.1.1 x"}, code: exitUsage, err: "not both"},
		{name: "stdin", stdin: "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 https://support.google.com/mail/?p=NoSuchUser - gsmtp\r\n", args: []string{"--operator", "google", "-"},
			has: []string{"operator: google", "status:   undeliverable", "reason:   mailbox_unknown"}},
		{name: "stage", args: []string{"--stage", "mail", "550 5.7.1 blocked by EarthLink. Go away"},
			has: []string{"stage:    mail", "reason:   policy_block"}},
		{name: "blocklist detail", args: []string{"554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"},
			has: []string{"detail:   spamhaus", "rule:     blocklist-spamhaus (built-in)"}},
		{name: "close rules", args: []string{"550 5.7.1 <a@b.example>: Recipient address rejected: Access denied"},
			has: []string{"reason:   policy_block", "close:    "}},
		{name: "user rules from flag", args: []string{"--replies", mine, "550 no such box here"},
			has: []string{"reason:   mailbox_unknown", "rule:     acme-box (" + mine + ", line 2)"}},
		{name: "user rules from config, a built-in dropped", args: []string{"--config", config, "550 5.4.1 Recipient address rejected: Access denied"},
			has: []string{"reason:   routing_error", "rule:     enhanced-routing (built-in)"}},
		{name: "control characters escaped", args: []string{"550 user\x1b[31m unknown"}, has: []string{`reply:    550 user\x1b[31m unknown`}},
		{name: "no reply", args: nil, code: exitUsage, err: "Usage: bulkverify explain"},
		{name: "not a reply", args: []string{"user unknown"}, code: exitUsage, err: "malformed reply line"},
		{name: "codes differ", args: []string{"550-a", "551 b"}, code: exitUsage, err: "expected 550"},
		{name: "bad stage", args: []string{"--stage", "data", "550 x"}, code: exitUsage, err: `--stage "data"`},
		{name: "broken rules", args: []string{"--replies", broken, "550 x"}, code: exitUsage, err: `rule 1 ("x") at line 2: reason "maybe"`},
		{name: "help", args: []string{"-h"}, code: exitOK, err: "-operator NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.stdin, append([]string{"explain"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			lines := strings.Split(stdout, "\n")
			for _, want := range tt.has {
				if !hasLine(lines, want) {
					t.Errorf("stdout lacks a line starting %q:\n%s", want, stdout)
				}
			}
			if !strings.Contains(stderr, tt.err) {
				t.Errorf("stderr %q lacks %q", stderr, tt.err)
			}
		})
	}
}

func TestRepliesCommandPrintsTheTable(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "replies")
	if code != exitOK || !strings.Contains(stdout, "id: microsoft-dbeb") || !strings.Contains(stdout, "# Reasons") {
		t.Errorf("exit %d, stdout:\n%.300s", code, stdout)
	}
}

// verify, find and probe refuse a broken replies file before asking any
// server, whether it comes from the flag or the config file.
func TestRepliesFlagIsChecked(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("rules:\n  - id: x\n    regexp: 'a('\n    reason: rejected\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "bulkverify.yaml")
	if err := os.WriteFile(config, []byte("replies:\n  file: "+broken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"probe", "--sandbox", "--replies", broken, "alice@acme.test"},
		{"probe", "--sandbox", "--config", config, "alice@acme.test"},
		{"verify", "--sandbox", "--replies", broken, "-"},
		{"find", "--sandbox", "--replies", broken, "-"},
	} {
		code, _, stderr := runCLI(t, "email\nalice@acme.test\n", args...)
		if code != exitUsage || !strings.Contains(stderr, broken) || !strings.Contains(stderr, `rule 1 ("x")`) {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	// A good file is used by probe.
	mine := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(mine, []byte("rules:\n  - id: all-full\n    code: 550\n    reason: mailbox_full\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "probe", "--sandbox", "--replies", mine, "zack@acme.test")
	if code != exitOK || !strings.Contains(stdout, "status=risky reason=mailbox_full code=550") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func TestOperatorsCommandPrintsTheTable(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "operators")
	if code != exitOK || !strings.Contains(stdout, "name: microsoft") || !strings.Contains(stdout, "*.mail.protection.outlook.com") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
}
