package verdict

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/configs"
)

// Table is an ordered list of rules that read replies. The first rule that
// matches a reply decides it. A Table is immutable and safe for concurrent
// use; build one with Default, Load, Parse or Extend.
type Table struct {
	rules []*rule
}

// Limits on a rules file, so that a mistaken or hostile file cannot make
// classification slow: Go's regular expressions run in time linear in the
// text, and the text considered is capped (maxText).
const (
	maxRules       = 5000
	maxRegexpBytes = 1024
	maxTextBytes   = 256 // one text piece
	maxIDBytes     = 64
	maxDetailBytes = 64
)

// rule is one validated rule. Its match fields are nil/empty when the rule
// does not constrain them.
type rule struct {
	id, source, note string
	origin           string // "built-in" or the file it came from
	line             int    // line in that file

	operators []string    // lower-case
	stages    []Stage     //
	codes     []string    // "550", "55x", "5xx"
	enhanced  [][3]string // "*" for any part; {"none"} for no code
	texts     []string    // lower-case; any one must occur
	re        *regexp.Regexp
	reDetail  int // index of the detail group in re, or -1

	status, reason, detail string
}

// ruleSpec is a rule as written in a file.
type ruleSpec struct {
	ID       string    `yaml:"id"`
	Source   string    `yaml:"source"`
	Note     string    `yaml:"note"`
	Operator strOrList `yaml:"operator"`
	Stage    strOrList `yaml:"stage"`
	Code     strOrList `yaml:"code"`
	Enhanced strOrList `yaml:"enhanced"`
	Text     strOrList `yaml:"text"`
	Regexp   string    `yaml:"regexp"`
	Status   string    `yaml:"status"`
	Reason   string    `yaml:"reason"`
	Detail   string    `yaml:"detail"`
}

// ruleKeys are the keys a rule may have: anything else is a mistake.
var ruleKeys = []string{"id", "source", "note", "operator", "stage", "code", "enhanced", "text", "regexp", "status", "reason", "detail"}

// fileSpec is a rules file.
type fileSpec struct {
	Rules []yaml.Node `yaml:"rules"`
	Drop  []string    `yaml:"drop"`
}

// strOrList is a YAML scalar or a list of scalars.
type strOrList []string

func (l *strOrList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = strOrList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(strOrList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a list of plain values is expected", c.Line)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: a value or a list of values is expected", n.Line)
}

// originBuiltin names the embedded table in errors and explanations.
const originBuiltin = "built-in"

// defaultTable parses the embedded table once; it is read-only afterwards.
var defaultTable = sync.OnceValue(func() *Table {
	t, err := parse(configs.DefaultRepliesYAML(), originBuiltin)
	if err != nil {
		// The file is embedded at build time and covered by tests.
		panic("verdict: embedded replies.yaml is invalid: " + err.Error())
	}
	return t
})

// Default returns the built-in table, which is exactly configs/replies.yaml.
func Default() *Table { return defaultTable() }

// Parse reads a rules file on its own: the table has its rules and no
// built-in ones. A drop list is an error here (there is nothing to drop).
func Parse(data []byte) (*Table, error) { return parse(data, "") }

func parse(data []byte, origin string) (*Table, error) {
	rules, drop, err := decode(data, origin)
	if err != nil {
		return nil, err
	}
	if len(drop) > 0 {
		return nil, errors.New("drop: a table of its own has nothing to drop; use Extend to change another table")
	}
	return &Table{rules: rules}, nil
}

// Extend returns a new table made of the rules of a user's file (data)
// followed by t's rules. The user's rules are tried first, in their order;
// one with the id of a rule of t replaces it, and the file's drop list
// removes rules of t by id. Naming an id t does not have is an error.
func (t *Table) Extend(data []byte) (*Table, error) {
	return t.extend(data, "")
}

func (t *Table) extend(data []byte, origin string) (*Table, error) {
	rules, drop, err := decode(data, origin)
	if err != nil {
		return nil, err
	}
	remove := make(map[string]bool, len(drop)+len(rules))
	for _, id := range drop {
		if !t.has(id) {
			return nil, fmt.Errorf("drop: no rule has the id %q", id)
		}
		if remove[id] {
			return nil, fmt.Errorf("drop: %q is listed twice", id)
		}
		remove[id] = true
	}
	for _, r := range rules {
		if remove[r.id] && slices.Contains(drop, r.id) {
			return nil, fmt.Errorf("rule %q (line %d) is both replaced and dropped", r.id, r.line)
		}
		remove[r.id] = true // a rule of the same id replaces t's
	}
	out := &Table{rules: slices.Clip(rules)}
	for _, r := range t.rules {
		if !remove[r.id] {
			out.rules = append(out.rules, r)
		}
	}
	if len(out.rules) > maxRules {
		return nil, fmt.Errorf("%d rules in all; at most %d", len(out.rules), maxRules)
	}
	return out, nil
}

// Load reads the user's rules file at path over the built-in table (see
// Extend). An empty path gives the built-in table.
func Load(path string) (*Table, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading replies file: %w", err)
	}
	t, err := Default().extend(data, path)
	if err != nil {
		return nil, fmt.Errorf("replies file %s: %w", path, err)
	}
	return t, nil
}

func (t *Table) has(id string) bool {
	return slices.ContainsFunc(t.rules, func(r *rule) bool { return r.id == id })
}

// Len returns the number of rules.
func (t *Table) Len() int { return len(t.rules) }

// RuleIDs returns the ids of the rules in the order they are tried.
func (t *Table) RuleIDs() []string {
	out := make([]string, len(t.rules))
	for i, r := range t.rules {
		out[i] = r.id
	}
	return out
}

// RuleInfo describes one rule of a table.
type RuleInfo struct {
	ID     string
	Source string // where its reading comes from; may be "" in a user's file
	Note   string
	Origin string // "built-in", or the file it was loaded from ("" when parsed from bytes)
	Line   int    // its line in that file
}

// Rule returns what is known of the rule with the given id, and whether the
// table has one.
func (t *Table) Rule(id string) (RuleInfo, bool) {
	for _, r := range t.rules {
		if r.id == id {
			return RuleInfo{ID: r.id, Source: r.source, Note: r.note, Origin: r.origin, Line: r.line}, true
		}
	}
	return RuleInfo{}, false
}

// decode parses and validates a rules file. Errors name the rule by its
// position, id and line.
func decode(data []byte, origin string) ([]*rule, []string, error) {
	var f fileSpec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if len(f.Rules) > maxRules {
		return nil, nil, fmt.Errorf("%d rules; at most %d", len(f.Rules), maxRules)
	}
	ids := make(map[string]int, len(f.Rules))
	rules := make([]*rule, 0, len(f.Rules))
	for i := range f.Rules {
		n := &f.Rules[i]
		r, err := compileRule(n, origin)
		if err != nil {
			name := ""
			if id := mappingValue(n, "id"); id != "" {
				name = fmt.Sprintf(" (%q)", id)
			}
			return nil, nil, fmt.Errorf("rule %d%s at line %d: %w", i+1, name, n.Line, err)
		}
		if first, dup := ids[r.id]; dup {
			return nil, nil, fmt.Errorf("rule %d (%q) at line %d: id already used by rule %d", i+1, r.id, n.Line, first)
		}
		ids[r.id] = i + 1
		rules = append(rules, r)
	}
	return rules, f.Drop, nil
}

func mappingValue(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// compileRule validates one rule node and prepares it for matching.
func compileRule(n *yaml.Node, origin string) (*rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("a rule is a mapping of keys (id, reason, code, ...)")
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(ruleKeys, k) {
			return nil, fmt.Errorf("unknown key %q (known: %s)", k, strings.Join(ruleKeys, ", "))
		}
	}
	var s ruleSpec
	if err := n.Decode(&s); err != nil {
		return nil, err
	}
	r := &rule{id: s.ID, source: strings.TrimSpace(s.Source), note: strings.TrimSpace(s.Note), origin: origin, line: n.Line, reDetail: -1}
	if err := checkID(s.ID); err != nil {
		return nil, err
	}
	if origin == originBuiltin && r.source == "" {
		return nil, errors.New("a built-in rule must name its source")
	}
	for _, op := range s.Operator {
		op = strings.ToLower(strings.TrimSpace(op))
		if !validOperator(op) {
			return nil, fmt.Errorf("operator %q: lower-case letters, digits and - only", op)
		}
		r.operators = append(r.operators, op)
	}
	for _, st := range s.Stage {
		st := Stage(strings.ToLower(strings.TrimSpace(st)))
		if !validStage(st) {
			return nil, fmt.Errorf("stage %q: want banner, ehlo, mail or rcpt", st)
		}
		r.stages = append(r.stages, st)
	}
	for _, c := range s.Code {
		c = strings.ToLower(strings.TrimSpace(c))
		if !validCodePattern(c) {
			return nil, fmt.Errorf("code %q: want a reply code such as 550, 55x or 5xx", c)
		}
		r.codes = append(r.codes, c)
	}
	for _, e := range s.Enhanced {
		p, ok := parseEnhancedPattern(strings.TrimSpace(e))
		if !ok {
			return nil, fmt.Errorf("enhanced %q: want a code such as 5.1.1, with * for any part (5.1.*), or none", e)
		}
		r.enhanced = append(r.enhanced, p)
	}
	if !r.canMatchSomeCode() {
		return nil, errors.New("no code it names can carry any enhanced code it names (their classes differ)")
	}
	for _, t := range s.Text {
		if t == "" || len(t) > maxTextBytes {
			return nil, fmt.Errorf("text %q: a piece of text of 1 to %d bytes", t, maxTextBytes)
		}
		r.texts = append(r.texts, strings.ToLower(t))
	}
	if s.Regexp != "" {
		if len(s.Regexp) > maxRegexpBytes {
			return nil, fmt.Errorf("regexp: longer than %d bytes", maxRegexpBytes)
		}
		re, err := regexp.Compile("(?i)" + s.Regexp)
		if err != nil {
			return nil, fmt.Errorf("regexp: %w", err)
		}
		r.re = re
		r.reDetail = re.SubexpIndex("detail")
	}
	status, ok := DefaultStatus(s.Reason)
	if !ok {
		return nil, fmt.Errorf("reason %q: want one of %s", s.Reason, strings.Join(ReplyReasons(), ", "))
	}
	r.reason = s.Reason
	if s.Status != "" {
		if !slices.Contains(statuses, s.Status) {
			return nil, fmt.Errorf("status %q: want one of %s", s.Status, strings.Join(statuses, ", "))
		}
		status = s.Status
	}
	r.status = status
	if len(s.Detail) > maxDetailBytes || strings.ContainsAny(s.Detail, ",\"\r\n") {
		return nil, fmt.Errorf("detail %q: at most %d bytes, no commas, quotes or line breaks", s.Detail, maxDetailBytes)
	}
	r.detail = s.Detail
	return r, nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("id is missing")
	}
	if len(id) > maxIDBytes {
		return fmt.Errorf("id %q: longer than %d bytes", id, maxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("id %q: lower-case letters, digits and . _ - only, starting with a letter or digit", id)
		}
	}
	return nil
}

func validOperator(op string) bool {
	if op == "" || len(op) > maxIDBytes {
		return false
	}
	for i := 0; i < len(op); i++ {
		c := op[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validCodePattern accepts "550", "55x" and "5xx": the class digit is
// always given, then digits, then x's.
func validCodePattern(c string) bool {
	if len(c) != 3 || c[0] < '2' || c[0] > '5' {
		return false
	}
	switch {
	case isDigit(c[1]) && isDigit(c[2]), isDigit(c[1]) && c[2] == 'x', c[1] == 'x' && c[2] == 'x':
		return true
	}
	return false
}

// noEnhanced is the pattern "none".
var noEnhanced = [3]string{"none"}

func parseEnhancedPattern(s string) ([3]string, bool) {
	if s == "none" {
		return noEnhanced, true
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return [3]string{}, false
	}
	for i, p := range parts {
		switch {
		case p == "*":
		case i == 0 && (p == "2" || p == "4" || p == "5"):
		case i > 0 && len(p) >= 1 && len(p) <= 3 && strings.Trim(p, "0123456789") == "":
		default:
			return [3]string{}, false
		}
	}
	return [3]string{parts[0], parts[1], parts[2]}, true
}

// canMatchSomeCode reports whether some code pattern and some enhanced
// pattern of r can hold together: an enhanced code's class is its reply
// code's first digit.
func (r *rule) canMatchSomeCode() bool {
	if len(r.codes) == 0 || len(r.enhanced) == 0 {
		return true
	}
	for _, c := range r.codes {
		for _, e := range r.enhanced {
			if e == noEnhanced || e[0] == "*" || e[0][0] == c[0] {
				return true
			}
		}
	}
	return false
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
