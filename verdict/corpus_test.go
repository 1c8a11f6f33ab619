package verdict

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
)

// corpusEntry is one reply of testdata/corpus.yaml; its header documents
// the fields.
type corpusEntry struct {
	ID        string `yaml:"id"`
	Stage     string `yaml:"stage"`
	Operator  string `yaml:"operator"`
	Reply     string `yaml:"reply"`
	Source    string `yaml:"source"`
	Status    string `yaml:"status"`
	Reason    string `yaml:"reason"`
	Detail    string `yaml:"detail"`
	Note      string `yaml:"note"`
	Undecided string `yaml:"undecided"`
}

// stageData marks replies sent after DATA: documented, never classified.
const stageData = "data"

// minCorpus is the floor for replies sent before DATA.
const minCorpus = 150

func loadCorpus(t *testing.T) []corpusEntry {
	t.Helper()
	data, err := os.ReadFile("testdata/corpus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []corpusEntry `yaml:"entries"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("corpus.yaml: %v", err)
	}
	return f.Entries
}

// The corpus is well formed: unique ids, known stages and reasons, a source
// for every reply, a verdict for every reply bulkverify can see and none for
// those it cannot.
func TestCorpusIsWellFormed(t *testing.T) {
	entries := loadCorpus(t)
	ids := map[string]bool{}
	seen := 0
	for _, e := range entries {
		if ids[e.ID] || e.ID == "" {
			t.Errorf("id %q empty or used twice", e.ID)
		}
		ids[e.ID] = true
		if e.Reply == "" || e.Source == "" {
			t.Errorf("%s: no reply or no source", e.ID)
		}
		if e.Stage == stageData {
			if e.Status != "" || e.Reason != "" || e.Note == "" {
				t.Errorf("%s: a reply after DATA has a note saying so and no verdict", e.ID)
			}
			continue
		}
		seen++
		if !validStage(Stage(e.Stage)) {
			t.Errorf("%s: stage %q", e.ID, e.Stage)
		}
		if s, ok := DefaultStatus(e.Reason); !ok || e.Status == "" || !slices.Contains(statuses, e.Status) || s != e.Status {
			t.Errorf("%s: status %q reason %q", e.ID, e.Status, e.Reason)
		}
		if _, err := probe.ParseReply(e.Reply); err != nil {
			t.Errorf("%s: %v", e.ID, err)
		}
	}
	if seen < minCorpus {
		t.Errorf("%d replies sent before DATA, want at least %d", seen, minCorpus)
	}
}

// Every reply of the corpus, sent by a real SMTP server as the reply to RCPT
// and read by the real probe client, gets the corpus's verdict from the
// built-in table.
func TestCorpus(t *testing.T) {
	entries := loadCorpus(t)
	const domain, host, ip = "corpus.test", "mx.corpus.test", "127.0.0.93"
	replies := map[string]mailsim.Reply{}
	for i, e := range entries {
		if e.Stage != stageData {
			replies[localPart(i)] = mailsim.Reply{Raw: e.Reply}
		}
	}
	sim, err := mailsim.Start(t.Context(), mailsim.World{
		Domains: []mailsim.Domain{{Name: domain, MX: []mailsim.MX{{Preference: 10, Host: host}}, Replies: replies}},
		Hosts:   []mailsim.Host{{Name: host, IP: ip}},
	}, mailsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	addr := net.JoinHostPort(ip, strconv.Itoa(sim.SMTPPort()))

	table := Default()
	var oldStatus, oldReason []string
	checked := 0
	for i, e := range entries {
		if e.Stage == stageData {
			continue
		}
		got := askRcpt(t, addr, localPart(i)+"@"+domain)
		want, _ := probe.ParseReply(e.Reply)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the client read %#v, the corpus says %#v", e.ID, got, want)
			continue
		}
		checked++
		in := Input{Reply: got, Stage: Stage(e.Stage), Operator: e.Operator}
		d := table.Classify(in)
		if d.Status != e.Status || d.Reason != e.Reason || e.Detail != "" && d.Detail != e.Detail {
			t.Errorf("%s: %s/%s detail %q by rule %q (%s); the corpus says %s/%s detail %q\n  %s",
				e.ID, d.Status, d.Reason, d.Detail, d.RuleID, d.Why, e.Status, e.Reason, e.Detail, got)
		}

		// How the rules before the table read the same reply.
		old := got
		old.Enhanced = legacyEnhanced(e.Reply)
		s, r := legacyRead(in.Stage, old)
		switch {
		case s != e.Status:
			oldStatus = append(oldStatus, fmt.Sprintf("%s: %s/%s, not %s/%s", e.ID, s, r, e.Status, e.Reason))
		case r != legacyVocabulary(e.Reason, got):
			oldReason = append(oldReason, fmt.Sprintf("%s: %s/%s, not %s/%s", e.ID, s, r, e.Status, e.Reason))
		}
	}
	if checked < minCorpus {
		t.Errorf("checked %d replies, want at least %d", checked, minCorpus)
	}
	t.Logf("corpus: %d replies checked through a loopback SMTP server", checked)
	t.Logf("the rules before the table got the status wrong for %d of %d:\n  %s", len(oldStatus), checked, strings.Join(oldStatus, "\n  "))
	t.Logf("and the reason wrong (in their own vocabulary) for %d more:\n  %s", len(oldReason), strings.Join(oldReason, "\n  "))
}

// legacyEnhanced is the enhanced code the parser before the table found:
// only one at the start of a line.
func legacyEnhanced(raw string) string {
	for _, l := range strings.Split(raw, "\n") {
		if len(l) < 4 {
			continue
		}
		text := l[4:]
		if n := strings.IndexByte(text, ' '); n >= 0 {
			text = text[:n]
		}
		if parts := strings.Split(text, "."); len(parts) == 3 && text[0] == l[0] && allDigits(parts[1]) && allDigits(parts[2]) && len(parts[0]) == 1 {
			return text
		}
	}
	return ""
}

func allDigits(s string) bool { return s != "" && len(s) <= 3 && strings.Trim(s, "0123456789") == "" }

func localPart(i int) string { return "c" + strconv.Itoa(i) }

// askRcpt opens a session (one per reply: some replies are 421, after which
// a server may close), asks RCPT for address and returns the reply.
func askRcpt(t *testing.T, addr, address string) probe.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sess, err := probe.Dial(ctx, addr, probe.Config{HeloName: "client.corpus.test", TLS: probe.TLSOff})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer sess.Close()
	if r, err := sess.Mail(ctx, false); err != nil || !r.Positive() {
		t.Fatalf("MAIL: %v %v", r, err)
	}
	r, err := sess.Rcpt(ctx, address)
	if err != nil {
		t.Fatalf("RCPT %s: %v", address, err)
	}
	_ = sess.Quit(ctx)
	return r
}

// legacyRead is how bulkverify read a reply before the table: the session
// code's own mapping for refused greetings, EHLO and MAIL (pipeline/worker.go
// sessionFailure and serve), and legacyClassify for RCPT and a temporary
// refusal of MAIL.
func legacyRead(stage Stage, r probe.Reply) (status, reason string) {
	switch stage {
	case StageBanner, StageEHLO:
		if r.Transient() {
			return output.StatusUnknown, ReasonTemporary
		}
		return output.StatusUnknown, ReasonPolicyBlock
	case StageMail:
		if r.Permanent() && r.Code != 421 {
			return output.StatusUnknown, ReasonSenderRejected
		}
	}
	return legacyClassify(r)
}

// legacyVocabulary folds a reason of the table into the words the rules
// before it had, so that they are not counted wrong for lacking a word.
func legacyVocabulary(reason string, r probe.Reply) string {
	switch reason {
	case ReasonRelayDenied:
		return ReasonPolicyBlock
	case ReasonRateLimited, ReasonTooManyRecipients, ReasonRoutingError:
		switch {
		case strings.HasPrefix(r.Enhanced, "5.7.") || strings.HasPrefix(r.Enhanced, "4.7."):
			return ReasonPolicyBlock
		case r.Transient():
			return ReasonTemporary
		}
		return ReasonRejected
	}
	return reason
}

// legacyClassify is pipeline.Classify as it was before the table (commit
// 9903228), kept only to measure the table against.
func legacyClassify(r probe.Reply) (status, reason string) {
	enh := r.Enhanced
	switch {
	case r.Code == 250 || r.Code == 251:
		return output.StatusDeliverable, ReasonAccepted
	case r.Positive():
		return output.StatusUnknown, ReasonRejected
	case enh == "5.2.2" || enh == "4.2.2" || r.Code == 552:
		return output.StatusRisky, ReasonMailboxFull
	case strings.HasPrefix(enh, "5.7.") || strings.HasPrefix(enh, "4.7."):
		if r.Transient() && legacyGreylisted(r) {
			return output.StatusUnknown, ReasonGreylisted
		}
		return output.StatusUnknown, ReasonPolicyBlock
	case r.Transient():
		if legacyGreylisted(r) {
			return output.StatusUnknown, ReasonGreylisted
		}
		return output.StatusUnknown, ReasonTemporary
	case enh == "5.1.7" || enh == "5.1.8":
		return output.StatusUnknown, ReasonSenderRejected
	case strings.HasPrefix(enh, "5.1."):
		return output.StatusUndeliverable, ReasonMailboxUnknown
	case enh == "5.2.1":
		return output.StatusUndeliverable, ReasonMailboxDisabled
	case enh == "" && (r.Code == 550 || r.Code == 551 || r.Code == 553):
		if legacyPolicy(r) {
			return output.StatusUnknown, ReasonPolicyBlock
		}
		return output.StatusUndeliverable, ReasonMailboxUnknown
	case r.Code == 554:
		return output.StatusUnknown, ReasonPolicyBlock
	default:
		return output.StatusUnknown, ReasonRejected
	}
}

func legacyGreylisted(r probe.Reply) bool {
	t := strings.ToLower(r.Text())
	return strings.Contains(t, "greylist") || strings.Contains(t, "graylist") ||
		strings.Contains(t, "try again later") || strings.Contains(t, "please retry")
}

func legacyPolicy(r probe.Reply) bool {
	t := strings.ToLower(r.Text())
	for _, w := range [...]string{"spam", "block", "blacklist", "denied", "reputation",
		"policy", "not permitted", "relay", "rbl", "spamhaus", "abuse"} {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
}
