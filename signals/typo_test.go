package signals

import "testing"

func TestNeighbours(t *testing.T) {
	for _, tc := range []struct {
		a, b byte
		want bool
	}{
		{'m', 'n', true}, {'i', 'o', true}, {'l', 'k', true}, {'a', 'q', true}, {'a', 's', true},
		{'a', 'z', true}, {'s', 'z', true}, {'w', 'a', true}, {'w', 's', true}, {'q', '1', true},
		{'w', '2', true}, {'o', '0', true}, {'c', 'v', true}, {'c', 'd', true}, {'h', 'b', true},
		{'a', 'o', false}, {'q', 's', false}, {'w', 'd', false}, {'g', 'x', false}, {'i', 'x', false},
		{'a', 'a', false}, {'.', 'm', false}, {'-', '0', false}, {'z', 'q', false}, {'m', 'p', false},
	} {
		if got := neighbours(tc.a, tc.b); got != tc.want {
			t.Errorf("neighbours(%c, %c) = %v", tc.a, tc.b, got)
		}
		if got := neighbours(tc.b, tc.a); got != tc.want {
			t.Errorf("neighbours(%c, %c) = %v (not symmetric)", tc.b, tc.a, got)
		}
	}
}

func TestSlipCost(t *testing.T) {
	for _, tc := range []struct {
		typed, meant string
		want         int
	}{
		{"gmail", "gmail", 0},
		{"gmial", "gmail", 2},  // transposition
		{"gmai", "gmail", 2},   // deletion
		{"gmaill", "gmail", 2}, // insertion
		{"gnail", "gmail", 2},  // neighbouring key
		{"gxail", "gmail", 3},  // other key
		{"con", "com", 2},
		{"cmo", "com", 2},
		{"", "com", 6},
		{"abc", "", 6},
		{"ca", "abc", 6}, // OSA edits no substring twice: three edits, not two
		{"hotmaaill", "hotmail", 4},
	} {
		if got := slipCost(tc.typed, tc.meant, 100); got != tc.want {
			t.Errorf("slipCost(%q, %q) = %d, want %d", tc.typed, tc.meant, got, tc.want)
		}
	}
	// The early exit must never turn a cost within the limit into one above.
	for _, tc := range [][2]string{{"ab", "ba"}, {"abcd", "badc"}, {"gmial", "gmail"}, {"xyzw", "yxwz"}} {
		full := slipCost(tc[0], tc[1], 100)
		for limit := 0; limit < full+3; limit++ {
			got := slipCost(tc[0], tc[1], limit)
			if (full <= limit) != (got <= limit) || (full <= limit && got != full) {
				t.Errorf("slipCost(%q, %q, limit %d) = %d, full cost %d", tc[0], tc[1], limit, got, full)
			}
		}
	}
}
