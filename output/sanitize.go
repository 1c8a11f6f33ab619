package output

import (
	"unicode"
	"unicode/utf8"

	"github.com/bulkverify/bulkverify/internal/ascii"
)

// Sanitize makes untrusted server text safe for one CSV cell: control and
// format characters (C0 including CR, LF and TAB, DEL, C1, bidi overrides,
// zero-width characters) and invalid UTF-8 become a space, runs of white space
// collapse to one, the ends are trimmed, and the text is cut to at most max
// runes, the last of them "…" when something was cut (max <= 0: no limit).
// A result starting with = + - or @ gets a leading ' so that spreadsheets do
// not run it as a formula; the ' counts towards max.
func Sanitize(s string, max int) string {
	if alreadyClean(s, max) {
		return s // the common case: plain text, no allocation
	}
	// Collect at most max+1 runes: enough to know whether the text must be cut.
	capacity := len(s)
	if max > 0 && max+1 < capacity {
		capacity = max + 1
	}
	out := make([]rune, 0, capacity)
	pendingSpace := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if (r == utf8.RuneError && size == 1) || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			pendingSpace = len(out) > 0 // never a leading space
			continue
		}
		if pendingSpace {
			out = append(out, ' ')
			pendingSpace = false
		}
		out = append(out, r)
		if max > 0 && len(out) > max {
			break
		}
	}

	if len(out) > 0 {
		switch out[0] {
		case '=', '+', '-', '@':
			out = append([]rune{'\''}, out...)
		}
	}
	if max > 0 && len(out) > max {
		out = out[:max-1]
		for len(out) > 0 && out[len(out)-1] == ' ' {
			out = out[:len(out)-1]
		}
		out = append(out, '…')
	}
	return string(out)
}

// alreadyClean reports whether Sanitize would return s unchanged: printable
// ASCII with single inner spaces, within max, not starting like a formula.
func alreadyClean(s string, max int) bool {
	if s == "" {
		return true
	}
	if (max > 0 && len(s) > max) || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@':
		return false
	}
	// 8 bytes at a time (ascii.go), then the rest.
	prevSpace := false // the byte before i is a space
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := ascii.Load(s, i)
		if !ascii.Printable(x) {
			return false
		}
		sp := ascii.Bytes(x, ' ')
		if sp&(sp>>8) != 0 || prevSpace && sp&0x80 != 0 {
			return false
		}
		prevSpace = sp>>63 != 0
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || (c == ' ' && prevSpace) {
			return false
		}
		prevSpace = c == ' '
	}
	return true
}
