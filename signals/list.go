package signals

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/input"
)

// Kind names one of the lists a user can replace or extend.
type Kind string

// The lists a user can replace or extend.
const (
	KindDisposable Kind = "disposable"
	KindFree       Kind = "free"
	KindRole       Kind = "role"
)

// maxLineLen bounds one line of a list file: a domain is at most 253 octets,
// so a longer line is not a list entry but a wrong file.
const maxLineLen = 4096

// ListError is a bad line in a list file.
type ListError struct {
	Kind   Kind
	File   string // the path the user gave; "(built-in)" for embedded data
	Line   int    // 1-based
	Entry  string // the offending entry, clipped
	Detail string // what is wrong with it
}

func (e *ListError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("signals: %s list %s line %d: %s", e.Kind, e.File, e.Line, e.Detail)
	}
	return fmt.Sprintf("signals: %s list %s line %d: %q: %s", e.Kind, e.File, e.Line, e.Entry, e.Detail)
}

// header is what a list file says about itself in its leading comments:
// "# date: 2026-08-21" and "# source: ...". Both optional.
type header struct {
	date   time.Time
	source string
}

// scanList calls entry for every entry of a list file: a line with its
// comment ("#" to the end of the line) and surrounding blanks removed, if
// anything is left. Lines of a list have one entry; the typo list has two
// fields, which entry splits itself. Header comments before the first entry
// are collected.
func scanList(kind Kind, file string, r io.Reader, entry func(line int, text string) string) (header, error) {
	var h header
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineLen)
	line := 0
	entries := false
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		comment := ""
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text, comment = text[:i], text[i+1:]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			if !entries {
				h.read(comment)
			}
			continue
		}
		entries = true
		if detail := entry(line, text); detail != "" {
			return h, &ListError{Kind: kind, File: file, Line: line, Entry: clip(text, 80), Detail: detail}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return h, &ListError{Kind: kind, File: file, Line: line + 1, Detail: fmt.Sprintf("line longer than %d bytes: not a list file", maxLineLen)}
		}
		return h, fmt.Errorf("signals: reading %s list %s: %w", kind, file, err)
	}
	return h, nil
}

func (h *header) read(comment string) {
	key, value, ok := strings.Cut(comment, ":")
	if !ok {
		return
	}
	value = strings.TrimSpace(value)
	switch strings.TrimSpace(strings.ToLower(key)) {
	case "date":
		if t, err := time.Parse(time.DateOnly, value); err == nil {
			h.date = t
		}
	case "source":
		h.source = value
	}
}

// parseDomains reads a list of domains. Entries are normalised as an
// address's domain is (lower case, IDNA A-labels, no trailing dot) and must
// be valid domains of two labels or more; duplicates are allowed.
func parseDomains(kind Kind, file string, r io.Reader) ([]string, header, error) {
	var out []string
	h, err := scanList(kind, file, r, func(_ int, text string) string {
		d, detail := normaliseDomain(text)
		if detail != "" {
			return detail
		}
		out = append(out, d)
		return ""
	})
	return out, h, err
}

func normaliseDomain(text string) (string, string) {
	switch {
	case strings.ContainsAny(text, " \t"):
		return "", "one domain per line"
	case strings.Contains(text, "@"):
		return "", "want a domain, not an address"
	case strings.HasPrefix(text, "*."):
		return "", "no wildcards: write the domain (a disposable domain covers its subdomains)"
	}
	// A list entry is valid when an address could have it as its domain; the
	// input package owns that rule and its normalisation.
	a, err := input.ParseAddress("x@" + text)
	if err != nil {
		var se *input.SyntaxError
		if errors.As(err, &se) {
			return "", "not a domain: " + strings.TrimPrefix(se.Detail, "address ")
		}
		return "", "not a domain"
	}
	return a.Domain, ""
}

// parseRoles reads a list of role local parts, each normalised by roleKey.
func parseRoles(file string, r io.Reader) ([]string, header, error) {
	var out []string
	h, err := scanList(KindRole, file, r, func(_ int, text string) string {
		if strings.ContainsAny(text, " \t@") {
			return "want one local part per line, without @ or domain"
		}
		var buf [maxLocalLen]byte
		key, ok := roleKey(text, &buf)
		if !ok || len(key) == 0 {
			return "a role is letters and digits, optionally with . - _ between them"
		}
		for _, c := range key {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				return "a role is letters and digits, optionally with . - _ between them"
			}
		}
		out = append(out, string(key))
		return ""
	})
	return out, h, err
}

// parseTypos reads the built-in typo list: "typo intended" per line.
func parseTypos(file string, r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	_, err := scanList("typo", file, r, func(_ int, text string) string {
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return "want two domains: the typo and the domain meant"
		}
		typo, detail := normaliseDomain(fields[0])
		if detail != "" {
			return detail
		}
		meant, detail := normaliseDomain(fields[1])
		if detail != "" {
			return detail
		}
		if typo == meant {
			return "a domain is not a typo of itself"
		}
		out[typo] = meant
		return ""
	})
	return out, err
}

// maxLocalLen is RFC 5321's limit on a local part, in octets.
const maxLocalLen = 64

// roleKey writes into buf the form of local that role entries are matched
// in: lower case, a "+tag" removed, the separators . - _ dropped, and one
// pair of surrounding quotes taken off. ok is false when local cannot be a
// role: longer than 64 octets, or not ASCII.
func roleKey(local string, buf *[maxLocalLen]byte) (key []byte, ok bool) {
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		local = local[1 : len(local)-1]
	}
	n := 0
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '+':
			return buf[:n], true
		case c == '.' || c == '-' || c == '_':
			continue
		case c >= 0x80:
			return nil, false
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if n == len(buf) {
			return nil, false
		}
		buf[n] = c
		n++
	}
	return buf[:n], true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// splitLines is the embedded-data fast path: the built-in lists are checked
// by tests (sorted, unique, valid), so at run time they are only split.
// Comments and blank lines are skipped; a line holds one entry.
func splitLines(data string, each func(string)) {
	for len(data) > 0 {
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			each(line)
		}
	}
}

// headerOf reads the header comments of an embedded list: the comment and
// blank lines before its first entry.
func headerOf(data string) header {
	var h header
	for data != "" {
		line, rest, _ := strings.Cut(data, "\n")
		line = strings.TrimSpace(line)
		if line != "" && line[0] != '#' {
			break
		}
		h.read(strings.TrimPrefix(line, "#"))
		data = rest
	}
	return h
}
