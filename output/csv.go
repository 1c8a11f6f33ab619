package output

import (
	"encoding/csv"
	"fmt"
	"io"
	"time"

	"github.com/jszwec/csvutil"
)

// Row is a kind of output row: Result for verify, FindResult and
// CandidateResult for find. Its csv tags name its columns.
type Row[T any] interface {
	// clean returns the row with server-supplied text made safe for a cell
	// and times normalised, so every writer emits the same values.
	clean() T
	rowNumber() int
}

// CSV writes results as CSV: the input columns, then ResultColumns.
type CSV = CSVOf[Result]

// CSVOf writes rows of T as CSV: the input columns, then T's columns.
type CSVOf[T Row[T]] struct {
	cw    *csv.Writer
	enc   *csvutil.Encoder
	row   *prefixWriter
	width int
	extra int
}

// prefixWriter lets csvutil encode the result columns while the input fields
// go in front of them on the same CSV line.
type prefixWriter struct {
	cw     *csv.Writer
	prefix []string
}

func (p *prefixWriter) Write(record []string) error {
	return p.cw.Write(append(p.prefix, record...))
}

// NewCSV writes the header (inputHeader followed by ResultColumns) to w at once,
// so an interrupted run still leaves a well-formed file.
func NewCSV(w io.Writer, inputHeader []string) (*CSV, error) {
	return NewCSVOf[Result](w, inputHeader)
}

// NewCSVOf is NewCSV for any kind of row.
func NewCSVOf[T Row[T]](w io.Writer, inputHeader []string) (*CSVOf[T], error) {
	return newCSV[T](w, inputHeader, true)
}

// AppendCSVOf continues a CSV file that already has its header, as after
// Recover.
func AppendCSVOf[T Row[T]](w io.Writer, inputHeader []string) (*CSVOf[T], error) {
	return newCSV[T](w, inputHeader, false)
}

// CSVHeader is the header line a CSV writer of T writes after inputHeader.
func CSVHeader[T Row[T]](inputHeader []string) []string {
	cols := Columns[T]()
	return append(fitFields(inputHeader, len(inputHeader), len(cols)), cols...)
}

func newCSV[T Row[T]](w io.Writer, inputHeader []string, writeHeader bool) (*CSVOf[T], error) {
	cw := csv.NewWriter(w)
	cols := Columns[T]()
	if writeHeader {
		if err := cw.Write(CSVHeader[T](inputHeader)); err != nil {
			return nil, fmt.Errorf("output: writing CSV header: %w", err)
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return nil, fmt.Errorf("output: writing CSV header: %w", err)
		}
	}

	row := &prefixWriter{cw: cw}
	enc := csvutil.NewEncoder(row)
	enc.AutoHeader = false // the header above already names these columns
	enc.WithMarshalers(csvutil.MarshalFunc(func(t time.Time) ([]byte, error) {
		return t.UTC().AppendFormat(nil, time.RFC3339), nil
	}))
	return &CSVOf[T]{cw: cw, enc: enc, row: row, width: len(inputHeader), extra: len(cols)}, nil
}

// Columns returns the column names of T in the order they are written.
func Columns[T any]() []string {
	var zero T
	cols, err := csvutil.Header(zero, "csv")
	if err != nil {
		panic("output: row type without csv tags: " + err.Error()) // a programming error, caught by tests
	}
	return cols
}

// Write writes one row: inputFields padded with "" or cut to the input header's
// length, then r with its server text sanitized.
func (c *CSVOf[T]) Write(inputFields []string, r T) error {
	c.row.prefix = fitFields(inputFields, c.width, c.extra)
	if err := c.enc.Encode(r.clean()); err != nil {
		return fmt.Errorf("output: writing CSV row %d: %w", r.rowNumber(), err)
	}
	return nil
}

// Flush writes buffered rows to the underlying writer.
func (c *CSVOf[T]) Flush() error {
	c.cw.Flush()
	if err := c.cw.Error(); err != nil {
		return fmt.Errorf("output: flushing CSV: %w", err)
	}
	return nil
}
