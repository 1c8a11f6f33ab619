package verdict

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/probe"
)

func reply(t *testing.T, text string) probe.Reply {
	t.Helper()
	r, err := probe.ParseReply(text)
	if err != nil {
		t.Fatalf("ParseReply(%q): %v", text, err)
	}
	return r
}

func TestParseRejectsBadRules(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // pieces of the error
	}{
		{"unknown key", "rules:\n  - id: a\n    reason: rejected\n    codes: 550\n", []string{`rule 1 ("a") at line 2`, `unknown key "codes"`}},
		{"unknown top key", "rule:\n  - id: a\n", []string{"field rule not found"}},
		{"bad regexp", "rules:\n  - id: ok\n    reason: rejected\n  - id: broken\n    regexp: 'a(b'\n    reason: rejected\n", []string{`rule 2 ("broken") at line 4`, "regexp"}},
		{"unknown reason", "rules:\n  - id: a\n    reason: nxdomain\n", []string{`reason "nxdomain"`, "mailbox_unknown"}},
		{"missing reason", "rules:\n  - id: a\n    code: 550\n", []string{`reason ""`}},
		{"bad status", "rules:\n  - id: a\n    reason: rejected\n    status: invalid\n", []string{`status "invalid"`}},
		{"missing id", "rules:\n  - reason: rejected\n", []string{"rule 1 at line 2", "id is missing"}},
		{"bad id", "rules:\n  - id: Big\n    reason: rejected\n", []string{`id "Big"`}},
		{"duplicate id", "rules:\n  - id: a\n    reason: rejected\n  - id: a\n    reason: rejected\n", []string{"id already used by rule 1"}},
		{"bad code", "rules:\n  - id: a\n    code: 5x0\n    reason: rejected\n", []string{`code "5x0"`}},
		{"code too short", "rules:\n  - id: a\n    code: 55\n    reason: rejected\n", []string{`code "55"`}},
		{"bad enhanced", "rules:\n  - id: a\n    enhanced: 5.1\n    reason: rejected\n", []string{`enhanced "5.1"`}},
		{"enhanced class", "rules:\n  - id: a\n    enhanced: 6.1.1\n    reason: rejected\n", []string{`enhanced "6.1.1"`}},
		{"classes differ", "rules:\n  - id: a\n    code: 5xx\n    enhanced: 4.2.2\n    reason: rejected\n", []string{"classes differ"}},
		{"bad stage", "rules:\n  - id: a\n    stage: data\n    reason: rejected\n", []string{`stage "data"`}},
		{"bad operator", "rules:\n  - id: a\n    operator: Google Inc\n    reason: rejected\n", []string{`operator "google inc"`}},
		{"empty text", "rules:\n  - id: a\n    text: ''\n    reason: rejected\n", []string{`text ""`}},
		{"nested list", "rules:\n  - id: a\n    text: [[a]]\n    reason: rejected\n", []string{"list of plain values"}},
		{"detail with comma", "rules:\n  - id: a\n    detail: a,b\n    reason: rejected\n", []string{`detail "a,b"`}},
		{"not a mapping", "rules:\n  - just text\n", []string{"a rule is a mapping"}},
		{"drop without base", "rules: []\ndrop: [x]\n", []string{"nothing to drop", "Extend"}},
		{"long regexp", "rules:\n  - id: a\n    regexp: '" + strings.Repeat("a", maxRegexpBytes+1) + "'\n    reason: rejected\n", []string{"longer than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestExtendPrecedenceDropAndReplace(t *testing.T) {
	base, err := Parse([]byte(`rules:
  - id: unknown-user
    text: user unknown
    reason: mailbox_unknown
  - id: any-5xx
    code: 5xx
    reason: rejected
`))
	if err != nil {
		t.Fatal(err)
	}
	r := reply(t, "550 5.1.1 User unknown")
	if d := base.Classify(Input{Reply: r}); d.RuleID != "unknown-user" {
		t.Fatalf("base decided by %q", d.RuleID)
	}

	// A user's rule comes first.
	ext, err := base.Extend([]byte("rules:\n  - id: mine\n    code: 550\n    reason: rejected\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ext.RuleIDs(); !slices.Equal(got, []string{"mine", "unknown-user", "any-5xx"}) {
		t.Errorf("order %v", got)
	}
	if d := ext.Classify(Input{Reply: r}); d.RuleID != "mine" || d.Reason != ReasonRejected {
		t.Errorf("extended: %+v", d)
	}
	// The base table is not changed by extending it.
	if base.Len() != 2 {
		t.Errorf("base has %d rules", base.Len())
	}

	// Same id replaces; drop removes.
	ext, err = base.Extend([]byte("rules:\n  - id: any-5xx\n    code: 5xx\n    reason: policy_block\ndrop: [unknown-user]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ext.RuleIDs(); !slices.Equal(got, []string{"any-5xx"}) {
		t.Errorf("order %v", got)
	}
	if d := ext.Classify(Input{Reply: r}); d.Reason != ReasonPolicyBlock {
		t.Errorf("replaced: %+v", d)
	}

	for _, bad := range []struct{ yaml, want string }{
		{"drop: [nope]\n", `no rule has the id "nope"`},
		{"drop: [any-5xx, any-5xx]\n", "listed twice"},
		{"rules:\n  - id: any-5xx\n    reason: rejected\ndrop: [any-5xx]\n", "both replaced and dropped"},
	} {
		if _, err := base.Extend([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Extend(%q) err = %v, want %q", bad.yaml, err, bad.want)
		}
	}
}

func TestLoad(t *testing.T) {
	if tb, err := Load(""); err != nil || tb != Default() {
		t.Fatalf("Load(\"\") = %v, %v", tb, err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - id: acme-box\n    text: no such box\n    reason: mailbox_unknown\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != Default().Len()+1 {
		t.Errorf("%d rules, want %d", tb.Len(), Default().Len()+1)
	}
	d := tb.Classify(Input{Reply: reply(t, "550 no such box here")})
	if d.RuleID != "acme-box" || d.Status != "undeliverable" || d.Source != "" {
		t.Errorf("decision %+v", d)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - id: x\n    reason: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `("x")`) {
		t.Errorf("err = %v, want the file and the rule named", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}

// The built-in table: every rule names its source, uses only the operator
// names the operator table knows, and is documented in the file's header.
func TestBuiltinTable(t *testing.T) {
	tb := Default()
	if tb.Len() < 40 {
		t.Fatalf("only %d built-in rules", tb.Len())
	}
	known := []string{"google", "microsoft", "outlook", "yahoo", "apple", "proofpoint", "mimecast", "barracuda",
		"cisco", "zoho", "fastmail", "yandex", "mailru", "qq", "gmx", "orange", "comcast"}
	for _, r := range tb.rules {
		if r.source == "" {
			t.Errorf("rule %s names no source", r.id)
		}
		for _, op := range r.operators {
			if !slices.Contains(known, op) {
				t.Errorf("rule %s: operator %q is not one of the operator table's names", r.id, op)
			}
		}
	}
	doc := string(configs.DefaultRepliesYAML())
	for _, reason := range ReplyReasons() {
		if !strings.Contains(doc, "#   "+reason+" ") {
			t.Errorf("replies.yaml does not document the reason %s", reason)
		}
	}
	for _, key := range ruleKeys {
		if !strings.Contains(doc, "#   "+key+":") {
			t.Errorf("replies.yaml does not document the key %s", key)
		}
	}
	// Reparsing the embedded file gives the same table (no hidden state).
	again, err := parse(configs.DefaultRepliesYAML(), originBuiltin)
	if err != nil || !slices.Equal(again.RuleIDs(), tb.RuleIDs()) {
		t.Errorf("reparse: %v", err)
	}
}

// A built-in rule without a source is refused; a user's may omit it.
func TestBuiltinNeedsSource(t *testing.T) {
	y := []byte("rules:\n  - id: a\n    reason: rejected\n")
	if _, err := parse(y, originBuiltin); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("err = %v", err)
	}
	if _, err := Parse(y); err != nil {
		t.Errorf("user rule without source: %v", err)
	}
}

func TestMatchingConditions(t *testing.T) {
	tb, err := Parse([]byte(`rules:
  - id: op
    operator: google
    code: 550
    reason: mailbox_unknown
    detail: by-operator
  - id: stage-mail
    stage: mail
    code: 5xx
    reason: sender_rejected
  - id: none
    code: 5xx
    enhanced: none
    text: [alpha, beta]
    reason: mailbox_disabled
  - id: wild
    enhanced: "*.7.*"
    reason: policy_block
  - id: class-55x
    code: 55x
    reason: mailbox_full
  - id: re
    regexp: 'listed (?:at|on) (?P<detail>[a-z.]+)'
    reason: policy_block
  - id: rest
    reason: rejected
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text     string
		stage    Stage
		operator string
		rule     string
		detail   string
	}{
		{"550 5.1.1 no", "", "Google", "op", "by-operator"},
		{"550 5.1.1 no", "", "", "class-55x", ""},
		{"550 5.1.1 no", StageMail, "", "stage-mail", ""},
		{"550 BETA test", "", "", "none", ""},
		{"550 5.0.0 beta test", "", "", "class-55x", ""},
		{"451 4.7.1 later", "", "", "wild", ""},
		{"554 Listed at DNSBL.Example then", StageRcpt, "", "class-55x", ""},
		{"421 Listed at DNSBL.Example then", StageRcpt, "", "re", "dnsbl.example"},
		{"250 ok", "", "", "rest", ""},
	}
	for _, tt := range tests {
		d := tb.Classify(Input{Reply: reply(t, tt.text), Stage: tt.stage, Operator: tt.operator})
		if d.RuleID != tt.rule || d.Detail != tt.detail {
			t.Errorf("%q stage=%q op=%q: rule %q detail %q, want %q %q (%s)", tt.text, tt.stage, tt.operator, d.RuleID, d.Detail, tt.rule, tt.detail, d.Why)
		}
	}
	empty, _ := Parse(nil)
	if d := empty.Classify(Input{Reply: reply(t, "550 x")}); d.RuleID != "" || d.Reason != ReasonRejected || d.Status != "unknown" {
		t.Errorf("no rules: %+v", d)
	}
}

func TestExplainNearMisses(t *testing.T) {
	tb := Default()
	// Postfix's access-map refusal uses the words of Microsoft's
	// directory-based edge blocking, but 5.7.1: the Microsoft rule comes close.
	e := tb.Explain(Input{Reply: reply(t, "550 5.7.1 <a@b.example>: Recipient address rejected: Access denied")})
	if e.Reason != ReasonPolicyBlock || e.RuleID == "" || e.Why == "" {
		t.Fatalf("decision %+v", e.Decision)
	}
	found := false
	for _, n := range e.Near {
		if n.RuleID == "microsoft-dbeb" {
			found = true
		}
	}
	if !found {
		t.Errorf("near misses %+v lack microsoft-dbeb", e.Near)
	}
	if len(e.Near) > maxNear {
		t.Errorf("%d near misses", len(e.Near))
	}
	// Explain and Classify agree.
	if d := tb.Classify(Input{Reply: reply(t, "550 5.7.1 <a@b.example>: Recipient address rejected: Access denied")}); d != e.Decision {
		t.Errorf("Classify %+v != Explain %+v", d, e.Decision)
	}
}

// A hostile reply is read in bounded time: only maxText bytes count.
func TestLongTextIsCapped(t *testing.T) {
	long := probe.Reply{Code: 550, Lines: []string{strings.Repeat("x", 4*maxText) + " user unknown"}}
	if d := Default().Classify(Input{Reply: long}); d.Reason == ReasonMailboxUnknown {
		t.Errorf("text beyond %d bytes was read: %+v", maxText, d)
	}
}

func BenchmarkClassify(b *testing.B) {
	tb := Default()
	replies := []probe.Reply{
		{Code: 250, Enhanced: "2.1.5", Lines: []string{"Ok"}},
		{Code: 550, Enhanced: "5.1.1", Lines: []string{"<a@b.example>: Recipient address rejected: User unknown in virtual mailbox table"}},
		{Code: 451, Enhanced: "4.7.1", Lines: []string{"Greylisting in action, please come back later"}},
		{Code: 500, Lines: []string{"unrecognised command that no rule reads"}},
	}
	for _, r := range replies {
		b.Run(r.String()[:3], func(b *testing.B) {
			for b.Loop() {
				tb.Classify(Input{Reply: r})
			}
		})
	}
}

func TestRuleInfoAndStages(t *testing.T) {
	info, ok := Default().Rule("microsoft-dbeb")
	if !ok || info.Origin != originBuiltin || info.Source == "" || info.Line == 0 {
		t.Errorf("Rule(microsoft-dbeb) = %+v, %v", info, ok)
	}
	if _, ok := Default().Rule("no-such-rule"); ok {
		t.Error("a rule that does not exist was found")
	}
	for cmd, want := range map[string]Stage{"banner": StageBanner, "EHLO": StageEHLO, "HELO": StageEHLO, "STARTTLS": StageEHLO, "MAIL": StageMail, "RCPT": StageRcpt} {
		if got, ok := StageOfCommand(cmd); !ok || got != want {
			t.Errorf("StageOfCommand(%q) = %q, %v", cmd, got, ok)
		}
	}
	if _, ok := StageOfCommand("DATA"); ok {
		t.Error("DATA has a stage")
	}
}
