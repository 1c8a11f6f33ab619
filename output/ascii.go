package output

import "github.com/bulkverify/bulkverify/internal/ascii"

// Every result row passes a dozen cells, a hundred and more bytes, through
// the checks of what is plain text (alreadyClean, plainCell): they look at
// 8 bytes at a time.

// plainCell reports whether s is a cell of printable ASCII that needs no
// quoting, in one pass (what needsQuotes asks, for the text most cells
// hold): no '"' or ',', not led by a space, not `\.`.
func plainCell(s string) bool {
	if s[0] == ' ' || s == `\.` {
		return false
	}
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := ascii.Load(s, i)
		if !ascii.Printable(x) || ascii.HasByte(x, '"')|ascii.HasByte(x, ',') != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == ',' {
			return false
		}
	}
	return true
}
