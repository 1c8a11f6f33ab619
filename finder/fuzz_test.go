package finder

import (
	"errors"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/signals"
)

// Name and domain cells come from the user's file: whatever they hold, the
// finder must not panic, and every candidate must be a valid, ASCII address
// at the domain DomainFrom gave.
func FuzzNameToCandidates(f *testing.F) {
	for _, s := range [][2]string{
		{"Ada Lovelace", "acme.test"}, {"Lovelace, Ada", "https://www.acme.test/about"},
		{"Dr. Jane Smith-Jones PhD", "someone@acme.test"}, {"José María García López", "ACME.TEST."},
		{"Иван Петров", "acme.test"}, {"O'Brien", "www.acme.test"}, {", , ,", "acme"},
		{"\xff\xfe", "\x00"}, {"Mu\u0308ller", "bücher.example"}, {"\"\" () ..", "mailto:@"},
	} {
		f.Add(s[0], s[1])
	}
	patterns := DefaultPatterns()
	roles := signals.Default()
	f.Fuzz(func(t *testing.T, name, domainCell string) {
		domain, err := DomainFrom(domainCell)
		if err != nil {
			var se *input.SyntaxError
			if !errors.As(err, &se) || se.Value != domainCell || se.Reason == "" {
				t.Fatalf("DomainFrom(%q) error %v is not a *input.SyntaxError with the input and a reason", domainCell, err)
			}
			domain = "acme.test"
		}
		for _, p := range []Person{SplitName(name), PersonFromParts(name, name)} {
			seen := map[string]bool{}
			for _, c := range Candidates(p, domain, patterns, 0) {
				a, err := input.ParseAddress(c.Address)
				if err != nil || a.NeedsSMTPUTF8 || a.Domain != domain || a.String() != c.Address {
					t.Fatalf("candidate %+v of %+v: %v", c, p, err)
				}
				if strings.Trim(a.Local, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" || seen[c.Address] {
					t.Fatalf("candidate %+v of %+v: bad character or duplicate", c, p)
				}
				if roles.IsRole(a.Local) {
					t.Fatalf("candidate %+v of %+v is a role account", c, p)
				}
				seen[c.Address] = true
			}
		}
	})
}
