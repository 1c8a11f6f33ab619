package probe

import (
	"math/rand/v2"
	"testing"
)

// plainArg, checkArg's fast path, accepts exactly the printable ASCII
// strings without space or angle brackets, and checkArg's rune by rune
// check accepts all of them.
func TestPlainArgMatchesBytewise(t *testing.T) {
	alphabet := []byte{0, '\r', '\n', ' ', '!', '<', '>', 'a', '@', '.', '~', 0x7f, 0x80, 0xc3, 0xa9, 0xff}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 100000 {
		b := make([]byte, rng.IntN(20))
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = "ab@."[rng.IntN(4)]
			}
		}
		s := string(b)
		want := true
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c > '~' || c == '<' || c == '>' {
				want = false
			}
		}
		if got := plainArg(s); got != want {
			t.Fatalf("plainArg(%q) = %v, want %v", s, got, want)
		}
		if want && checkRunes("address", s, true) != nil {
			t.Fatalf("checkArg's rune by rune check refuses %q, which plainArg passes", s)
		}
	}
}
