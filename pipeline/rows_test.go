package pipeline

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/bulkverify/bulkverify/input"
)

// dedupe collapses a group's duplicates in place: one row per distinct
// address, in the order first met, each with all the input rows that
// asked for it, in their order; the index finds every address.
func TestGrouperDedupe(t *testing.T) {
	tests := []struct {
		name  string
		local []string // the rows' local parts, at one domain
	}{
		{"none repeated", []string{"a", "b", "c"}},
		{"repeats", []string{"a", "b", "a", "c", "b", "a"}},
		{"one address", []string{"x", "x", "x"}},
		{"many", func() []string {
			var l []string
			for i := range 300 {
				l = append(l, fmt.Sprint("u", i%97))
			}
			return l
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGrouper(nil)
			g.add(parsedRow{ref: rowRef{row: 0, fields: []string{"other"}}, addr: input.Address{Local: "z", Domain: "other.test"}, key: "z@other.test"})
			want := map[string][]int{} // address -> its rows
			var order []string
			for i, l := range tt.local {
				key := l + "@d.test"
				g.add(parsedRow{ref: rowRef{row: i + 1, fields: []string{key}}, addr: input.Address{Local: l, Domain: "d.test"}, key: key})
				if want[key] == nil {
					order = append(order, key)
				}
				want[key] = append(want[key], i+1)
			}
			gi := int(g.domIdx["d.test"])
			ix := g.dedupe(gi)
			grp := g.groups[gi]
			if grp.size() != len(order) {
				t.Fatalf("%d addresses, want %d", grp.size(), len(order))
			}
			for i, key := range order {
				a, text, rows := grp.at(i)
				if text != key || a.String() != key || a.Domain != "d.test" {
					t.Errorf("address %d: %q (%+v), want %q", i, text, a, key)
				}
				var got []int
				rows.each(func(r rowRef) { got = append(got, r.row) })
				if !reflect.DeepEqual(got, want[key]) {
					t.Errorf("%s: rows %v, want %v", key, got, want[key])
				}
				if at, ok := ix.lookup(key); !ok || at != i {
					t.Errorf("lookup(%s) = %d, %v; want %d", key, at, ok, i)
				}
			}
			if _, ok := ix.lookup("nobody@d.test"); ok {
				t.Error("lookup found an address the group does not have")
			}
			if g.held(gi) != len(order) || g.held(int(g.domIdx["other.test"])) != 1 {
				t.Errorf("held %d and %d", g.held(gi), g.held(int(g.domIdx["other.test"])))
			}
		})
	}
}
