package signals

import (
	"errors"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/input"
)

// A user's list file may hold anything: parsing it must not panic, an error
// must be a *ListError with a line inside the file (or a read error), and
// every accepted entry must be in the form Of looks up.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"a.example\nb.example\n", "# date: 2026-01-01\n\nMailinator.COM.\n", "\ufeffbücher.example # x\n",
		"*.x.example\n", "a@b.example\n", "x\x00y.example\n", "no-reply\nNo.Reply+tag\n", "\"info\"\n",
		strings.Repeat("a", 300) + ".example\n", "a.example\r\nb.example", "#\n#\n", "\xff\xfe\n", "a..b\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		lines := strings.Count(data, "\n") + 1
		checkErr := func(err error) {
			if err == nil {
				return
			}
			var le *ListError
			if !errors.As(err, &le) || le.File != "f" || le.Line < 1 || le.Line > lines || le.Detail == "" {
				t.Fatalf("error %v (%#v) does not name the file and a line of %d", err, le, lines)
			}
		}
		domains, _, err := parseDomains(KindDisposable, "f", strings.NewReader(data))
		checkErr(err)
		for _, d := range domains {
			a, perr := input.ParseAddress("x@" + d)
			if perr != nil || a.Domain != d || canonical(d) != d {
				t.Fatalf("accepted domain %q is not normalised: %v", d, perr)
			}
		}
		roles, _, err := parseRoles("f", strings.NewReader(data))
		checkErr(err)
		for _, r := range roles {
			var buf [maxLocalLen]byte
			key, ok := roleKey(r, &buf)
			if !ok || string(key) != r || r == "" {
				t.Fatalf("accepted role %q is not normalised", r)
			}
		}
	})
}

// Of gets whatever the caller has, including the parts of invalid rows: it
// must not panic, and its facts must be consistent.
func FuzzOf(f *testing.F) {
	for _, s := range [][2]string{
		{"info", "gmial.com"}, {"ada", "gmail.con"}, {"no-reply+x", "x.mailinator.com"}, {"", ""},
		{"\xff", "\xff.com"}, {"a", "..."}, {"a", "gmail."}, {strings.Repeat("x", 100), strings.Repeat("y.", 200) + "com"},
		{"a", "GMAIL.CON."}, {"\"q\"", "hotmaik.com"},
	} {
		f.Add(s[0], s[1], false)
	}
	s := Default()
	f.Fuzz(func(t *testing.T, local, domain string, hasMX bool) {
		facts := s.Of(local, domain, hasMX)
		if facts.TypoKnown && facts.SuggestedDomain == "" {
			t.Fatalf("known typo without a suggestion: %+v", facts)
		}
		if facts.SuggestedDomain != "" {
			if facts.SuggestedDomain == canonical(domain) {
				t.Fatalf("%q suggested as a typo of itself", domain)
			}
			if s.domains[facts.SuggestedDomain]&flagWellKnown == 0 {
				t.Fatalf("suggested %q is not a well-known domain", facts.SuggestedDomain)
			}
			if !facts.TypoKnown && (hasMX || facts.Free || facts.Disposable) {
				t.Fatalf("close-miss suggestion for a domain with MX or on a list: %+v", facts)
			}
		}
		if (facts.Suggestion != "") != (facts.SuggestedDomain != "" && local != "") {
			t.Fatalf("suggestion %q for domain %q and local %q", facts.Suggestion, facts.SuggestedDomain, local)
		}
	})
}
