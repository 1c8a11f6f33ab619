package finder

import (
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
)

// c is a Candidate at acme.test.
func c(local, pattern string, rank int) Candidate {
	return Candidate{Address: local + "@acme.test", Pattern: pattern, Rank: rank}
}

func TestCandidates(t *testing.T) {
	defaults := DefaultPatterns()
	adaAll := []Candidate{
		c("ada.lovelace", "first.last", 0),
		c("alovelace", "flast", 1),
		c("ada", "first", 2),
		c("adalovelace", "firstlast", 3),
		c("a.lovelace", "f.last", 4),
		c("ada_lovelace", "first_last", 5),
		c("adal", "firstl", 6),
		c("lovelace.ada", "last.first", 7),
		c("lovelace", "last", 8),
		c("lovelacea", "lastf", 9),
		c("ada-lovelace", "first-last", 10),
		c("al", "fl", 11),
		c("ada.l", "first.l", 12),
		c("lovelaceada", "lastfirst", 13),
		c("lovelace_ada", "last_first", 14),
		// fmlast and first.m.last need a middle name; first.last/hyphen
		// gives ada.lovelace again and is dropped.
	}
	tests := []struct {
		name     string
		person   Person
		domain   string
		patterns []Pattern
		topK     int
		want     []Candidate
	}{
		{name: "default order", person: SplitName("Ada Lovelace"), domain: "acme.test", patterns: defaults, want: adaAll},
		{name: "negative topK is all", person: SplitName("Ada Lovelace"), domain: "acme.test", patterns: defaults, topK: -1, want: adaAll},
		{name: "topK larger than the list", person: SplitName("Ada Lovelace"), domain: "acme.test", patterns: defaults, topK: 1000, want: adaAll},
		{name: "topK", person: SplitName("Ada Lovelace"), domain: "acme.test", patterns: defaults, topK: 3, want: adaAll[:3]},
		{
			name: "accents and case folded", person: SplitName("ADA Lövëlaçe"), domain: "ACME.TEST", patterns: defaults, topK: 2,
			// ö gives a German spelling too, right after the plain one.
			want: []Candidate{c("ada.lovelace", "first.last", 0), c("ada.loevelace", "first.last", 0), c("alovelace", "flast", 1), c("aloevelace", "flast", 1)},
		},
		{
			name: "dedupe keeps the first pattern", person: SplitName("J Smith"), domain: "acme.test", patterns: defaults, topK: 5,
			// firstlast (rank 3) is jsmith like flast, f.last (rank 4) is
			// j.smith like first.last.
			want: []Candidate{c("j.smith", "first.last", 0), c("jsmith", "flast", 1), c("j", "first", 2)},
		},
		{
			name: "middle name patterns", person: SplitName("John Quincy Adams"), domain: "acme.test",
			patterns: mustPatterns(t, "fmlast", "{f}{m}{last}", "first.m.last", "{first}.{m}.{last}", "first.middle.last", "{first}.{middle}.{last}"),
			want:     []Candidate{c("jqadams", "fmlast", 0), c("john.q.adams", "first.m.last", 1), c("john.quincy.adams", "first.middle.last", 2)},
		},
		{
			name: "several words per part and join", person: SplitName("Anne-Marie van der Berg"), domain: "acme.test",
			patterns: append(mustPatterns(t, "first.last", "{first}.{last}", "flast", "{f}{last}", "fl", "{f}{l}"), mustPattern(t, "first.last/hyphen", "{first}.{last}", "-"), mustPattern(t, "first_last/dot", "{first}_{last}", ".")),
			want: []Candidate{
				c("annemarie.vanderberg", "first.last", 0), c("avanderberg", "flast", 1), c("av", "fl", 2),
				c("anne-marie.van-der-berg", "first.last/hyphen", 3), c("anne.marie_van.der.berg", "first_last/dot", 4),
			},
		},
		{
			name: "apostrophe removed", person: SplitName("Conan O’Brien"), domain: "acme.test", patterns: defaults, topK: 2,
			want: []Candidate{c("conan.obrien", "first.last", 0), c("cobrien", "flast", 1)},
		},
		{
			name: "single name: only patterns without a surname", person: SplitName("Cher"), domain: "acme.test", patterns: defaults,
			want: []Candidate{c("cher", "first", 2)},
		},
		{
			name: "surname only", person: PersonFromParts("", "Lovelace"), domain: "acme.test", patterns: defaults, topK: 10,
			want: []Candidate{c("lovelace", "last", 8)},
		},
		{
			name: "too long local part dropped", person: Person{First: "Ada", Last: strings.Repeat("x", 65)}, domain: "acme.test", patterns: defaults,
			want: []Candidate{c("ada", "first", 2), c("adax", "firstl", 6), c("ax", "fl", 11), c("ada.x", "first.l", 12)},
		},
		{name: "non-Latin name", person: SplitName("Иван Петров"), domain: "acme.test", patterns: defaults, want: nil},
		{name: "one non-Latin part spoils all", person: Person{First: "Ada", Last: "Лавлейс"}, domain: "acme.test", patterns: defaults, want: nil},
		{name: "no name", person: Person{}, domain: "acme.test", patterns: defaults, want: nil},
		{name: "punctuation only", person: Person{First: "-", Last: "'"}, domain: "acme.test", patterns: defaults, want: nil},
		{name: "invalid domain", person: SplitName("Ada Lovelace"), domain: "not a domain", patterns: defaults, want: nil},
		{name: "no patterns", person: SplitName("Ada Lovelace"), domain: "acme.test", patterns: nil, want: nil},
		{
			name: "pattern literals not made by NewPattern", person: SplitName("Ada Lovelace"), domain: "acme.test",
			patterns: []Pattern{{Name: "bad", Template: "{nope}"}, {Name: "flast", Template: "{f}{last}"}},
			want:     []Candidate{c("alovelace", "flast", 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Candidates(tt.person, tt.domain, tt.patterns, tt.topK)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d candidates %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if got[i].Addr.String() != got[i].Address {
					t.Errorf("candidate %d: parsed address %q differs from %q", i, got[i].Addr, got[i].Address)
				}
				got[i].Addr = input.Address{} // compared through Address above
				if got[i] != tt.want[i] {
					t.Errorf("candidate %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// A role account reaches a function, not the person: Harry Ross's "fl" is
// hr@, Steve Jobs's "last" is jobs@. They are never candidates, so they are
// neither probed nor ever the answer; the caller's role list replaces the
// built-in one.
func TestCandidatesSkipRoles(t *testing.T) {
	defaults := DefaultPatterns()
	has := func(cands []Candidate, local string) bool {
		for _, c := range cands {
			if c.Address == local+"@acme.test" {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		person Person
		role   string
	}{
		{SplitName("Harry Ross"), "hr"},
		{SplitName("Steve Jobs"), "jobs"},
		{SplitName("Ivan Tanaka"), "it"},
		{SplitName("Paul Rand"), "pr"},
		{PersonFromParts("Info", "Desk"), "info"},
		{SplitName("Mark Sales"), "sales"},
	} {
		all := CandidatesExcept(tc.person, "acme.test", defaults, 0, nil)
		if !has(all, tc.role) {
			t.Fatalf("%+v: without a role list %s@ should be a candidate: %v", tc.person, tc.role, all)
		}
		got := Candidates(tc.person, "acme.test", defaults, 0)
		if has(got, tc.role) || len(got) != len(all)-1 {
			t.Errorf("%+v: %d candidates %v, want the %d without %s@", tc.person, len(got), got, len(all)-1, tc.role)
		}
		// Every candidate accepted: the answer is a person's address.
		outcomes := make([]Outcome, len(got))
		for i, c := range got {
			outcomes[i] = Outcome{Candidate: c, Status: output.StatusDeliverable, Reason: "accepted"}
		}
		d := Decide(outcomes, nil, "")
		for _, a := range append([]string{d.Email}, d.Alternatives...) {
			if a == tc.role+"@acme.test" {
				t.Errorf("%+v: %s is in the decision %+v", tc.person, a, d)
			}
		}
	}

	ceo := func(local string) bool { return local == "ceo" }
	got := CandidatesExcept(PersonFromParts("Ceo", "Hr"), "acme.test", mustPatterns(t, "first", "{first}", "last", "{last}"), 0, ceo)
	if len(got) != 1 || got[0].Address != "hr@acme.test" {
		t.Errorf("the caller's role list replaces the built-in one: %v", got)
	}
}

func mustPattern(t *testing.T, name, template, join string) Pattern {
	t.Helper()
	p, err := NewPattern(name, template, join)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustPatterns takes name, template pairs.
func mustPatterns(t *testing.T, nameTemplate ...string) []Pattern {
	t.Helper()
	var ps []Pattern
	for i := 0; i+1 < len(nameTemplate); i += 2 {
		ps = append(ps, mustPattern(t, nameTemplate[i], nameTemplate[i+1], ""))
	}
	return ps
}
