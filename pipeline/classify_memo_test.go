package pipeline

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/verdict"
)

// A reply is read as the reply table reads its text with the recipient
// taken out, whether the reading comes from the table, the run's cache or
// the session's memo: a recipient such as sorbs@example.com must not read
// as a blocklist's refusal, and replies that alternate (accepted, refused,
// refused by policy) must not borrow each other's readings.
func TestReplyReadingsWithoutTheRecipient(t *testing.T) {
	e := &engine{cfg: Config{Replies: verdict.Default()}}
	h := &hostQueue{operator: "example"}
	replies := []struct {
		code           int
		enhanced, text string // %s is the recipient
	}{
		{250, "2.1.5", "<%s> ok"},
		{550, "5.1.1", "<%s>: Recipient address rejected: User unknown"},
		{550, "5.7.1", "<%s>: rejected by policy, listed at sorbs"},
		{250, "2.0.0", "I'll make sure <%s> gets this"},
		{452, "4.2.2", "mailbox full"},
	}
	var memo replyMemo
	for i := range 200 {
		rcpt := fmt.Sprintf("u%d@example.com", i)
		if i%7 == 0 {
			rcpt = "sorbs@example.com"
		}
		rp := replies[(i*i+i/3)%len(replies)]
		text := rp.text
		if strings.Contains(text, "%s") {
			text = fmt.Sprintf(text, rcpt)
		}
		r := probe.Reply{Code: rp.code, Enhanced: rp.enhanced, Lines: []string{text}}
		want := e.cfg.Replies.Classify(verdict.Input{Stage: verdict.StageRcpt, Operator: h.operator,
			Reply: probe.Reply{Code: rp.code, Enhanced: rp.enhanced, Lines: []string{strings.Replace(text, rcpt, "", 1)}}})
		if got := e.classifyRcpt(&memo, r, h, rcpt); got != want {
			t.Fatalf("reply %d %q to %s: read %+v, want %+v", i, text, rcpt, got, want)
		}
	}
	if d := e.classifyRcpt(&memo, probe.Reply{Code: 250, Enhanced: "2.1.5", Lines: []string{"<sorbs@example.com> ok"}}, h, "sorbs@example.com"); d.Reason != ReasonAccepted {
		t.Errorf("sorbs@example.com accepted reads %s", d.Reason)
	}
}
