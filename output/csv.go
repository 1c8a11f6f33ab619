package output

import (
	"encoding/csv"
	"fmt"
	"io"
	"time"

	"github.com/jszwec/csvutil"
)

// CSV writes results as CSV: the input columns, then ResultColumns.
type CSV struct {
	cw    *csv.Writer
	enc   *csvutil.Encoder
	row   *prefixWriter
	width int
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
	cw := csv.NewWriter(w)
	header := append(fitFields(inputHeader, len(inputHeader), len(ResultColumns())), ResultColumns()...)
	if err := cw.Write(header); err != nil {
		return nil, fmt.Errorf("output: writing CSV header: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return nil, fmt.Errorf("output: writing CSV header: %w", err)
	}

	row := &prefixWriter{cw: cw}
	enc := csvutil.NewEncoder(row)
	enc.AutoHeader = false // the header above already names these columns
	enc.WithMarshalers(csvutil.MarshalFunc(func(t time.Time) ([]byte, error) {
		return t.UTC().AppendFormat(nil, time.RFC3339), nil
	}))
	return &CSV{cw: cw, enc: enc, row: row, width: len(inputHeader)}, nil
}

// Write writes one row: inputFields padded with "" or cut to the input header's
// length, then r with its server text sanitized.
func (c *CSV) Write(inputFields []string, r Result) error {
	c.row.prefix = fitFields(inputFields, c.width, len(ResultColumns()))
	if err := c.enc.Encode(sanitized(r)); err != nil {
		return fmt.Errorf("output: writing CSV row %d: %w", r.Row, err)
	}
	return nil
}

// Flush writes buffered rows to the underlying writer.
func (c *CSV) Flush() error {
	c.cw.Flush()
	if err := c.cw.Error(); err != nil {
		return fmt.Errorf("output: flushing CSV: %w", err)
	}
	return nil
}
