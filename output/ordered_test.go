package output

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestOrdered(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		done    []int // already in the output (resuming)
		missing []int // never decided (the run was stopped)
		want    []int // rows written, in this order
	}{
		{"all", 6, nil, nil, []int{1, 2, 3, 4, 5, 6}},
		{"resumed", 6, []int{1, 2, 5}, nil, []int{3, 4, 6}},
		{"stopped: only the in-order prefix", 6, nil, []int{3}, []int{1, 2}},
		{"resumed and stopped", 6, []int{1, 3}, []int{4}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			inner, _ := NewCSV(&buf, []string{"in"})
			done := &Done{}
			for _, d := range tt.done {
				done.Add(d)
			}
			o, err := NewOrdered[Result](inner, t.TempDir(), done)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			skip := map[int]bool{}
			for _, d := range append(tt.done, tt.missing...) {
				skip[d] = true
			}
			var rows []int
			for i := 1; i <= tt.n; i++ {
				if !skip[i] {
					rows = append(rows, i)
				}
			}
			rand.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			for _, n := range rows {
				r := Result{Row: n, Email: "a@b.test", Status: StatusRisky, CatchAll: new(bool), CheckedAt: time.Unix(int64(n), 0)}
				if err := o.Write([]string{"in" + strconv.Itoa(n)}, r); err != nil {
					t.Fatal(err)
				}
			}
			o.Flush()
			recs, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, rec := range recs[1:] {
				n, _ := strconv.Atoi(rec[1])
				got = append(got, n)
				if rec[0] != "in"+rec[1] || rec[3] != StatusRisky || rec[9] != "false" {
					t.Errorf("row %d came back changed: %q", n, rec)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("rows written %v, want %v", got, tt.want)
			}
		})
	}
}

// Input that is not UTF-8 (a Latin-1 file) comes out byte for byte, also
// from rows that waited.
func TestOrderedKeepsBytes(t *testing.T) {
	var buf bytes.Buffer
	inner, _ := NewCSV(&buf, []string{"name", "email"})
	o, err := NewOrdered[Result](inner, t.TempDir(), &Done{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	latin1 := "Jos\xe9 M\xfcller"
	for _, n := range []int{2, 1} {
		if err := o.Write([]string{latin1, "a@x.test"}, Result{Row: n, Email: "a@x.test", Status: StatusDeliverable}); err != nil {
			t.Fatal(err)
		}
	}
	o.Flush()
	if got := bytes.Count(buf.Bytes(), []byte(latin1)); got != 2 {
		t.Errorf("%d rows kept their bytes, want 2: %q", got, buf.String())
	}
}
