package input

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// csvReader reads what encoding/csv reads, record for record, line for
// line, error for error, on inputs made of what makes CSV hard: quotes in
// and out of place, separators, CR and LF in every combination, empty
// lines, a multi-byte separator, no final newline, lines longer than the
// read buffer.
func TestCSVReaderMatchesEncodingCSV(t *testing.T) {
	pieces := []string{"a", "bc", "é", `"`, `""`, ",", ";", "€", "\n", "\r\n", "\r", " ", "\n\n", `","`, "x@y.test"}
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 15000 {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		if n%7 == 0 {
			b.WriteString(strings.Repeat("long", 10)) // past a 16-byte buffer
		}
		in := b.String()
		for _, comma := range []rune{',', ';', '€'} {
			for _, size := range []int{16, 4096} {
				want := readAllCSV(in, comma, size, true)
				got := readAllCSV(in, comma, size, false)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("input %q, separator %q, buffer %d:\n got %v\nwant %v", in, comma, size, got, want)
				}
			}
		}
	}
}

// readAllCSV reads in to its end (or first error) with encoding/csv (std)
// or csvReader and describes each record and the error.
func readAllCSV(in string, comma rune, size int, std bool) []string {
	var out []string
	br := bufio.NewReaderSize(strings.NewReader(in), size)
	if std {
		cr := csv.NewReader(br)
		cr.Comma, cr.FieldsPerRecord = comma, -1
		for {
			rec, err := cr.Read()
			if err != nil {
				return append(out, describeErr(err))
			}
			line, _ := cr.FieldPos(0)
			out = append(out, fmt.Sprintf("%d %q", line, rec))
		}
	}
	cr := newCSVReader(br, comma)
	for {
		rec, line, err := cr.read()
		if err != nil {
			return append(out, describeErr(err))
		}
		out = append(out, fmt.Sprintf("%d %q", line, rec))
	}
}

func describeErr(err error) string {
	if err == io.EOF {
		return "EOF"
	}
	return fmt.Sprintf("%T %v", err, err)
}

// A read error is returned as encoding/csv returns it.
func TestCSVReaderReadError(t *testing.T) {
	in := "a,b\nc,d\ne,f\n"
	for _, std := range []bool{true, false} {
		r := iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader(in)))
		br := bufio.NewReaderSize(r, 16)
		var err error
		if std {
			cr := csv.NewReader(br)
			cr.FieldsPerRecord = -1
			_, err = cr.Read()
			if err == nil {
				_, err = cr.Read()
			}
		} else {
			cr := newCSVReader(br, ',')
			_, _, err = cr.read()
			if err == nil {
				_, _, err = cr.read()
			}
		}
		if err != iotest.ErrTimeout {
			t.Errorf("std %v: error %v, want the reader's", std, err)
		}
	}
}
