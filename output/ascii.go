package output

// Every result row passes a dozen cells, a hundred and more bytes, through
// the checks of what is plain text (alreadyClean, plainCell): they look at
// 8 bytes at a time (the bit tricks of "Bit Twiddling Hacks", Sean Eron
// Anderson: determine if a word has a byte less than n, or equal to n).

const (
	lsb = 0x0101010101010101 // 1 in every byte
	msb = 0x8080808080808080 // the high bit of every byte
)

// word8 reads s[i:i+8] as a little-endian word (one load once compiled).
func word8(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// hasZero is not 0 when some byte of v is 0.
func hasZero(v uint64) uint64 { return (v - lsb) & ^v & msb }

// hasLess is not 0 when some byte of x is below n (n <= 128); bytes of
// 0x80 and above are not flagged.
func hasLess(x uint64, n uint64) uint64 { return (x - lsb*n) & ^x & msb }

// zeroBytes has the high bit set in exactly the bytes of v that are 0.
func zeroBytes(v uint64) uint64 {
	return ^(((v & ^uint64(msb)) + ^uint64(msb)) | v) & msb
}

// printableWord reports whether every byte of x is printable ASCII (' ' to
// '~').
func printableWord(x uint64) bool {
	return (hasLess(x, ' ') | x&msb | hasZero(x^(lsb*0x7f))) == 0
}
