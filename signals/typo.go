package signals

import "strings"

// Costs of one slip, in half edits, so that a substitution by a key that is
// not next to the intended one can cost more than a fat finger.
const (
	costEdit       = 2 // insertion, deletion, transposition, substitution by a neighbouring key
	costFarReplace = 3 // substitution by a key that is not a neighbour
)

// target is one well-known domain as the close-miss search sees it.
type target struct {
	domain string
	name   string // before the first dot: "gmail", "yahoo"
	suffix string // after it: "com", "co.uk"
	budget int    // slips allowed in name, in half edits (see nameBudget)
}

func newTarget(domain string) target {
	name, suffix, _ := strings.Cut(domain, ".")
	return target{domain: domain, name: name, suffix: suffix, budget: nameBudget(len(name))}
}

// nameBudget is how far a name may be from a well-known name of n letters
// and still be taken for a slip of it. Short names are close to too many
// real ones (gmx, web, aol, mail, live: a slip of one is another name), so
// they only match by their suffix; names of 5 to 7 letters allow one slip;
// from 8 letters, two.
func nameBudget(n int) int {
	switch {
	case n < 5:
		return 0
	case n < 8:
		return costEdit
	default:
		return 2 * costEdit
	}
}

// closeMiss returns the well-known domain that domain is most likely a slip
// of, or "". Either the name is the same and the suffix is one slip away
// (gmail.con, yahoo.cmo, aol.om), or the suffix is the same and the name is
// within its budget (hotmai.com, outllok.com). The cheapest wins; among
// equals, the first in targets, which are ordered by use. domain must be
// lower-case ASCII and must not be a well-known, free or disposable domain
// itself: the caller checks that first.
func closeMiss(domain string, targets []target) string {
	name, suffix, ok := strings.Cut(domain, ".")
	if !ok || name == "" || suffix == "" {
		return ""
	}
	best, bestCost := "", 1<<30
	for i := range targets {
		t := &targets[i]
		var cost int
		switch {
		case t.name == name:
			if t.suffix == suffix {
				continue
			}
			cost = slipCost(suffix, t.suffix, costEdit)
			if cost > costEdit {
				continue
			}
		case t.suffix == suffix && t.budget > 0:
			if d := len(name) - len(t.name); d*costEdit > t.budget || -d*costEdit > t.budget {
				continue // each letter of difference in length is an insertion or deletion
			}
			cost = slipCost(name, t.name, t.budget)
			if cost > t.budget {
				continue
			}
		default:
			continue
		}
		if cost < bestCost {
			best, bestCost = t.domain, cost
		}
	}
	return best
}

// maxSlipLen bounds the strings slipCost compares: a DNS label is at most
// 63 octets, and suffixes are shorter.
const maxSlipLen = 63

// slipCost is the optimal-string-alignment distance (Damerau-Levenshtein
// with adjacent transpositions, no substring edited twice) from typed to
// meant, with the costs above. It returns a value above limit as soon as
// the result must exceed limit. It does not allocate.
func slipCost(typed, meant string, limit int) int {
	if len(typed) > maxSlipLen || len(meant) > maxSlipLen {
		return limit + 1
	}
	// Three rows of the dynamic-programming table: i-2, i-1 and i.
	var rows [3][maxSlipLen + 1]int
	for j := 0; j <= len(meant); j++ {
		rows[0][j] = j * costEdit
	}
	prevMin := 0
	for i := 1; i <= len(typed); i++ {
		cur, prev, prev2 := &rows[i%3], &rows[(i-1)%3], &rows[(i+1)%3]
		cur[0] = i * costEdit
		rowMin := cur[0]
		for j := 1; j <= len(meant); j++ {
			a, b := typed[i-1], meant[j-1]
			sub := 0
			if a != b {
				sub = costFarReplace
				if neighbours(a, b) {
					sub = costEdit
				}
			}
			c := min(prev[j]+costEdit, cur[j-1]+costEdit, prev[j-1]+sub)
			if i > 1 && j > 1 && a == meant[j-2] && typed[i-2] == b && a != b {
				c = min(c, prev2[j-2]+costEdit)
			}
			cur[j] = c
			rowMin = min(rowMin, c)
		}
		// Every path to the last row passes through this row or, by a
		// transposition, jumps over it from the one before.
		if rowMin > limit && prevMin > limit {
			return limit + 1
		}
		prevMin = rowMin
	}
	return rows[len(typed)%3][len(meant)]
}

// keyPos returns the row of key c on a QWERTY keyboard and its position
// in quarter keys (each row is shifted right of the one above it), or row
// -1 for a character that is not a letter or digit.
func keyPos(c byte) (row, x int) {
	const (
		digits = "1234567890" // shifted 0
		top    = "qwertyuiop" // shifted half a key
		home   = "asdfghjkl"  // three quarters
		bottom = "zxcvbnm"    // one and a quarter
	)
	if i := strings.IndexByte(digits, c); i >= 0 {
		return 0, i * 4
	}
	if i := strings.IndexByte(top, c); i >= 0 {
		return 1, i*4 + 2
	}
	if i := strings.IndexByte(home, c); i >= 0 {
		return 2, i*4 + 3
	}
	if i := strings.IndexByte(bottom, c); i >= 0 {
		return 3, i*4 + 5
	}
	return -1, 0
}

// neighbours reports whether a and b are next to each other on a QWERTY
// keyboard (beside, or diagonally above or below), where fat fingers slip.
func neighbours(a, b byte) bool {
	ra, xa := keyPos(a)
	rb, xb := keyPos(b)
	if ra < 0 || rb < 0 {
		return false
	}
	dx := xa - xb
	if dx < 0 {
		dx = -dx
	}
	switch ra - rb {
	case 0:
		return dx == 4
	case 1, -1:
		return dx <= 3
	}
	return false
}
