package ascii

import (
	"math/rand/v2"
	"testing"
)

// Each word operation says what looking at the 8 bytes one by one says,
// on words made of the bytes where the tricks could go wrong (0, 0x7f,
// 0x80, 0xff, the values tested for and their neighbours).
func TestWordOperationsMatchBytewise(t *testing.T) {
	alphabet := []byte{0, 1, ' ' - 1, ' ', ' ' + 1, '"', ',', '<', '>', 'a', '~', 0x7f, 0x80, 0x81, 0xfe, 0xff}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 300000 {
		var b [8]byte
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		s := string(b[:])
		x := Load(s, 0)
		for i := range 8 {
			if byte(x>>(8*i)) != s[i] {
				t.Fatalf("Load(%q) = %#x", s, x)
			}
		}
		c := alphabet[rng.IntN(len(alphabet))]
		n := alphabet[rng.IntN(len(alphabet))] & 0x7f
		var has, zero, less, high, printable = false, false, false, false, true
		var exact uint64
		for i := range 8 {
			has = has || s[i] == c
			zero = zero || s[i] == 0
			less = less || s[i] < n
			high = high || s[i] >= 0x80
			printable = printable && s[i] >= ' ' && s[i] <= '~'
			if s[i] == c {
				exact |= 0x80 << (8 * i)
			}
		}
		if (HasByte(x, c) != 0) != has || (HasZero(x) != 0) != zero {
			t.Fatalf("HasByte(%q, %#x) = %#x, want %v; HasZero %#x, want %v", s, c, HasByte(x, c), has, HasZero(x), zero)
		}
		if (HasLess(x, n) != 0) != less {
			t.Fatalf("HasLess(%q, %#x) = %#x, want %v", s, n, HasLess(x, n), less)
		}
		if (HasHigh(x) != 0) != high || Printable(x) != printable {
			t.Fatalf("HasHigh/Printable(%q) = %#x, %v; want %v, %v", s, HasHigh(x), Printable(x), high, printable)
		}
		if Bytes(x, c) != exact {
			t.Fatalf("Bytes(%q, %#x) = %#x, want %#x", s, c, Bytes(x, c), exact)
		}
	}
}
