package signals

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The built-in lists are only split at run time (splitLines), so these tests
// are what keeps them valid: sorted, unique, normalised domains, and a
// header that names the source, date and licence.
func TestBuiltinDomainLists(t *testing.T) {
	for _, tc := range []struct {
		file, data, licence string
		date                string
		min                 int
	}{
		{"disposable.txt", builtinDisposable, "disposable.LICENSE", "2026-08-21", 8000},
		{"free.txt", builtinFree, "free.LICENSE", "2026-08-22", 13000},
	} {
		t.Run(tc.file, func(t *testing.T) {
			h := headerOf(tc.data)
			if got := h.date.Format(time.DateOnly); got != tc.date {
				t.Errorf("header date %s, want %s", got, tc.date)
			}
			if !strings.HasPrefix(h.source, "github.com/") {
				t.Errorf("header source %q does not name the repository", h.source)
			}
			if !strings.Contains(tc.data, "# licence:") || !strings.Contains(tc.data, tc.licence) {
				t.Errorf("header does not name the licence file %s", tc.licence)
			}
			if _, err := os.Stat(filepath.Join("data", tc.licence)); err != nil {
				t.Errorf("licence file: %v", err)
			}
			var entries []string
			splitLines(tc.data, func(s string) { entries = append(entries, s) })
			if len(entries) < tc.min {
				t.Fatalf("%d entries, want at least %d", len(entries), tc.min)
			}
			checkSortedDomains(t, entries)
		})
	}
}

func checkSortedDomains(t *testing.T, entries []string) {
	t.Helper()
	for i, e := range entries {
		norm, detail := normaliseDomain(e)
		if detail != "" || norm != e {
			t.Errorf("entry %q: normalised %q, %s", e, norm, detail)
		}
		for j := 0; j < len(e); j++ {
			if c := e[j]; c >= 0x80 || 'A' <= c && c <= 'Z' {
				t.Errorf("entry %q is not lower-case ASCII", e)
				break
			}
		}
		if i > 0 && entries[i-1] >= e {
			t.Errorf("entries %q, %q: not sorted or not unique", entries[i-1], e)
		}
	}
}

func TestBuiltinProviders(t *testing.T) {
	var entries []string
	splitLines(builtinProviders, func(s string) { entries = append(entries, s) })
	seen := map[string]bool{}
	for _, e := range entries {
		if norm, detail := normaliseDomain(e); detail != "" || norm != e || seen[e] {
			t.Errorf("provider %q: normalised %q, %s, duplicate %v", e, norm, detail, seen[e])
		}
		seen[e] = true
	}
	// The order is by use, not alphabetical; the most used come first
	// because ties go to the earlier one.
	if entries[0] != "gmail.com" || len(entries) < 50 {
		t.Errorf("providers start with %q and have %d entries", entries[0], len(entries))
	}
}

func TestBuiltinTypos(t *testing.T) {
	b := loadBuiltin()
	if len(b.typos) < 30 {
		t.Fatalf("%d typo entries", len(b.typos))
	}
	var lines []string
	splitLines(builtinTypos, func(s string) { lines = append(lines, s) })
	if !slices.IsSorted(lines) || len(lines) != len(b.typos) {
		t.Errorf("typos.txt is not sorted, or has duplicates (%d lines, %d typos)", len(lines), len(b.typos))
	}
	wellKnown := map[string]bool{}
	for _, p := range b.providers {
		wellKnown[p] = true
	}
	free := map[string]bool{}
	for _, d := range b.free {
		free[d] = true
	}
	disposable := map[string]bool{}
	for _, d := range b.disposable {
		disposable[d] = true
	}
	// The free list merges disposable domains and a few typo domains
	// (gmial.com, yaho.com): the curated list wins over it. These are the
	// ones known; a change in either list shows up here.
	wantAlsoFree := []string{"gmial.com", "hotmai.com", "hotmial.com", "yaho.com"}
	var alsoFree []string
	for typo, meant := range b.typos {
		if wellKnown[typo] {
			t.Errorf("typo %s is a well-known domain", typo)
		}
		if !wellKnown[meant] {
			t.Errorf("typo %s means %s, which is not in providers.txt", typo, meant)
		}
		if free[typo] {
			alsoFree = append(alsoFree, typo)
		}
	}
	slices.Sort(alsoFree)
	if !slices.Equal(alsoFree, wantAlsoFree) {
		t.Errorf("typo domains also on the free list: %v, want %v", alsoFree, wantAlsoFree)
	}
	for _, d := range alsoFree {
		if d != "yaho.com" && !disposable[d] {
			t.Errorf("%s is free but not disposable", d)
		}
	}
}

func TestBuiltinRoles(t *testing.T) {
	b := loadBuiltin()
	seen := map[string]bool{}
	for _, r := range b.roles {
		if seen[r] {
			t.Errorf("role %q listed twice (after normalisation)", r)
		}
		seen[r] = true
	}
	for _, want := range []string{"info", "sales", "support", "admin", "postmaster", "abuse", "noreply",
		"webmaster", "hostmaster", "billing", "contact", "office", "hr", "jobs", "marketing"} {
		if !seen[want] {
			t.Errorf("role %q missing", want)
		}
	}
}
