package verdict

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
)

// maxText caps the reply text the rules look at. A session already bounds
// replies (probe.Config.MaxLineLength × MaxReplyLines), but those bounds are
// generous; what a server says that matters comes first.
const maxText = 8 << 10

// Input is a reply to decide and what is known about where it came from.
type Input struct {
	Reply probe.Reply
	// Stage is the command the reply answers. The zero value means
	// StageRcpt, the common case.
	Stage Stage
	// Operator names who runs the mail exchanger, as the operator table
	// names it from the MX host name (e.g. "google", "microsoft"); "" when
	// not known. Rules for an operator apply only when it is given.
	Operator string
}

// Decision is what a reply means.
type Decision struct {
	Status string // output.Status*
	Reason string // Reason*
	// Detail adds a word when the rule has one: the blocklist a refusal
	// names ("spamhaus"), for instance. Often "".
	Detail string
	// RuleID is the id of the rule that decided; "" when no rule matched.
	RuleID string
	// Source is where that rule's reading comes from.
	Source string
	// Why says in words what matched, e.g. `code 550 is 5xx; text has
	// "user unknown"`.
	Why string
}

// candidate is an Input prepared for matching once.
type candidate struct {
	code     int
	codeStr  string
	enhanced [3]string // noEnhanced when absent
	text     string    // capped
	lower    string    // text, lower-cased
	stage    Stage
	operator string
}

func prepare(in Input) candidate {
	c := candidate{
		code:     in.Reply.Code,
		codeStr:  strconv.Itoa(in.Reply.Code),
		enhanced: noEnhanced,
		stage:    in.Stage,
		operator: strings.ToLower(strings.TrimSpace(in.Operator)),
	}
	if c.stage == "" {
		c.stage = StageRcpt
	}
	if parts := strings.Split(in.Reply.Enhanced, "."); len(parts) == 3 {
		c.enhanced = [3]string{parts[0], parts[1], parts[2]}
	}
	c.text = in.Reply.Text()
	if len(c.text) > maxText {
		c.text = c.text[:maxText]
	}
	c.lower = strings.ToLower(c.text)
	return c
}

// Classify decides a reply: the first rule that matches it decides. A reply
// no rule matches is unknown/rejected, with an empty RuleID.
func (t *Table) Classify(in Input) Decision {
	c := prepare(in)
	for _, r := range t.rules {
		if ok, _ := r.match(&c, nil, false); ok {
			return r.decide(&c)
		}
	}
	return noRule()
}

func noRule() Decision {
	return Decision{Status: output.StatusUnknown, Reason: ReasonRejected, Why: "no rule matched"}
}

// Explanation is a decision with the rules that came close to it.
type Explanation struct {
	Decision
	// Near lists rules of several conditions, tried before the deciding one,
	// that failed on one condition only, in the order they were tried (at most maxNear).
	Near []NearMiss
}

// NearMiss is a rule of several conditions that would have decided but for
// one of them.
type NearMiss struct {
	RuleID string
	Reason string // the reason it would have given
	Failed string // the condition that did not hold, in words
}

const maxNear = 5

// Explain is Classify telling which rules came close, for a user who wants
// to know why a reply was read as it was.
func (t *Table) Explain(in Input) Explanation {
	c := prepare(in)
	var e Explanation
	for _, r := range t.rules {
		var failed []failure
		ok, _ := r.match(&c, &failed, false)
		if ok {
			e.Decision = r.decide(&c)
			return e
		}
		// Close means the reply is of the kind the rule is about (its
		// stage and code hold) and one finer condition failed.
		if len(failed) == 1 && !failed[0].coarse && r.conditions() > 1 && len(e.Near) < maxNear {
			e.Near = append(e.Near, NearMiss{RuleID: r.id, Reason: r.reason, Failed: failed[0].msg})
		}
	}
	e.Decision = noRule()
	return e
}

// failure is a condition of a rule that a reply does not meet. Coarse ones
// (stage, code) say the reply is not of the rule's kind at all.
type failure struct {
	msg    string
	coarse bool
}

// match reports whether r matches c and, when it does, why. With failed
// non-nil it checks every condition and records each one that failed;
// otherwise it stops at the first.
func (r *rule) match(c *candidate, failed *[]failure, explain bool) (bool, []string) {
	var why []string
	note := func(format string, args ...any) {
		if explain {
			why = append(why, fmt.Sprintf(format, args...))
		}
	}
	ok := true
	// fail records a condition that did not hold; its message is only
	// built when asked for (Explain). It reports whether to stop.
	fail := func(coarse bool, msg func() string) bool {
		ok = false
		if failed == nil {
			return true
		}
		*failed = append(*failed, failure{msg: msg(), coarse: coarse})
		return false
	}
	if len(r.operators) > 0 {
		if !contains(r.operators, c.operator) {
			if fail(false, func() string {
				return fmt.Sprintf("operator is %s, the rule wants %s", orNone(c.operator), strings.Join(r.operators, " or "))
			}) {
				return false, nil
			}
		} else {
			note("operator %s", c.operator)
		}
	}
	if len(r.stages) > 0 {
		if !contains(r.stages, c.stage) {
			if fail(true, func() string { return fmt.Sprintf("stage is %s, the rule wants %s", c.stage, joinStages(r.stages)) }) {
				return false, nil
			}
		} else {
			note("stage %s", c.stage)
		}
	}
	if len(r.codes) > 0 {
		if p, hit := r.codeHit(c.codeStr); !hit {
			if fail(true, func() string { return fmt.Sprintf("code %s is not %s", c.codeStr, strings.Join(r.codes, ", ")) }) {
				return false, nil
			}
		} else {
			note("code %s is %s", c.codeStr, p)
		}
	}
	if len(r.enhanced) > 0 {
		if p, hit := r.enhancedHit(c.enhanced); !hit {
			if fail(false, func() string {
				return fmt.Sprintf("enhanced code %s is not %s", enhancedString(c.enhanced), patternsString(r.enhanced))
			}) {
				return false, nil
			}
		} else {
			note("enhanced code %s is %s", enhancedString(c.enhanced), enhancedString(p))
		}
	}
	if len(r.texts) > 0 {
		if piece, hit := r.textHit(c.lower); !hit {
			if fail(false, func() string { return "the text has none of " + quoteList(r.texts) }) {
				return false, nil
			}
		} else {
			note("the text has %q", piece)
		}
	}
	if r.re != nil {
		if loc := r.re.FindStringIndex(c.text); loc == nil {
			if fail(false, func() string {
				return fmt.Sprintf("the text does not match /%s/", strings.TrimPrefix(r.re.String(), "(?i)"))
			}) {
				return false, nil
			}
		} else {
			note("the text matches /%s/ at %q", strings.TrimPrefix(r.re.String(), "(?i)"), c.text[loc[0]:loc[1]])
		}
	}
	if !ok {
		return false, nil
	}
	return true, why
}

// conditions counts the conditions of r.
func (r *rule) conditions() int {
	n := 0
	for _, has := range []bool{len(r.operators) > 0, len(r.stages) > 0, len(r.codes) > 0, len(r.enhanced) > 0, len(r.texts) > 0, r.re != nil} {
		if has {
			n++
		}
	}
	return n
}

// decide builds the decision of a rule known to match c.
func (r *rule) decide(c *candidate) Decision {
	_, why := r.match(c, nil, true)
	d := Decision{Status: r.status, Reason: r.reason, Detail: r.detail, RuleID: r.id, Source: r.source}
	if d.Detail == "" && r.reDetail >= 0 {
		if m := r.re.FindStringSubmatch(c.text); m != nil {
			d.Detail = cleanDetail(m[r.reDetail])
		}
	}
	if len(why) == 0 {
		d.Why = "the rule matches every reply"
	} else {
		d.Why = strings.Join(why, "; ")
	}
	return d
}

// cleanDetail keeps a detail taken from server text short and plain.
func cleanDetail(s string) string {
	s = strings.ToLower(s)
	if len(s) > maxDetailBytes {
		s = s[:maxDetailBytes]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, s)
}

func (r *rule) codeHit(code string) (string, bool) {
	for _, p := range r.codes {
		if len(code) == 3 && codeMatches(p, code) {
			return p, true
		}
	}
	return "", false
}

func codeMatches(pattern, code string) bool {
	for i := 0; i < 3; i++ {
		if pattern[i] != 'x' && pattern[i] != code[i] {
			return false
		}
	}
	return true
}

func (r *rule) enhancedHit(e [3]string) ([3]string, bool) {
	for _, p := range r.enhanced {
		if p == noEnhanced || e == noEnhanced {
			if p == e {
				return p, true
			}
			continue
		}
		if (p[0] == "*" || p[0] == e[0]) && (p[1] == "*" || p[1] == e[1]) && (p[2] == "*" || p[2] == e[2]) {
			return p, true
		}
	}
	return [3]string{}, false
}

func (r *rule) textHit(lower string) (string, bool) {
	for _, t := range r.texts {
		if strings.Contains(lower, t) {
			return t, true
		}
	}
	return "", false
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func enhancedString(e [3]string) string {
	if e == noEnhanced {
		return "none"
	}
	return e[0] + "." + e[1] + "." + e[2]
}

func patternsString(ps [][3]string) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = enhancedString(p)
	}
	return strings.Join(out, ", ")
}

func joinStages(ss []Stage) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, " or ")
}

// quoteList quotes the first few pieces of a list and counts the rest.
func quoteList(ss []string) string {
	const show = 3
	var out []string
	for i, s := range ss {
		if i == show {
			out = append(out, fmt.Sprintf("and %d more", len(ss)-show))
			break
		}
		out = append(out, strconv.Quote(s))
	}
	return strings.Join(out, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "not known"
	}
	return s
}
