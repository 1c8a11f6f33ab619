package pipeline

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/verdict"
)

// A reply is read without the recipient in it, however long the reply: a
// recipient named after a blocklist (spamhaus@, sorbs@) refused as unknown
// in a reply of more than maxKeptReplyText bytes (a verbose server's
// multi-line refusal) must read as unknown, not as a blocklist naming our
// address, which would also have the egress counted refused.
func TestLongReplyReadWithoutTheRecipient(t *testing.T) {
	long := func(local string) mailsim.Reply {
		return mailsim.Reply{Raw: fmt.Sprintf("550-5.1.1 <%s@acme.test>: Recipient address rejected: User unknown in virtual mailbox table\n550 5.1.1 %s",
			local, strings.Repeat("Please check the address and try again. ", 30))}
	}
	w := mailsim.World{
		Hosts: []mailsim.Host{{Name: "mx.acme.test", IP: "127.0.0.71"}},
		Domains: []mailsim.Domain{{
			Name: "acme.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.acme.test"}},
			Mailboxes: []string{"alice"},
			Replies:   map[string]mailsim.Reply{"spamhaus": long("spamhaus"), "sorbs": long("sorbs"), "nobody": long("nobody")},
		}},
	}
	h := newHarness(t, w)
	h.cfg.NoPositiveControl = true
	rows, _ := h.run("email\nspamhaus@acme.test\nsorbs@acme.test\nnobody@acme.test\nalice@acme.test\n")
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		want := verdict.ReasonMailboxUnknown
		if r["email"] == "alice@acme.test" {
			want = verdict.ReasonAccepted
		}
		if r["reason"] != want {
			t.Errorf("%s: %s/%s, want %s (reply %.60q...)", r["email"], r["status"], r["reason"], want, r["smtp_message"])
		}
	}
}
