package operator

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/configs"
)

// Operator is one provider running mail exchangers.
type Operator struct {
	Name    string   `yaml:"name"`    // short, stable, lower-case: the provider column's value
	Display string   `yaml:"display"` // the provider's name for people
	MX      []string `yaml:"mx"`      // host-name patterns: "host.example" or "*.example"

	// Sessions is how many SMTP sessions may be open at once to all of its
	// hosts; 0 = the run's per-MX default.
	Sessions int `yaml:"sessions"`
	// RcptPerSecond bounds the RCPT TO commands per second to all of its
	// hosts; nil = the run's per-MX default, 0 = no limit.
	RcptPerSecond *float64 `yaml:"rcpt_per_second"`
	// Backoff is the first pause of all sessions to it after it pushed back
	// too often; 0 = the run's default.
	Backoff time.Duration `yaml:"backoff"`
	// AcceptsAll: it answers 250 to every RCPT TO, so an acceptance proves
	// nothing.
	AcceptsAll bool   `yaml:"accepts_all"`
	Source     string `yaml:"source"`

	// own is set for the operator a host in no entry forms by itself.
	own bool
}

// Own reports whether o is a host in no table entry, its own operator.
func (o *Operator) Own() bool { return o.own }

// Table maps MX host names to their operators. It is read-only once built
// and safe for concurrent use.
type Table struct {
	byName   map[string]*Operator
	exact    map[string]*Operator // "mx.example" -> operator
	suffixes map[string]*Operator // "example" for the pattern "*.example"
}

// ErrBadTable is wrapped by every error about a table's content.
var ErrBadTable = errors.New("operator: bad table")

// Default returns the built-in table (configs/operators.yaml).
func Default() *Table {
	t, err := Parse(configs.DefaultOperatorsYAML())
	if err != nil {
		// The file is embedded at build time and covered by tests.
		panic("operator: the built-in table is invalid: " + err.Error())
	}
	return t
}

// Load returns the built-in table with the operators of the file at path
// added, or replacing built-in ones of the same name. path "" is the
// built-in table alone.
func Load(path string) (*Table, error) {
	t := Default()
	if path == "" {
		return t, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("operator table: %w", err)
	}
	user, err := parseEntries(data)
	if err != nil {
		return nil, fmt.Errorf("operator table %s: %w", path, err)
	}
	merged := make([]*Operator, 0, len(t.byName)+len(user))
	replaced := map[string]bool{}
	for _, o := range user {
		replaced[o.Name] = true
	}
	for _, o := range t.ordered() {
		if !replaced[o.Name] {
			merged = append(merged, o)
		}
	}
	merged = append(merged, user...)
	out, err := build(merged)
	if err != nil {
		return nil, fmt.Errorf("operator table %s: %w", path, err)
	}
	return out, nil
}

// Parse reads a table in the format of configs/operators.yaml.
func Parse(data []byte) (*Table, error) {
	ops, err := parseEntries(data)
	if err != nil {
		return nil, err
	}
	return build(ops)
}

func parseEntries(data []byte) ([]*Operator, error) {
	var file struct {
		Operators []*Operator `yaml:"operators"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrBadTable, err)
	}
	for i, o := range file.Operators {
		if o == nil {
			return nil, fmt.Errorf("%w: entry %d is empty", ErrBadTable, i+1)
		}
		if err := o.check(); err != nil {
			return nil, fmt.Errorf("%w: entry %d (%q): %w", ErrBadTable, i+1, o.Name, err)
		}
	}
	return file.Operators, nil
}

func (o *Operator) check() error {
	if o.Name == "" || o.Name != strings.ToLower(o.Name) || strings.ContainsAny(o.Name, " \t,;") {
		return errors.New("name must be lower-case, without spaces or separators")
	}
	if len(o.MX) == 0 {
		return errors.New("no mx patterns")
	}
	for i, p := range o.MX {
		p = normName(p)
		name := strings.TrimPrefix(p, "*.")
		if name == "" || strings.ContainsAny(name, "* \t/@") || !strings.Contains(name, ".") && !strings.HasPrefix(p, "*.") {
			return fmt.Errorf("mx pattern %q: want host.example or *.example", o.MX[i])
		}
		o.MX[i] = p
	}
	if o.Sessions < 0 || o.Backoff < 0 || (o.RcptPerSecond != nil && *o.RcptPerSecond < 0) {
		return errors.New("negative limit")
	}
	return nil
}

func build(ops []*Operator) (*Table, error) {
	t := &Table{byName: map[string]*Operator{}, exact: map[string]*Operator{}, suffixes: map[string]*Operator{}}
	for _, o := range ops {
		if _, dup := t.byName[o.Name]; dup {
			return nil, fmt.Errorf("%w: operator %q twice", ErrBadTable, o.Name)
		}
		t.byName[o.Name] = o
		for _, p := range o.MX {
			m, key := t.exact, p
			if s, ok := strings.CutPrefix(p, "*."); ok {
				m, key = t.suffixes, s
			}
			if other, dup := m[key]; dup {
				return nil, fmt.Errorf("%w: pattern %q belongs to %q and %q", ErrBadTable, p, other.Name, o.Name)
			}
			m[key] = o
		}
	}
	return t, nil
}

// ordered returns the operators in a stable order (by name).
func (t *Table) ordered() []*Operator {
	out := make([]*Operator, 0, len(t.byName))
	for _, o := range t.byName {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *Operator) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Operators returns every operator of the table, by name.
func (t *Table) Operators() []*Operator { return t.ordered() }

// Named returns the operator called name, or nil.
func (t *Table) Named(name string) *Operator { return t.byName[name] }

// Lookup returns the operator of an MX host name: the entry with the longest
// matching pattern, or, for a host in no entry, an operator of its own named
// after the host (Own reports true, the limits are zero: the run's per-MX
// defaults).
func (t *Table) Lookup(host string) *Operator {
	host = normName(host)
	if o := t.exact[host]; o != nil {
		return o
	}
	// Longest suffix first: strip one label at a time from the left.
	for rest := host; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		if o := t.suffixes[rest]; o != nil {
			return o
		}
	}
	return &Operator{Name: host, Display: host, MX: []string{host}, own: true}
}

func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}
