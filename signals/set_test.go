package signals

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOfDomainLists(t *testing.T) {
	s := Default()
	for _, tc := range []struct {
		domain           string
		disposable, free bool
	}{
		{"mailinator.com", true, true}, // on both lists: both are reported
		{"x.mailinator.com", true, false},
		{"a.b.mailinator.com", true, false},
		{"MAILINATOR.COM.", true, true},
		{"guerrillamail.com", true, true},
		{"gmail.com", false, true},
		{"yahoo.co.uk", false, true},
		{"mail.gmail.com", false, false}, // free counts only the exact domain
		{"example.com", false, false},
		{"com", false, false},
		{"mailinator.com.evil.test", false, false},
		{"othermailinator.com", false, false},
		{"", false, false},
	} {
		f := s.Of("someone", tc.domain, true)
		if f.Disposable != tc.disposable || f.Free != tc.free {
			t.Errorf("Of(%q): disposable %v free %v, want %v %v", tc.domain, f.Disposable, f.Free, tc.disposable, tc.free)
		}
	}
}

func TestIsRole(t *testing.T) {
	s := Default()
	for local, want := range map[string]bool{
		"info": true, "INFO": true, "Info+newsletter": true, "sales": true, "support": true,
		"admin": true, "postmaster": true, "abuse": true, "webmaster": true, "hostmaster": true,
		"billing": true, "contact": true, "office": true, "hr": true, "jobs": true, "marketing": true,
		"noreply": true, "no-reply": true, "no.reply": true, "no_reply": true, "No-Reply+x": true,
		"do-not-reply": true, "mailer-daemon": true, `"info"`: true, "customer.service": true,
		"ada": false, "ada.lovelace": false, "information": false, "sales2": false, "infos": false,
		"": false, "+info": false, "i+nfo": false, "ínfo": false, "steve.jobs": false,
		strings.Repeat("a", 65): false, strings.Repeat(".", 70) + "info": true,
	} {
		if got := s.IsRole(local); got != want {
			t.Errorf("IsRole(%q) = %v, want %v", local, got, want)
		}
		if got := s.Of(local, "example.com", true).Role; got != want {
			t.Errorf("Of(%q).Role = %v, want %v", local, got, want)
		}
	}
}

// Known typo domains are flagged whatever DNS says; close misses of
// well-known domains get a suggestion only without a mail host; nothing
// well-known, free or disposable is ever taken for a typo.
func TestOfTypos(t *testing.T) {
	s := Default()
	for _, tc := range []struct {
		domain    string
		hasMX     bool
		known     bool
		suggested string
	}{
		// the curated list, with or without MX
		{"gmial.com", true, true, "gmail.com"},
		{"gmial.com", false, true, "gmail.com"},
		{"gmai.com", true, true, "gmail.com"},
		{"gnail.com", true, true, "gmail.com"},
		{"hotmial.com", true, true, "hotmail.com"},
		{"hotnail.com", true, true, "hotmail.com"},
		{"yaho.com", true, true, "yahoo.com"}, // also on the free list: the curated list wins
		{"yahooo.com", true, true, "yahoo.com"},
		{"outlok.com", true, true, "outlook.com"},
		{"GMIAL.COM", true, true, "gmail.com"},

		// slipped top-level domains, without a mail host
		{"gmail.con", false, false, "gmail.com"},
		{"gmail.cmo", false, false, "gmail.com"},
		{"gmail.cm", false, false, "gmail.com"},
		{"gmail.om", false, false, "gmail.com"},
		{"gmail.comm", false, false, "gmail.com"},
		{"gmail.co", false, false, "gmail.com"},
		{"gmail.vom", false, false, "gmail.com"},
		{"gmail.xom", false, false, "gmail.com"},
		{"yahoo.con", false, false, "yahoo.com"},
		{"hotmail.co.uj", false, false, "hotmail.co.uk"},
		{"aol.con", false, false, "aol.com"}, // short names match by their suffix
		{"qq.cmo", false, false, "qq.com"},
		{"comcast.ner", false, false, "comcast.net"},
		// with a mail host: no suggestion (it may be a real domain)
		{"gmail.con", true, false, ""},
		{"gmail.co", true, false, ""},
		// too far, or a real suffix of another kind
		{"gmail.cam", false, false, ""}, // a and o are not neighbours
		{"gmail.de", false, false, ""},
		{"gmail.net", false, false, ""},
		{"gmail.c", false, false, ""},

		// slips in the name, without a mail host
		{"gmaio.com", false, false, "gmail.com"},     // o next to l
		{"gmaiil.com", true, true, "gmail.com"},      // curated
		{"hotmaik.com", false, false, "hotmail.com"}, // k next to l
		{"hptmail.com", false, false, "hotmail.com"},
		{"outlokk.com", false, false, "outlook.com"},
		{"outloook.com", false, false, "outlook.com"},
		{"icluod.com", true, true, "icloud.com"},
		{"iclould.com", false, false, "icloud.com"},
		{"yahoo0.com", false, false, "yahoo.com"},
		{"yshoo.com", false, false, "yahoo.com"}, // s next to a
		{"googlemial.com", true, true, "googlemail.com"},
		{"gooogelmail.com", false, false, "googlemail.com"},  // two slips in a long name
		{"protonmali.com", false, false, "protonmail.com"},   // transposition
		{"sbcgloabl.net", false, false, "sbcglobal.net"},     // transposition in 9 letters
		{"rocketmial.com", false, false, "rocketmail.com"},   // transposition
		{"btinternett.com", false, false, "btinternet.com"},  // doubled letter
		{"virginmedai.com", false, false, "virginmedia.com"}, // transposition
		// with a mail host: no suggestion
		{"gmaio.com", true, false, ""},
		{"hptmail.com", true, false, ""},
		// too far for a short name
		{"gmaxl.com", false, false, ""},     // x is not next to i
		{"gmaiio.com", false, false, ""},    // two slips in five letters
		{"hotmaaill.com", false, false, ""}, // two slips in seven letters
		{"gooooglemaill.com", false, false, ""},
		// never a typo: well-known or free domains close to others
		{"gmx.com", false, false, ""},
		{"mail.com", false, false, ""},
		{"mail.de", false, false, ""},
		{"ymail.com", false, false, ""},
		{"live.com", false, false, ""},
		{"live.co.uk", false, false, ""},
		{"yahoo.co.uk", false, false, ""},
		{"yahoo.fr", false, false, ""},
		{"hotmail.fr", false, false, ""},
		{"googlemail.com", false, false, ""},
		{"gmail.com", false, false, ""},
		{"me.com", false, false, ""},
		{"mac.com", false, false, ""},
		{"web.de", false, false, ""},
		{"email.com", false, false, ""}, // free: a real provider one letter from gmail.com
		{"mailinator.com", false, false, ""},
		// unrelated domains, with or without MX
		{"example.com", false, false, ""},
		{"acme.test", false, false, ""},
		{"gmail.example.com", false, false, ""},
		{"mail.gmial.com", false, false, ""},
		{"hotel.com", false, false, ""},
		{"xmail.com", false, false, ""},
		{"outlook.example", false, false, ""},
		{"ya.ru", false, false, ""},
		{"a.b", false, false, ""},
		{"nodot", false, false, ""},
		{"", false, false, ""},
		{".com", false, false, ""},
		{"gmail.", false, false, ""},
	} {
		f := s.Of("ada", tc.domain, tc.hasMX)
		want := ""
		if tc.suggested != "" {
			want = "ada@" + tc.suggested
		}
		if f.TypoKnown != tc.known || f.SuggestedDomain != tc.suggested || f.Suggestion != want {
			t.Errorf("Of(ada, %q, hasMX=%v): known %v suggestion %q (%q), want %v %q",
				tc.domain, tc.hasMX, f.TypoKnown, f.Suggestion, f.SuggestedDomain, tc.known, want)
		}
	}
}

func TestOfSuggestionKeepsLocalPart(t *testing.T) {
	f := Default().Of("Ada.Lovelace+news", "gmial.com", true)
	if f.Suggestion != "Ada.Lovelace+news@gmail.com" {
		t.Errorf("suggestion %q: the local part must be kept as given", f.Suggestion)
	}
	if f := Default().Of("", "gmial.com", true); f.Suggestion != "" || f.SuggestedDomain != "gmail.com" {
		t.Errorf("no local part: suggestion %q, domain %q", f.Suggestion, f.SuggestedDomain)
	}
}

func TestNoTypos(t *testing.T) {
	s, err := Load(Options{NoTypos: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"gmial.com", "gmail.con"} {
		if f := s.Of("ada", d, false); f.TypoKnown || f.Suggestion != "" || f.SuggestedDomain != "" {
			t.Errorf("NoTypos: Of(%s) = %+v", d, f)
		}
	}
	if f := s.Of("info", "mailinator.com", false); !f.Disposable || !f.Role {
		t.Errorf("NoTypos must keep the other signals: %+v", f)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadUserLists(t *testing.T) {
	disp := writeFile(t, "disposable.txt", "\ufeff# my own list\n# date: 2026-11-01\nThrowAway.Example\n\n  bücher-temp.example.  # trailing comment\nmailinator.com\n")
	free := writeFile(t, "free.txt", "corp-free.example\r\n")
	roles := writeFile(t, "roles.txt", "# roles\nTeam-Lead\nceo\n")

	t.Run("extend", func(t *testing.T) {
		s, err := Load(Options{
			Disposable: ListFile{Path: disp},
			Free:       ListFile{Path: free, Mode: Extend},
			Role:       ListFile{Path: roles},
		})
		if err != nil {
			t.Fatal(err)
		}
		check := func(local, domain string, disposable, isFree, role bool) {
			t.Helper()
			f := s.Of(local, domain, true)
			if f.Disposable != disposable || f.Free != isFree || f.Role != role {
				t.Errorf("Of(%s@%s) = %+v, want disposable %v free %v role %v", local, domain, f, disposable, isFree, role)
			}
		}
		check("x", "throwaway.example", true, false, false)
		check("x", "sub.throwaway.example", true, false, false)
		check("x", "xn--bcher-temp-9db.example", true, false, false) // IDNA
		check("x", "guerrillamail.com", true, true, false)           // built-in kept
		check("x", "corp-free.example", false, true, false)
		check("x", "gmail.com", false, true, false)
		check("team.lead", "example.com", false, false, true)
		check("ceo", "example.com", false, false, true)
		check("info", "example.com", false, false, true)

		lists := s.Lists()
		if len(lists) != 3 || lists[0].Kind != KindDisposable || lists[0].File != disp || lists[0].Mode != Extend ||
			!lists[0].BuiltIn || lists[0].Date.IsZero() {
			t.Fatalf("Lists() = %+v", lists)
		}
		builtin := Default().Lists()
		// mailinator.com is on both: counted once
		if lists[0].Entries != builtin[0].Entries+2 || lists[1].Entries != builtin[1].Entries+1 || lists[2].Entries != builtin[2].Entries+2 {
			t.Errorf("entries %d %d %d, built-in %d %d %d", lists[0].Entries, lists[1].Entries, lists[2].Entries,
				builtin[0].Entries, builtin[1].Entries, builtin[2].Entries)
		}
	})

	t.Run("replace", func(t *testing.T) {
		s, err := Load(Options{
			Disposable: ListFile{Path: disp, Mode: Replace},
			Free:       ListFile{Path: free, Mode: Replace},
			Role:       ListFile{Path: roles, Mode: Replace},
		})
		if err != nil {
			t.Fatal(err)
		}
		if f := s.Of("info", "guerrillamail.com", true); f.Disposable || f.Free || f.Role {
			t.Errorf("replaced lists still hold built-in entries: %+v", f)
		}
		if f := s.Of("ceo", "throwaway.example", true); !f.Disposable || !f.Role {
			t.Errorf("replaced lists miss the file's entries: %+v", f)
		}
		if f := s.Of("x", "corp-free.example", true); !f.Free {
			t.Errorf("free list replaced: %+v", f)
		}
		if l := s.Lists()[0]; l.BuiltIn || !l.Date.IsZero() || l.Entries != 3 {
			t.Errorf("replaced disposable list described as %+v", l)
		}
		if _, stale := s.Stale(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour); stale {
			t.Error("a replaced built-in list cannot be stale")
		}
		// Typo knowledge is not a user list: gmial.com stays a typo even
		// though the replaced lists no longer know it.
		if f := s.Of("ada", "gmial.com", true); !f.TypoKnown {
			t.Errorf("typo lost with replaced lists: %+v", f)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    func(path string) Options
		content string
		line    int
		detail  string
	}{
		{"address", func(p string) Options { return Options{Disposable: ListFile{Path: p}} }, "ok.example\nuser@bad.example\n", 2, "not an address"},
		{"wildcard", func(p string) Options { return Options{Disposable: ListFile{Path: p}} }, "*.bad.example\n", 1, "no wildcards"},
		{"single label", func(p string) Options { return Options{Free: ListFile{Path: p}} }, "# c\n\nlocalhost\n", 3, "two labels"},
		{"two per line", func(p string) Options { return Options{Free: ListFile{Path: p}} }, "a.example b.example\n", 1, "one domain per line"},
		{"bad character", func(p string) Options { return Options{Free: ListFile{Path: p}} }, "a_b.example\n", 1, "not a domain"},
		{"role with domain", func(p string) Options { return Options{Role: ListFile{Path: p}} }, "info@example.com\n", 1, "without @"},
		{"role symbol", func(p string) Options { return Options{Role: ListFile{Path: p}} }, "sales\nx!y\n", 2, "letters and digits"},
		{"role only separators", func(p string) Options { return Options{Role: ListFile{Path: p}} }, "...\n", 1, "letters and digits"},
		{"long line", func(p string) Options { return Options{Disposable: ListFile{Path: p}} }, "a.example\n" + strings.Repeat("x", 5000) + "\n", 2, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "list.txt", tc.content)
			_, err := Load(tc.opts(p))
			var le *ListError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *ListError", err)
			}
			if le.File != p || le.Line != tc.line || !strings.Contains(err.Error(), tc.detail) ||
				!strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line") {
				t.Errorf("error %q (line %d), want file %s line %d and %q", err, le.Line, p, tc.line, tc.detail)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.txt")
		_, err := Load(Options{Free: ListFile{Path: missing}})
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "free") {
			t.Errorf("error %v: want not-exist naming the list and file", err)
		}
	})
	t.Run("mode", func(t *testing.T) {
		_, err := Load(Options{Role: ListFile{Path: writeFile(t, "r.txt", "ceo\n"), Mode: "merge"}})
		if err == nil || !strings.Contains(err.Error(), `"merge"`) {
			t.Errorf("bad mode: %v", err)
		}
		for _, m := range []string{"", "extend", "replace"} {
			if _, err := ParseMode(m); err != nil {
				t.Errorf("ParseMode(%q): %v", m, err)
			}
		}
		if _, err := ParseMode("Replace"); err == nil {
			t.Error("ParseMode is exact")
		}
	})
}

func TestStale(t *testing.T) {
	s := Default()
	date := s.Lists()[0].Date
	if date.IsZero() {
		t.Fatal("the built-in disposable list has no date")
	}
	const maxAge = 60 * 24 * time.Hour
	for _, tc := range []struct {
		now    time.Time
		maxAge time.Duration
		stale  bool
	}{
		{date.Add(maxAge), maxAge, false},
		{date.Add(maxAge + time.Second), maxAge, true},
		{date.Add(-time.Hour), maxAge, false},
		{date.Add(10 * maxAge), 0, false}, // 0 turns the warning off
	} {
		info, stale := s.Stale(tc.now, tc.maxAge)
		if stale != tc.stale || info.Kind != KindDisposable || !info.Date.Equal(date) {
			t.Errorf("Stale(%v, %v) = %+v, %v; want %v", tc.now, tc.maxAge, info, stale, tc.stale)
		}
	}
}
