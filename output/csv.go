package output

import (
	"bufio"
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
	// writeFastCSV writes the row without csvutil, if its kind can
	// (csvfast.go); false when it cannot.
	writeFastCSV(f *fastCSV, inputFields []string, width int) (bool, error)
}

// CSV writes results as CSV: the input columns, then ResultColumns.
type CSV = CSVOf[Result]

// CSVOf writes rows of T as CSV: the input columns, then T's columns.
type CSVOf[T Row[T]] struct {
	cw    *csv.Writer
	enc   *csvutil.Encoder
	row   *prefixWriter
	fast  *fastCSV
	width int
	extra int
}

// prefixWriter lets csvutil encode the result columns while the input fields
// go in front of them on the same CSV line.
type prefixWriter struct {
	cw          *csv.Writer
	prefix      []string
	formulaSafe bool
}

func (p *prefixWriter) Write(record []string) error {
	line := append(p.prefix, record...)
	if p.formulaSafe {
		escapeFormulas(line)
	}
	return p.cw.Write(line)
}

// CSVOption changes how a CSV writer writes.
type CSVOption func(*csvOptions)

type csvOptions struct {
	formulaSafe bool
}

// FormulaSafe makes every cell safe to open in a spreadsheet, the input's
// columns and the probed address included: a cell that starts with = + - @
// TAB or CR gets a leading ' (OWASP's advice against CSV injection), so
// "=cmd|calc@corp.test" is written "'=cmd|calc@corp.test". Without it only
// the server's text is escaped, and everything else is written exactly as
// it is, for import into mail platforms and suppression lists.
func FormulaSafe() CSVOption { return func(o *csvOptions) { o.formulaSafe = true } }

// escapeFormulas prefixes with ' every cell a spreadsheet would evaluate.
func escapeFormulas(cells []string) {
	for i, c := range cells {
		if c == "" {
			continue
		}
		switch c[0] {
		case '=', '+', '-', '@', '\t', '\r':
			cells[i] = "'" + c
		}
	}
}

// NewCSV writes the header (inputHeader followed by ResultColumns) to w at once,
// so an interrupted run still leaves a well-formed file.
func NewCSV(w io.Writer, inputHeader []string, opts ...CSVOption) (*CSV, error) {
	return NewCSVOf[Result](w, inputHeader, opts...)
}

// NewCSVOf is NewCSV for any kind of row.
func NewCSVOf[T Row[T]](w io.Writer, inputHeader []string, opts ...CSVOption) (*CSVOf[T], error) {
	return newCSV[T](w, inputHeader, true, opts)
}

// AppendCSVOf continues a CSV file that already has its header, as after
// Recover.
func AppendCSVOf[T Row[T]](w io.Writer, inputHeader []string, opts ...CSVOption) (*CSVOf[T], error) {
	return newCSV[T](w, inputHeader, false, opts)
}

// CSVHeader is the header line a CSV writer of T writes: inputHeader, then
// T's columns, each renamed by ResultColumnNames where the input already has
// a column of that name.
func CSVHeader[T Row[T]](inputHeader []string, opts ...CSVOption) []string {
	cols := ResultColumnNames(inputHeader, Columns[T]())
	header := append(fitFields(inputHeader, len(inputHeader), len(cols)), cols...)
	if applyOptions(opts).formulaSafe {
		escapeFormulas(header)
	}
	return header
}

func applyOptions(opts []CSVOption) csvOptions {
	var o csvOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// ResultColumnNames returns cols with every name that is already taken, by
// an input column or by a column renamed before it, prefixed with
// "result_" (again, until it is free), so a header never repeats a name:
// an input "email" column stays "email" and the probed address is written
// as "result_email". Tools that key rows by column name (pandas,
// csv.DictReader, spreadsheets' lookups) would otherwise rename or drop one.
func ResultColumnNames(inputHeader, cols []string) []string {
	taken := make(map[string]bool, len(inputHeader)+len(cols))
	for _, h := range inputHeader {
		taken[h] = true
	}
	// A renamed column must not take the name of another result column.
	reserved := make(map[string]bool, len(cols))
	for _, c := range cols {
		reserved[c] = true
	}
	out := make([]string, len(cols))
	for i, c := range cols {
		name := c
		for taken[name] || (name != c && reserved[name]) {
			name = "result_" + name
		}
		taken[name] = true
		out[i] = name
	}
	return out
}

func newCSV[T Row[T]](w io.Writer, inputHeader []string, writeHeader bool, opts []CSVOption) (*CSVOf[T], error) {
	o := applyOptions(opts)
	// csv.NewWriter keeps a *bufio.Writer of this size as it is: the fast
	// encoder writes into the same buffer, in order.
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	cols := Columns[T]()
	if writeHeader {
		if err := cw.Write(CSVHeader[T](inputHeader, opts...)); err != nil {
			return nil, fmt.Errorf("output: writing CSV header: %w", err)
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return nil, fmt.Errorf("output: writing CSV header: %w", err)
		}
	}

	row := &prefixWriter{cw: cw, formulaSafe: o.formulaSafe}
	enc := csvutil.NewEncoder(row)
	enc.AutoHeader = false // the header above already names these columns
	enc.WithMarshalers(csvutil.MarshalFunc(func(t time.Time) ([]byte, error) {
		return t.UTC().AppendFormat(nil, time.RFC3339), nil
	}))
	return &CSVOf[T]{cw: cw, enc: enc, row: row, fast: &fastCSV{bw: bw, formulaSafe: o.formulaSafe}, width: len(inputHeader), extra: len(cols)}, nil
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
	if done, err := r.writeFastCSV(c.fast, inputFields, c.width); done {
		if err != nil {
			return fmt.Errorf("output: writing CSV row %d: %w", r.rowNumber(), err)
		}
		return nil
	}
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
