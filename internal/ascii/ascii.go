package ascii

const (
	lsb = 0x0101010101010101 // 1 in every byte
	msb = 0x8080808080808080 // the high bit of every byte
)

// Load reads s[i:i+8] as a little-endian word (one load once compiled).
func Load(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// HasZero is not 0 when some byte of v is 0 (its high bits may flag more
// bytes than that: use it as a yes or no).
func HasZero(v uint64) uint64 { return (v - lsb) & ^v & msb }

// HasByte is not 0 when some byte of x is c.
func HasByte(x uint64, c byte) uint64 { return HasZero(x ^ (lsb * uint64(c))) }

// HasLess is not 0 when some byte of x is below n (n <= 128); bytes of
// 0x80 and above are not flagged.
func HasLess(x uint64, n byte) uint64 { return (x - lsb*uint64(n)) & ^x & msb }

// HasHigh is not 0 when some byte of x is 0x80 or above.
func HasHigh(x uint64) uint64 { return x & msb }

// Bytes has the high bit set in exactly the bytes of x that are c, and no
// other bit.
func Bytes(x uint64, c byte) uint64 {
	v := x ^ (lsb * uint64(c))
	return ^(((v & ^uint64(msb)) + ^uint64(msb)) | v) & msb
}

// Printable reports whether every byte of x is printable ASCII, ' ' to '~'.
func Printable(x uint64) bool {
	return HasLess(x, ' ')|HasHigh(x)|HasByte(x, 0x7f) == 0
}
