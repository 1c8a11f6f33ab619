package output

import (
	"bytes"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeRows writes n results through a real writer and returns the bytes.
func writeRows(t *testing.T, format string, header []string, rows []int) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w Writer
	var err error
	if format == "jsonl" {
		w, err = NewJSONL(&buf, header)
	} else {
		w, err = NewCSV(&buf, header)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rows {
		// A message with a quoted newline: a cut inside it must not pass
		// for a complete row.
		r := Result{Row: n, Email: "a@b.test", Status: StatusDeliverable, SMTPMessage: "ok", CheckedAt: time.Unix(0, 0)}
		if err := w.Write([]string{"x,\"y\"\nz", "a@b.test"}, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every possible crash point: the file cut after any byte recovers exactly
// the rows whose line end made it, and appending the rest gives a file with
// every row once.
func TestRecoverEveryCut(t *testing.T) {
	header := []string{"note", "email"}
	rows := []int{3, 1, 2, 5, 4}
	for _, format := range []string{"csv", "jsonl"} {
		full := writeRows(t, format, header, rows)
		// Below this cut the file holds nothing whole: the CSV header, or
		// the first JSON line.
		headerLen := bytes.IndexByte(full, '\n') + 1
		if format == "jsonl" {
			headerLen = len(writeRows(t, format, header, rows[:1]))
		}
		for cut := 0; cut <= len(full); cut++ {
			path := filepath.Join(t.TempDir(), "out")
			if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			f, done, fresh, err := Recover(path, format, CSVHeader[Result](header))
			if err != nil {
				t.Fatalf("%s cut %d: %v", format, cut, err)
			}
			// Rows whose whole line is within the cut.
			want := 0
			for i, n := range rows {
				if len(writeRows(t, format, header, rows[:i+1])) <= cut {
					want++
					if !done.Has(n) {
						t.Errorf("%s cut %d: row %d not recovered", format, cut, n)
					}
				}
			}
			if done.Len() != want {
				t.Errorf("%s cut %d: %d rows recovered, want %d", format, cut, done.Len(), want)
			}
			if wantFresh := cut < headerLen; fresh != wantFresh {
				t.Errorf("%s cut %d: fresh = %v", format, cut, fresh)
			}
			// Finish the job: write the missing rows and compare.
			var w Writer
			switch {
			case format == "jsonl":
				w, _ = NewJSONL(f, header)
			case fresh:
				w, _ = NewCSV(f, header)
			default:
				w, _ = AppendCSVOf[Result](f, header)
			}
			for _, n := range rows {
				if !done.Has(n) {
					w.Write([]string{"x,\"y\"\nz", "a@b.test"}, Result{Row: n, Email: "a@b.test", Status: StatusDeliverable, SMTPMessage: "ok", CheckedAt: time.Unix(0, 0)})
				}
			}
			w.Flush()
			f.Close()
			got, _ := os.ReadFile(path)
			count := strings.Count(string(got), "a@b.test")
			if format == "csv" {
				recs, err := csv.NewReader(bytes.NewReader(got)).ReadAll()
				if err != nil || len(recs) != len(rows)+1 {
					t.Errorf("csv cut %d: after resuming %d records, err %v\n%s", cut, len(recs), err, got)
				}
			} else if count != 2*len(rows) {
				t.Errorf("jsonl cut %d: after resuming %d rows\n%s", cut, count/2, got)
			}
		}
	}
}

func TestRecoverRefuses(t *testing.T) {
	header := []string{"note", "email"}
	good := writeRows(t, "csv", header, []int{1, 2})
	damaged := bytes.Replace(good, []byte("deliverable"), []byte("deliv\"erable"), 1)
	tests := []struct {
		name, format string
		data         []byte
		want         string
	}{
		{"other header", "csv", []byte("email,status\na@b.test,ok\n"), "header"},
		{"damage before complete rows", "csv", damaged, "damaged"},
		{"not a result line", "jsonl", []byte("{\"row\":1}\nhello\n{\"row\":2}\n"), "not a result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := Recover(path, tt.format, CSVHeader[Result](header))
			var re *RecoverError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a RecoverError about %q", err, tt.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, tt.data) {
				t.Error("a refused file was changed")
			}
		})
	}
}
