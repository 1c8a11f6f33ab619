package pipeline

import (
	"testing"

	"github.com/bulkverify/bulkverify/probe"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		code           int
		enhanced, text string
		status, reason string
	}{
		{250, "2.1.5", "ok", "deliverable", "accepted"},
		{251, "", "user not local; will forward", "deliverable", "accepted"},
		{252, "2.5.0", "cannot VRFY user, but will accept", "unknown", "rejected"},
		{550, "5.1.1", "no such user", "undeliverable", "mailbox_unknown"},
		{553, "5.1.3", "bad address syntax", "undeliverable", "mailbox_unknown"},
		{551, "", "user not local", "undeliverable", "mailbox_unknown"},
		{550, "", "no such user here", "undeliverable", "mailbox_unknown"},
		{550, "", "Mail from 192.0.2.1 blocked by Spamhaus", "unknown", "policy_block"},
		{550, "5.7.1", "relaying denied", "unknown", "relay_denied"},
		{554, "5.7.1", "client host rejected", "unknown", "policy_block"},
		{554, "", "transaction failed", "unknown", "policy_block"},
		{552, "5.2.2", "mailbox full", "risky", "mailbox_full"},
		{452, "4.2.2", "over quota", "risky", "mailbox_full"},
		{552, "", "quota exceeded", "risky", "mailbox_full"},
		{550, "5.2.1", "mailbox disabled", "undeliverable", "mailbox_disabled"},
		{553, "5.1.8", "sender domain does not exist", "unknown", "sender_rejected"},
		{450, "4.2.0", "Recipient address rejected: Greylisted", "unknown", "greylisted"},
		{451, "4.7.1", "Please try again later", "unknown", "greylisted"},
		{451, "4.7.1", "rate limited", "unknown", "rate_limited"},
		{451, "4.3.0", "local error", "unknown", "temporary_failure"},
		{421, "4.4.2", "timeout", "unknown", "temporary_failure"},
		{500, "", "syntax error", "unknown", "rejected"},
	}
	for _, tt := range tests {
		status, reason := Classify(probe.Reply{Code: tt.code, Enhanced: tt.enhanced, Lines: []string{tt.text}})
		if status != tt.status || reason != tt.reason {
			t.Errorf("%d %s %q -> %s/%s, want %s/%s", tt.code, tt.enhanced, tt.text, status, reason, tt.status, tt.reason)
		}
	}
}
