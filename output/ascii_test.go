package output

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// The word-at-a-time checks say what a byte-at-a-time reading of their
// definitions says, on strings of every length around the word size, made
// of the bytes that matter.
func TestWordChecksMatchBytewise(t *testing.T) {
	alphabet := []byte{' ', 'a', 'Z', '~', '"', ',', '\\', '.', '=', '@', '\t', '\n', '\r', 0, 0x1f, 0x7f, 0x80, 0xc3, 0xa9, 0xff}
	rng := rand.New(rand.NewPCG(3, 4))
	slowClean := func(s string, max int) bool {
		if s == "" {
			return true
		}
		if (max > 0 && len(s) > max) || s[0] == ' ' || s[len(s)-1] == ' ' || strings.ContainsAny(s[:1], "=+-@") {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < ' ' || c > '~' || (c == ' ' && s[i+1] == ' ') {
				return false
			}
		}
		return true
	}
	slowPlain := func(s string) bool {
		if s[0] == ' ' || s == `\.` {
			return false
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < ' ' || c > '~' || c == '"' || c == ',' {
				return false
			}
		}
		return true
	}
	for range 200000 {
		n := 1 + rng.IntN(27)
		b := make([]byte, n)
		for i := range b {
			// Mostly plain letters and spaces, so that clean strings are common.
			if rng.IntN(4) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = "ab "[rng.IntN(3)]
			}
		}
		s := string(b)
		if got, want := alreadyClean(s, 0), slowClean(s, 0); got != want {
			t.Fatalf("alreadyClean(%q) = %v, want %v", s, got, want)
		}
		if got, want := plainCell(s), slowPlain(s); got != want {
			t.Fatalf("plainCell(%q) = %v, want %v", s, got, want)
		}
		if plainCell(s) && (needsQuotes(s) || !utf8.ValidString(s)) {
			t.Fatalf("plainCell(%q) but encoding/csv would quote it", s)
		}
	}
}
