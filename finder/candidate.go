package finder

import (
	"slices"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/signals"
)

// Candidate is one address to probe for a person.
type Candidate struct {
	Address string        // normalised, valid RFC 5321 address, e.g. "ada.lovelace@acme.test"
	Addr    input.Address // the same, parsed, ready to probe
	Pattern string        // name of the pattern that made it
	Rank    int           // index of that pattern in the list: lower is more common
}

// Candidates expands the first topK patterns (all of them when topK <= 0)
// for p at domain, in pattern order. domain is expected in the form DomainFrom
// returns.
//
//   - Each name part is folded (see Fold). A pattern that needs a part the
//     person does not have, or whose part has no words, gives no candidate.
//     If any part cannot be folded (a non-Latin script), there are no
//     candidates at all: a guess from the other parts alone would be wrong.
//   - When a part has ä, ö or ü, each pattern is followed by its German
//     spelling (ae, oe, ue) with the same Pattern and Rank.
//   - Addresses are deduplicated: when two patterns give the same address,
//     the first is kept.
//   - Every address is checked with input.ParseAddress; one that is not
//     valid (a local part over 64 octets, a bad domain) is dropped.
//   - A role account on the built-in role list (signals) is dropped: Harry
//     Ross's "fl" is hr@, Steve Jobs's "last" is jobs@, and such an inbox
//     accepts mail for a function, not for the person, so it must never be
//     the answer — nor cost a probe. CandidatesExcept takes the caller's list.
//
// The result is nil when nothing is left.
func Candidates(p Person, domain string, patterns []Pattern, topK int) []Candidate {
	return CandidatesExcept(p, domain, patterns, topK, signals.Default().IsRole)
}

// CandidatesExcept is Candidates with the caller's test of a role account,
// such as (*signals.Set).IsRole of the run's lists; nil drops none.
func CandidatesExcept(p Person, domain string, patterns []Pattern, topK int, isRole func(local string) bool) []Candidate {
	plain, ok := foldPerson(p, false)
	if !ok {
		return nil
	}
	spellings := []foldedPerson{plain}
	if german, _ := foldPerson(p, true); !german.equal(plain) {
		spellings = append(spellings, german)
	}

	if topK > 0 && topK < len(patterns) {
		patterns = patterns[:topK]
	}
	var out []Candidate
	seen := make(map[string]bool)
	for rank, pat := range patterns {
		segs, ok := pat.segments()
		if !ok {
			continue
		}
		for _, f := range spellings {
			local, ok := expand(segs, pat.Join, f.first, f.middle, f.last)
			if !ok || isRole != nil && isRole(local) {
				continue
			}
			a, err := input.ParseAddress(local + "@" + domain)
			if err != nil {
				continue
			}
			addr := a.String()
			if seen[addr] {
				continue
			}
			seen[addr] = true
			out = append(out, Candidate{Address: addr, Addr: a, Pattern: pat.Name, Rank: rank})
		}
	}
	return out
}

// foldedPerson is a Person folded to ASCII words.
type foldedPerson struct{ first, middle, last []string }

func foldPerson(p Person, umlauts bool) (foldedPerson, bool) {
	var f foldedPerson
	var ok1, ok2, ok3 bool
	f.first, ok1 = fold(p.First, umlauts)
	f.middle, ok2 = fold(p.Middle, umlauts)
	f.last, ok3 = fold(p.Last, umlauts)
	return f, ok1 && ok2 && ok3
}

func (f foldedPerson) equal(g foldedPerson) bool {
	return slices.Equal(f.first, g.first) && slices.Equal(f.middle, g.middle) && slices.Equal(f.last, g.last)
}
