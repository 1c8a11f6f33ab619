package output

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// The output file is its own journal: every row carries its input row
// number, rows are written as they are decided, and a row is complete when
// its line end is on disk. Recovering after a crash is reading back the
// complete rows and cutting off a row the crash left half-written.

// Done is the set of input rows an output file already holds.
type Done struct {
	bits []uint64
	n    int
}

// Add records row as done.
func (d *Done) Add(row int) {
	if row < 0 {
		return
	}
	for row/64 >= len(d.bits) {
		d.bits = append(d.bits, 0)
	}
	if d.bits[row/64]&(1<<(row%64)) == 0 {
		d.n++
	}
	d.bits[row/64] |= 1 << (row % 64)
}

// Has reports whether row is done. A nil *Done has no rows.
func (d *Done) Has(row int) bool {
	if d == nil || row < 0 || row/64 >= len(d.bits) {
		return false
	}
	return d.bits[row/64]&(1<<(row%64)) != 0
}

// Len is the number of rows done.
func (d *Done) Len() int {
	if d == nil {
		return 0
	}
	return d.n
}

// RecoverError means an existing output file cannot be resumed.
type RecoverError struct {
	Path   string
	Reason string
}

func (e *RecoverError) Error() string {
	return fmt.Sprintf("cannot resume %s: %s", e.Path, e.Reason)
}

// Recover opens the output file at path for resuming: it reads the complete
// rows, truncates whatever follows the last one, and leaves f positioned at
// the end for appending. A file that does not exist or is empty is created
// and recovers nothing; the writer then writes the header. header is the
// expected header line (CSV) and is checked; format is "csv" or "jsonl".
func Recover(path, format string, header []string) (f *os.File, done *Done, fresh bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, false, err
	}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, false, err
	}
	if st.Size() == 0 {
		return f, &Done{}, true, nil
	}
	var good int64
	switch format {
	case "jsonl":
		done, good, err = recoverJSONL(f)
	default:
		done, good, err = recoverCSV(f, header)
	}
	if err != nil {
		var re *RecoverError
		if errors.As(err, &re) {
			re.Path = path
		}
		return nil, nil, false, err
	}
	if good == 0 {
		// Not even a complete header: start over.
		if err := f.Truncate(0); err != nil {
			return nil, nil, false, err
		}
		_, err = f.Seek(0, io.SeekStart)
		return f, &Done{}, true, err
	}
	if err := f.Truncate(good); err != nil {
		return nil, nil, false, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return nil, nil, false, err
	}
	return f, done, false, nil
}

// recoverCSV returns the rows of the complete records and the offset just
// after the last complete one. A record is complete when it has every
// column and its line end. It streams: an output of millions of rows is not
// read into memory.
func recoverCSV(f *os.File, header []string) (*Done, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := st.Size()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	first, err := r.Read()
	if err != nil || !endsLine(f, r.InputOffset(), size) {
		return &Done{}, 0, nil // not even a whole header line
	}
	if !slices.Equal(first, header) {
		return nil, 0, &RecoverError{Reason: "its header is not the one this input and command write; use another output file, or run without --resume to start over"}
	}
	// The result columns follow the input columns, which may have a "row"
	// of their own: ours is the last one.
	rowCol := -1
	for i, h := range header {
		if h == "row" {
			rowCol = i
		}
	}
	if rowCol < 0 {
		return nil, 0, &RecoverError{Reason: "its header has no row column"}
	}
	done := &Done{}
	good := r.InputOffset()
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		end := r.InputOffset()
		n := 0
		if err == nil && len(rec) == len(header) {
			n, err = strconv.Atoi(rec[rowCol])
			if err != nil || n < 1 {
				return nil, 0, &RecoverError{Reason: fmt.Sprintf("a row has %q in its row column", rec[rowCol])}
			}
		}
		if err != nil || len(rec) != len(header) || !endsLine(f, end, size) {
			// A crash leaves a prefix of what was written, so only the
			// last record can be broken; anything after a broken one is
			// damage we did not do, and cutting it off would lose it.
			if _, err := r.Read(); !errors.Is(err, io.EOF) {
				return nil, 0, &RecoverError{Reason: fmt.Sprintf("damaged at byte %d, with more rows after it", good)}
			}
			break
		}
		done.Add(n)
		good = end
	}
	return done, good, nil
}

// endsLine reports whether the record ending at off (as csv.Reader counts)
// ended with its line end. Only the last record of the file can lack it,
// so only then is the file read again.
func endsLine(f *os.File, off, size int64) bool {
	if off < size {
		return true
	}
	var b [1]byte
	_, err := f.ReadAt(b[:], off-1)
	return off > 0 && err == nil && b[0] == '\n'
}

// recoverJSONL does the same for JSON Lines: a line is complete when it ends
// in a newline and is a JSON object with a row.
func recoverJSONL(f *os.File) (*Done, int64, error) {
	br := bufio.NewReader(f)
	done := &Done{}
	var good int64
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return done, good, nil // EOF: a line without its end is the half-written tail
		}
		var v struct {
			Row int `json:"row"`
		}
		if json.Unmarshal(line, &v) != nil || v.Row < 1 {
			// Only the last line can be half-written, and it has no end.
			return nil, 0, &RecoverError{Reason: fmt.Sprintf("line at byte %d is not a result", good)}
		}
		done.Add(v.Row)
		good += int64(len(line))
	}
}
