package output

import (
	"bytes"
	"encoding/csv"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jszwec/csvutil"
)

// The fast encoder of Result rows writes exactly what csvutil and
// encoding/csv write, cell for cell, quoting and formula escaping included.
func TestFastCSVMatchesCSVUtil(t *testing.T) {
	cells := []string{"", "plain", "with,comma", `with "quote"`, "multi\nline", "cr\rhere", " leading space",
		"\tleading tab", "\u00a0nbsp", `\.`, "=1+2", "+x", "-5", "@sum", "\tx,y", "\r", "'quoted'", "trailing ",
		"é unicode", "a\"", "=\"x\",y"}
	bools := []*bool{nil, ptrTo(true), ptrTo(false)}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return cells[rng.IntN(len(cells))] }
	for _, safe := range []bool{false, true} {
		var opts []CSVOption
		if safe {
			opts = append(opts, FormulaSafe())
		}
		header := []string{"a", "b", "c"}
		var fast, slow bytes.Buffer
		fw, err := NewCSV(&fast, header, opts...)
		if err != nil {
			t.Fatal(err)
		}
		sw := csv.NewWriter(&slow)
		sw.Write(CSVHeader[Result](header, opts...))
		row := &prefixWriter{cw: sw, formulaSafe: safe}
		enc := csvutil.NewEncoder(row)
		enc.AutoHeader = false
		enc.WithMarshalers(csvutil.MarshalFunc(func(t time.Time) ([]byte, error) {
			return t.UTC().AppendFormat(nil, time.RFC3339), nil
		}))
		for i := range 3000 {
			r := Result{
				Row: i, Email: pick(), Status: pick(), Reason: pick(), SMTPCode: []int{0, 250, 550}[rng.IntN(3)],
				EnhancedCode: pick(), SMTPMessage: pick(), MXHost: pick(), CatchAll: bools[rng.IntN(3)], TLS: bools[rng.IntN(3)],
				Attempts: rng.IntN(4), CheckedAt: time.Date(2024, 5, 6, 5, 8, rng.IntN(3), rng.IntN(1e9), time.FixedZone("x", 3600)),
				Provider: pick(), Egress: pick(), Disposable: rng.IntN(2) == 0, Free: rng.IntN(2) == 0, Role: rng.IntN(2) == 0,
				TypoSuggestion: pick(), Source: pick(),
			}
			fields := make([]string, rng.IntN(5)) // ragged on purpose: padded or cut to the header
			for j := range fields {
				fields[j] = pick()
			}
			if err := fw.Write(fields, r); err != nil {
				t.Fatal(err)
			}
			row.prefix = fitFields(fields, len(header), len(ResultColumns()))
			if err := enc.Encode(r.clean()); err != nil {
				t.Fatal(err)
			}
		}
		if err := fw.Flush(); err != nil {
			t.Fatal(err)
		}
		sw.Flush()
		if !bytes.Equal(fast.Bytes(), slow.Bytes()) {
			fl, sl := bytes.Split(fast.Bytes(), []byte("\n")), bytes.Split(slow.Bytes(), []byte("\n"))
			for i := range min(len(fl), len(sl)) {
				if !bytes.Equal(fl[i], sl[i]) {
					t.Fatalf("formula-safe %v: line %d differs:\nfast %q\nslow %q", safe, i+1, fl[i], sl[i])
				}
			}
			t.Fatalf("formula-safe %v: %d lines, want %d", safe, len(fl), len(sl))
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// BenchmarkFastCSV: one op is one typical result row (an input of one
// column, a stored verdict) encoded.
func BenchmarkFastCSV(b *testing.B) {
	w, err := NewCSV(io.Discard, []string{"email"})
	if err != nil {
		b.Fatal(err)
	}
	fields := []string{"u42@d1234.test"}
	r := Result{
		Row: 123456, Email: "u42@d1234.test", Status: StatusDeliverable, Reason: "accepted", SMTPCode: 250,
		EnhancedCode: "2.0.0", SMTPMessage: "2.0.0 I'll make sure <u42@d1234.test> gets this", MXHost: "mx12.test",
		CatchAll: ptrTo(false), TLS: ptrTo(false), Attempts: 1, CheckedAt: time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC),
		Source: SourceStored,
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(fields, r); err != nil {
			b.Fatal(err)
		}
	}
}
