package signals

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

var (
	//go:embed data/disposable.txt
	builtinDisposable string
	//go:embed data/free.txt
	builtinFree string
	//go:embed data/roles.txt
	builtinRoles string
	//go:embed data/typos.txt
	builtinTypos string
	//go:embed data/providers.txt
	builtinProviders string
)

// Mode says what a user's list file does to the built-in list.
type Mode string

// Modes of a ListFile.
const (
	Extend  Mode = "extend"  // the file's entries are added to the built-in list (the default)
	Replace Mode = "replace" // the file's entries are the whole list
)

// ListFile is a user's file for one list. The zero value uses the built-in
// list alone.
type ListFile struct {
	Path string // one entry per line, "#" starts a comment; "" = none
	Mode Mode   // Extend or Replace; "" means Extend
}

// Options chooses the lists of a Set. The zero value is the built-in lists
// with typo suggestions on.
type Options struct {
	Disposable ListFile
	Free       ListFile
	Role       ListFile
	NoTypos    bool // no typo facts at all: TypoKnown and Suggestion stay empty
}

// ListInfo describes one list a Set uses, for the run's settings and the
// report.
type ListInfo struct {
	Kind    Kind      `json:"kind"`
	Entries int       `json:"entries"`        // distinct entries in use
	BuiltIn bool      `json:"built_in"`       // the built-in list is part of it
	Date    time.Time `json:"date,omitzero"`  // the built-in list's date; zero when replaced
	File    string    `json:"file,omitempty"` // the user's file, if any
	Mode    Mode      `json:"mode,omitempty"` // what the user's file does
}

// Domain flags, in Set.domains.
const (
	flagDisposable uint8 = 1 << iota
	flagFree
	flagWellKnown
	flagTypo
)

// Set is a loaded collection of lists. It is read-only after Load and safe
// for concurrent use.
type Set struct {
	domains map[string]uint8  // every listed domain -> flag*
	typos   map[string]string // known typo domain -> domain meant
	roles   map[string]struct{}
	targets []target // well-known domains, most used first
	noTypos bool
	lists   []ListInfo
}

// Facts are the signals of one address.
type Facts struct {
	Disposable bool // the domain, or a domain it is under, is a disposable mail service
	Free       bool // the domain is a free webmail provider
	Role       bool // the local part is a role account (info@, sales@, no-reply@)
	// TypoKnown: the domain is a known typo domain of a big provider. Flag it
	// whatever DNS says: such domains often accept every recipient.
	TypoKnown bool
	// SuggestedDomain is the domain probably meant: for a known typo domain,
	// or for a close miss of a well-known domain that has no mail host. ""
	// when there is no suggestion.
	SuggestedDomain string
	// Suggestion is the address probably meant: the same local part at
	// SuggestedDomain. "" when there is no suggestion.
	Suggestion string
}

// builtin is parsed once, on first use, and shared read-only: every Set
// refers to its strings and copies its maps only when it changes them.
type builtin struct {
	disposable, free, providers []string
	roles                       []string
	typos                       map[string]string
	disposableDate, freeDate    time.Time
}

var loadBuiltin = sync.OnceValue(func() *builtin {
	b := &builtin{
		disposableDate: headerOf(builtinDisposable).date,
		freeDate:       headerOf(builtinFree).date,
	}
	splitLines(builtinDisposable, func(s string) { b.disposable = append(b.disposable, s) })
	splitLines(builtinFree, func(s string) { b.free = append(b.free, s) })
	splitLines(builtinProviders, func(s string) { b.providers = append(b.providers, s) })
	roles, _, err := parseRoles("(built-in)", strings.NewReader(builtinRoles))
	if err != nil {
		panic("signals: embedded roles.txt is invalid: " + err.Error()) // covered by tests
	}
	b.roles = roles
	if b.typos, err = parseTypos("(built-in)", strings.NewReader(builtinTypos)); err != nil {
		panic("signals: embedded typos.txt is invalid: " + err.Error()) // covered by tests
	}
	return b
})

var defaultSet = sync.OnceValue(func() *Set {
	s, err := Load(Options{})
	if err != nil {
		panic("signals: built-in lists: " + err.Error()) // no files are read
	}
	return s
})

// Default returns the Set of the built-in lists, built once.
func Default() *Set { return defaultSet() }

// Load builds a Set from the built-in lists and the user's files in opts.
// A bad entry is a *ListError naming the file and line; a file that cannot
// be read is an error wrapping the *os.PathError.
func Load(opts Options) (*Set, error) {
	b := loadBuiltin()
	s := &Set{
		domains: make(map[string]uint8, len(b.free)+len(b.providers)+len(b.typos)),
		typos:   b.typos,
		roles:   make(map[string]struct{}, len(b.roles)),
		noTypos: opts.NoTypos,
	}

	disposable, info, err := domainList(KindDisposable, opts.Disposable, b.disposable, b.disposableDate)
	if err != nil {
		return nil, err
	}
	s.lists = append(s.lists, info(s.mark(disposable, flagDisposable)))

	free, info, err := domainList(KindFree, opts.Free, b.free, b.freeDate)
	if err != nil {
		return nil, err
	}
	s.lists = append(s.lists, info(s.mark(free, flagFree)))

	roles, rinfo, err := roleList(opts.Role, b.roles)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		s.roles[r] = struct{}{}
	}
	rinfo.Entries = len(s.roles)
	s.lists = append(s.lists, rinfo)

	for _, d := range b.providers {
		s.domains[d] |= flagWellKnown
		s.targets = append(s.targets, newTarget(d))
	}
	for d := range b.typos {
		s.domains[d] |= flagTypo
	}
	return s, nil
}

// domainList returns the entries of one domain list per its ListFile, and
// a func that describes it given its count of distinct entries.
func domainList(kind Kind, lf ListFile, builtin []string, date time.Time) ([]string, func(int) ListInfo, error) {
	mode, err := lf.mode(kind)
	if err != nil {
		return nil, nil, err
	}
	info := ListInfo{Kind: kind, BuiltIn: true, Date: date, File: lf.Path}
	if lf.Path == "" {
		return builtin, func(n int) ListInfo { info.Entries = n; return info }, nil
	}
	info.Mode = mode
	f, err := os.Open(lf.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("signals: %s list: %w", kind, err)
	}
	defer f.Close()
	entries, _, err := parseDomains(kind, lf.Path, f)
	if err != nil {
		return nil, nil, err
	}
	if mode == Extend {
		entries = append(entries, builtin...)
	} else {
		info.BuiltIn, info.Date = false, time.Time{}
	}
	return entries, func(n int) ListInfo { info.Entries = n; return info }, nil
}

// mark sets flag on every domain and returns how many distinct domains
// that is (a user's entries may repeat built-in ones).
func (s *Set) mark(domains []string, flag uint8) int {
	n := 0
	for _, d := range domains {
		if s.domains[d]&flag == 0 {
			n++
			s.domains[d] |= flag
		}
	}
	return n
}

// roleList returns the role entries per lf, and their description.
func roleList(lf ListFile, builtin []string) ([]string, ListInfo, error) {
	mode, err := lf.mode(KindRole)
	if err != nil {
		return nil, ListInfo{}, err
	}
	info := ListInfo{Kind: KindRole, BuiltIn: true, File: lf.Path}
	if lf.Path == "" {
		return builtin, info, nil
	}
	info.Mode = mode
	f, err := os.Open(lf.Path)
	if err != nil {
		return nil, info, fmt.Errorf("signals: %s list: %w", KindRole, err)
	}
	defer f.Close()
	entries, _, err := parseRoles(lf.Path, f)
	if err != nil {
		return nil, info, err
	}
	if mode == Extend {
		entries = append(entries, builtin...)
	} else {
		info.BuiltIn = false
	}
	return entries, info, nil
}

func (lf ListFile) mode(kind Kind) (Mode, error) {
	switch lf.Mode {
	case "", Extend:
		return Extend, nil
	case Replace:
		return Replace, nil
	}
	return "", fmt.Errorf("signals: %s list mode %q: want %s or %s", kind, lf.Mode, Extend, Replace)
}

// ParseMode checks a mode named in a config file: "" (meaning extend),
// "extend" or "replace".
func ParseMode(s string) (Mode, error) {
	return ListFile{Mode: Mode(s)}.mode("")
}

// Lists describes the disposable, free and role lists in use, in that
// order.
func (s *Set) Lists() []ListInfo { return append([]ListInfo(nil), s.lists...) }

// Stale reports whether the built-in disposable list is in use and older
// than maxAge at now (its date is in its header), and its description.
// maxAge <= 0 never reports. Disposable services come and go within weeks,
// so an old binary misses the new ones; the caller says so.
func (s *Set) Stale(now time.Time, maxAge time.Duration) (ListInfo, bool) {
	info := s.lists[0]
	if maxAge <= 0 || !info.BuiltIn || info.Date.IsZero() {
		return info, false
	}
	return info, now.Sub(info.Date) > maxAge
}

// IsRole reports whether local, an address's local part, is a role
// account: after lower-casing, dropping a "+tag" and the separators . - _,
// it is on the role list.
func (s *Set) IsRole(local string) bool {
	var buf [maxLocalLen]byte
	key, ok := roleKey(local, &buf)
	if !ok {
		return false
	}
	_, role := s.roles[string(key)]
	return role
}

// Of returns the signals of the address local@domain. domain is expected
// as input.ParseAddress gives it (lower-case ASCII, IDNA A-labels, no
// trailing dot); upper case and a trailing dot are tolerated, anything else
// simply matches nothing.
//
// hasMX says whether DNS found a mail host for the domain (MX records, or
// an address record used as implicit MX). Pass false only when DNS said
// there is none: NXDOMAIN, null MX, no MX and no address, MX hosts that do
// not exist. Pass true when DNS failed or was not asked: a suggestion for a
// real domain that only had a bad moment would be wrong.
//
// Typo facts: a known typo domain gets TypoKnown and a suggestion whatever
// hasMX says. Any other domain that is on no list gets a suggestion only
// when hasMX is false and it is a close miss of a well-known domain (see
// providers.txt). A well-known, free or disposable domain is never a typo
// of another.
//
// Of does not allocate unless it makes a suggestion; its cost is a few map
// lookups, plus the bounded close-miss search for domains without a mail
// host.
func (s *Set) Of(local, domain string, hasMX bool) Facts {
	domain = canonical(domain)
	flags := s.domains[domain]
	f := Facts{
		Disposable: flags&flagDisposable != 0,
		Free:       flags&flagFree != 0,
		Role:       s.IsRole(local),
	}
	if !f.Disposable {
		// A subdomain of a disposable domain is disposable: such services
		// hand out subdomains. Stop before the last label, which is a TLD.
		for rest := domain; ; {
			i := strings.IndexByte(rest, '.')
			if i < 0 || strings.IndexByte(rest[i+1:], '.') < 0 {
				break
			}
			rest = rest[i+1:]
			if s.domains[rest]&flagDisposable != 0 {
				f.Disposable = true
				break
			}
		}
	}
	if s.noTypos {
		return f
	}
	switch {
	case flags&flagTypo != 0:
		f.TypoKnown = true
		f.SuggestedDomain = s.typos[domain]
	case flags != 0 || f.Disposable || hasMX:
		// listed, or a real mail domain: never a typo of another
	default:
		f.SuggestedDomain = closeMiss(domain, s.targets)
	}
	if f.SuggestedDomain != "" && local != "" {
		f.Suggestion = local + "@" + f.SuggestedDomain
	}
	return f
}

// canonical lower-cases domain and drops one trailing dot, allocating only
// when it has to.
func canonical(domain string) string {
	domain = strings.TrimSuffix(domain, ".")
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(domain)
		}
	}
	return domain
}
