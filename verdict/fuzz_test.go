package verdict

import (
	"slices"
	"testing"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/probe"
)

// FuzzParse checks that no rules file makes Parse panic, and that a table
// it accepts decides any reply with a status and reason of the vocabulary.
func FuzzParse(f *testing.F) {
	f.Add([]byte("rules:\n  - id: a\n    code: 5xx\n    enhanced: [5.1.*, none]\n    text: [x, y]\n    regexp: '(?P<detail>z+)'\n    reason: mailbox_unknown\n"))
	f.Add([]byte("rules:\n  - id: a\n    stage: [mail, rcpt]\n    operator: google\n    reason: policy_block\n    status: risky\n    detail: d\n"))
	f.Add([]byte("rules: [{id: b, reason: rejected}]\ndrop: []\n"))
	f.Add(configs.DefaultRepliesYAML()[:2000])
	reply := probe.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"zzz x user unknown"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := Parse(data)
		if err != nil {
			return
		}
		for _, st := range Stages() {
			d := tb.Classify(Input{Reply: reply, Stage: st, Operator: "google"})
			if _, ok := DefaultStatus(d.Reason); !ok || !slices.Contains(statuses, d.Status) {
				t.Fatalf("decision %+v", d)
			}
			tb.Explain(Input{Reply: reply, Stage: st})
		}
	})
}

// FuzzClassify checks that the built-in table decides any reply the probe
// parser accepts at any stage, by a rule (its last rules match every code),
// without panicking, in the vocabulary.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"550 5.1.1 no such user", "511 sorry (#5.1.1 - chkuser)", "421 4.7.0 [TSS04] deferred",
		"250 ok", "554 5.7.1 blocked using zen.spamhaus.org", "550-a\n550 b #5.7.1"} {
		f.Add(s, uint8(3))
	}
	tb := Default()
	stages := Stages()
	f.Fuzz(func(t *testing.T, text string, stage uint8) {
		r, err := probe.ParseReply(text)
		if err != nil {
			return
		}
		d := tb.Classify(Input{Reply: r, Stage: stages[int(stage)%len(stages)]})
		if _, ok := DefaultStatus(d.Reason); !ok || !slices.Contains(statuses, d.Status) || d.RuleID == "" {
			t.Fatalf("%q: decision %+v", text, d)
		}
	})
}
