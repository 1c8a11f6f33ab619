package output

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "empty", in: "", max: 10, want: ""},
		{name: "plain", in: "2.1.5 OK", max: 200, want: "2.1.5 OK"},
		{name: "collapse and trim", in: "  hello \t\t  world  ", max: 200, want: "hello world"},
		{name: "CRLF", in: "line1\r\nline2", max: 200, want: "line1 line2"},
		{name: "NUL and ESC", in: "a\x00b\x1b[31mc", max: 200, want: "a b [31mc"},
		{name: "DEL", in: "\x7fdel\x7f", max: 200, want: "del"},
		{name: "C1 controls", in: "C1 \u0085\u009b x", max: 200, want: "C1 x"},
		{name: "invalid UTF-8", in: "caf\xe9 \xff\xfe bytes", max: 200, want: "caf bytes"},
		{name: "bidi override and zero-width", in: "bidi \u202egnp.exe\u200b!", max: 200, want: "bidi gnp.exe !"},
		{name: "unicode spaces", in: "a\u00a0\u2028\u3000b", max: 200, want: "a b"},
		{name: "only junk", in: "\r\n\t\x00\u200b", max: 200, want: ""},
		{name: "formula =", in: "=cmd|' /C calc'!A0", max: 200, want: "'=cmd|' /C calc'!A0"},
		{name: "formula +", in: "+1+1", max: 200, want: "'+1+1"},
		{name: "formula -", in: "-2+3", max: 200, want: "'-2+3"},
		{name: "formula @", in: "@SUM(A1)", max: 200, want: "'@SUM(A1)"},
		{name: "formula after trimmed junk", in: "\r\n \t=1", max: 200, want: "'=1"},
		{name: "= inside is fine", in: "a=1", max: 200, want: "a=1"},
		{name: "fits exactly", in: "abcd", max: 4, want: "abcd"},
		{name: "cut", in: "abcdef", max: 4, want: "abc…"},
		{name: "cut drops the space before the ellipsis", in: "ab cdef", max: 4, want: "ab…"},
		{name: "prefix counts towards max", in: "=abcdef", max: 4, want: "'=a…"},
		{name: "prefix makes it one too long", in: "=abc", max: 4, want: "'=a…"},
		{name: "cut counts runes not bytes", in: "ünïcödé ✓", max: 5, want: "ünïc…"},
		{name: "max 1", in: "abc", max: 1, want: "…"},
		{name: "max 0 is unlimited", in: strings.Repeat("x", 1000), max: 0, want: strings.Repeat("x", 1000)},
		{name: "negative max is unlimited", in: " a  b ", max: -3, want: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sanitize(tt.in, tt.max); got != tt.want {
				t.Errorf("Sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func FuzzSanitize(f *testing.F) {
	f.Add("=cmd|' /C calc'!A0", 200)
	f.Add("line1\r\nline2", 5)
	f.Add("\xff\xfe\x00 - x", 1)
	f.Fuzz(func(t *testing.T, s string, max int) {
		got := Sanitize(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 %q", got)
		}
		if max > 0 && utf8.RuneCountInString(got) > max {
			t.Fatalf("%d runes, max %d", utf8.RuneCountInString(got), max)
		}
		if got != strings.TrimSpace(got) || strings.Contains(got, "  ") {
			t.Fatalf("untrimmed or uncollapsed %q", got)
		}
		for _, r := range got {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' {
				t.Fatalf("control %U left in %q", r, got)
			}
		}
		if got != "" && strings.ContainsRune("=+-@", rune(got[0])) {
			t.Fatalf("formula start %q", got)
		}
		if max <= 0 && Sanitize(got, max) != got {
			t.Fatalf("not idempotent: %q -> %q", got, Sanitize(got, max))
		}
	})
}
