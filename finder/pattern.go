package finder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/configs"
)

// Pattern is one validated entry of a patterns file: a named template for the
// local part of a candidate address. The syntax is documented in
// configs/patterns.yaml.
type Pattern struct {
	Name     string // e.g. "first.last"; reported as the pattern of an address
	Template string // e.g. "{first}.{last}"
	Join     string // joins the words of one name part: "", ".", "-" or "_"

	segs []segment // Template, parsed; nil for a Pattern not made by this package
}

// segment is a literal run of a template, or one placeholder.
type segment struct {
	part    namePart // partNone for a literal
	initial bool     // {f} {m} {l}: the first letter only
	literal string
}

type namePart int

const (
	partNone namePart = iota
	partFirst
	partMiddle
	partLast
)

// placeholder maps the text between braces to what it stands for.
func placeholder(name string) (segment, bool) {
	switch name {
	case "first":
		return segment{part: partFirst}, true
	case "middle":
		return segment{part: partMiddle}, true
	case "last":
		return segment{part: partLast}, true
	case "f":
		return segment{part: partFirst, initial: true}, true
	case "m":
		return segment{part: partMiddle, initial: true}, true
	case "l":
		return segment{part: partLast, initial: true}, true
	}
	return segment{}, false
}

// NewPattern validates one pattern. The error says what is wrong with it.
func NewPattern(name, template, join string) (Pattern, error) {
	if err := checkPatternName(name); err != nil {
		return Pattern{}, err
	}
	switch join {
	case "", ".", "-", "_":
	default:
		return Pattern{}, fmt.Errorf("join %q must be \"\", \".\", \"-\" or \"_\"", join)
	}
	segs, err := parseTemplate(template)
	if err != nil {
		return Pattern{}, fmt.Errorf("template %q: %w", template, err)
	}
	return Pattern{Name: name, Template: template, Join: join, segs: segs}, nil
}

// checkPatternName keeps names safe to print in a CSV cell and unambiguous in
// a domain_pattern column.
func checkPatternName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > 40 {
		return fmt.Errorf("name %q is longer than 40 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter {
			return fmt.Errorf("name %q must start with a letter", name)
		}
		if !letter && !('0' <= c && c <= '9') && strings.IndexByte("._-+/", c) < 0 {
			return fmt.Errorf("name %q: character %q is not allowed (letters, digits and . _ - + /)", name, c)
		}
	}
	return nil
}

func parseTemplate(t string) ([]segment, error) {
	if t == "" {
		return nil, errors.New("empty")
	}
	var segs []segment
	hasPlaceholder := false
	for i := 0; i < len(t); {
		c := t[i]
		switch {
		case c == '{':
			end := strings.IndexByte(t[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated placeholder at offset %d", i)
			}
			name := t[i+1 : i+end]
			seg, ok := placeholder(name)
			if !ok {
				return nil, fmt.Errorf("unknown placeholder {%s} (known: {first} {middle} {last} {f} {m} {l})", name)
			}
			segs = append(segs, seg)
			hasPlaceholder = true
			i += end + 1
		case c == '}':
			return nil, fmt.Errorf("unmatched } at offset %d", i)
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
			if n := len(segs); n > 0 && segs[n-1].part == partNone {
				segs[n-1].literal += string(c)
			} else {
				segs = append(segs, segment{literal: string(c)})
			}
			i++
		default:
			return nil, fmt.Errorf("character %q is not allowed (placeholders, a-z, 0-9, . - _)", c)
		}
	}
	if !hasPlaceholder {
		return nil, errors.New("has no placeholder, so it would give every person the same address")
	}
	// Placeholders never expand to a dot, so these rules on the literals are
	// exactly the dot-string rules on every expansion (with join "." the words
	// are non-empty, so they add no dot at an end or next to another).
	switch {
	case strings.HasPrefix(t, "."):
		return nil, errors.New("starts with a dot")
	case strings.HasSuffix(t, "."):
		return nil, errors.New("ends with a dot")
	case strings.Contains(t, ".."):
		return nil, errors.New("has two dots in a row")
	}
	return segs, nil
}

// patternsFile is the layout of a patterns file.
type patternsFile struct {
	Patterns []struct {
		Name     string `yaml:"name"`
		Template string `yaml:"template"`
		Join     string `yaml:"join"`
	} `yaml:"patterns"`
}

// ParsePatterns reads a patterns file (the format of configs/patterns.yaml)
// and validates every entry. Unknown keys, an empty list, and two entries with
// the same name or the same template and join are errors, so that a typo is
// reported rather than silently ignored.
func ParsePatterns(data []byte) ([]Pattern, error) {
	var f patternsFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(f.Patterns) == 0 {
		return nil, errors.New("no patterns: the file needs a non-empty patterns: list")
	}
	out := make([]Pattern, 0, len(f.Patterns))
	names := make(map[string]bool, len(f.Patterns))
	templates := make(map[string]string, len(f.Patterns))
	for i, e := range f.Patterns {
		p, err := NewPattern(e.Name, e.Template, e.Join)
		if err != nil {
			return nil, fmt.Errorf("pattern %d (%q): %w", i+1, e.Name, err)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("pattern %d: name %q is used twice", i+1, p.Name)
		}
		names[p.Name] = true
		key := p.Template + "\x00" + p.Join
		if other, dup := templates[key]; dup {
			return nil, fmt.Errorf("pattern %d (%q): same template and join as %q", i+1, p.Name, other)
		}
		templates[key] = p.Name
		out = append(out, p)
	}
	return out, nil
}

// LoadPatterns reads and validates the patterns file at path.
func LoadPatterns(path string) ([]Pattern, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading patterns: %w", err)
	}
	ps, err := ParsePatterns(data)
	if err != nil {
		return nil, fmt.Errorf("patterns %s: %w", path, err)
	}
	return ps, nil
}

// DefaultPatterns returns the built-in patterns, which are exactly
// configs/patterns.yaml.
func DefaultPatterns() []Pattern {
	ps, err := ParsePatterns(configs.DefaultPatternsYAML())
	if err != nil {
		// The file is embedded at build time and covered by tests.
		panic("finder: embedded patterns.yaml is invalid: " + err.Error())
	}
	return ps
}

// segments returns the parsed template, parsing it now for a Pattern built as
// a literal rather than by NewPattern. ok is false for an invalid template.
func (p Pattern) segments() ([]segment, bool) {
	if p.segs != nil {
		return p.segs, true
	}
	segs, err := parseTemplate(p.Template)
	return segs, err == nil
}

// expand fills the template with the folded name parts (each a list of
// words). ok is false when the template needs a part the person lacks.
func expand(segs []segment, join string, first, middle, last []string) (string, bool) {
	var b strings.Builder
	for _, s := range segs {
		var words []string
		switch s.part {
		case partNone:
			b.WriteString(s.literal)
			continue
		case partFirst:
			words = first
		case partMiddle:
			words = middle
		case partLast:
			words = last
		}
		if len(words) == 0 {
			return "", false
		}
		if s.initial {
			b.WriteByte(words[0][0]) // folded words are non-empty ASCII
		} else {
			b.WriteString(strings.Join(words, join))
		}
	}
	return b.String(), true
}
