package input

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

const bom = "\uFEFF"

// HeaderError reasons.
const (
	HeaderEmpty          = "empty"             // no header line at all
	HeaderNoColumn       = "no_address_column" // auto-detection found nothing
	HeaderColumnNotFound = "column_not_found"  // Options.Column is not in the header
)

// autoColumns are the header names accepted for the address column, in
// priority order: a file with both "mail" and "email" uses "email".
func autoColumns() []string {
	return []string{"email", "e-mail", "address", "email_address", "email address", "mail"}
}

// Options controls how the CSV is read.
type Options struct {
	Column string   // explicit column name to use for addresses (case-insensitive); "" = auto-detect
	Comma  rune     // field separator, 0 = ','
	Names  []string // names auto-detection looks for, in priority order; nil = the address column names
	What   string   // what that column holds, for error messages; "" = address
}

// HeaderError means the header has no usable address column, or the file has
// no header at all.
type HeaderError struct {
	Header   []string // as read, BOM removed; nil for an empty file
	Reason   string   // HeaderEmpty, HeaderNoColumn or HeaderColumnNotFound
	Column   string   // the column asked for in Options.Column, if any
	Accepted []string // the names auto-detection looked for
	What     string   // what the missing column holds, for the message; "" = address
}

func (e *HeaderError) Error() string {
	var b strings.Builder
	switch e.Reason {
	case HeaderEmpty:
		return "input has no header line (the file is empty)"
	case HeaderColumnNotFound:
		fmt.Fprintf(&b, "column %q not found in the header", clip(e.Column, 80))
	default:
		what := e.What
		if what == "" {
			what = "address"
		}
		fmt.Fprintf(&b, "no %s column in the header", what)
	}
	b.WriteString("; columns found: ")
	writeNames(&b, e.Header)
	if e.Reason != HeaderColumnNotFound {
		accepted := e.Accepted
		if accepted == nil {
			accepted = autoColumns()
		}
		fmt.Fprintf(&b, "; accepted names (any case): %s; or name the column explicitly",
			strings.Join(accepted, ", "))
	}
	for _, h := range e.Header {
		if _, err := ParseAddress(h); err == nil {
			b.WriteString(" (the first line holds an address: the file seems to have no header line)")
			break
		}
	}
	return b.String()
}

// writeNames lists header names for a message, bounded because a hostile or
// mistaken file can have thousands of huge "names".
func writeNames(b *strings.Builder, names []string) {
	const maxNames = 20
	if len(names) == 0 {
		b.WriteString("none")
		return
	}
	for i, n := range names {
		if i == maxNames {
			fmt.Fprintf(b, ", … and %d more", len(names)-maxNames)
			return
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q", clip(n, 40))
	}
}

// ParseError reports malformed CSV, e.g. a stray quote.
type ParseError struct {
	Line int   // line in the file where the error was found
	Err  error // usually a *csv.ParseError
}

func (e *ParseError) Error() string {
	var pe *csv.ParseError
	if errors.As(e.Err, &pe) {
		msg := fmt.Sprintf("malformed CSV at line %d, byte %d of the line: %v", e.Line, pe.Column, pe.Err)
		if pe.StartLine != 0 && pe.StartLine != e.Line {
			msg += fmt.Sprintf(" (in the record that starts at line %d)", pe.StartLine)
		}
		return msg
	}
	return fmt.Sprintf("malformed CSV at line %d: %v", e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Record is one data row of the input.
type Record struct {
	Row  int // 1-based data row (header excluded)
	Line int // line in the file where the record starts
	// Fields are the raw fields, untouched. Their array is cut from a
	// block shared with the records read about this one (csvReader), so
	// holding Fields holds those records' text too: a caller that keeps
	// some records and lets most go copies the Fields it keeps.
	Fields []string
	Email  string // raw value of the address column ("" when the row is too short to have it)
	Ragged bool   // field count differs from the header's
}

// Reader reads records from a CSV file with a header line. It is not safe for
// concurrent use.
type Reader struct {
	csv    *csvReader
	header []string
	col    int
	row    int
	err    error // sticky: once the file is found broken, it stays broken
}

// NewReader reads the header and picks the address column: opts.Column if set,
// else the first of "email", "e-mail", "address", "email_address",
// "email address", "mail" present (case-insensitive, surrounding white space
// ignored). A UTF-8 BOM at the start of the file is dropped. A missing header
// or address column is a *HeaderError, malformed CSV a *ParseError.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	comma := opts.Comma
	if comma == 0 {
		comma = ','
	}
	if !validComma(comma) {
		return nil, fmt.Errorf("input: invalid field separator %q", comma)
	}

	br := bufio.NewReaderSize(r, 64<<10)
	// Drop the BOM before encoding/csv sees it: a BOM followed by a quoted first
	// field would otherwise be a bare-quote error.
	b, err := br.Peek(len(bom))
	switch {
	case err == nil && string(b) == bom:
		if _, err := br.Discard(len(bom)); err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
	case err != nil && err != io.EOF:
		return nil, fmt.Errorf("input: reading header: %w", err)
	}

	// encoding/csv's reading, with ragged rows allowed (they are the
	// caller's to report, per row) and each record in memory of its own
	// (Records are handed to other goroutines).
	cr := newCSVReader(br, comma)

	header, _, err := cr.read()
	if err == io.EOF {
		return nil, &HeaderError{Reason: HeaderEmpty, Column: opts.Column}
	}
	if err != nil {
		return nil, wrapReadErr(err)
	}
	header[0] = strings.TrimPrefix(header[0], bom)

	names := opts.Names
	if names == nil {
		names = autoColumns()
	}
	if w := strings.TrimSpace(opts.Column); w != "" {
		names = []string{w}
	}
	col := findColumn(header, names...)
	if col < 0 {
		reason := HeaderNoColumn
		if strings.TrimSpace(opts.Column) != "" {
			reason = HeaderColumnNotFound
		}
		return nil, &HeaderError{Header: header, Reason: reason, Column: opts.Column, Accepted: opts.Names, What: opts.What}
	}
	return &Reader{csv: cr, header: header, col: col}, nil
}

func validComma(r rune) bool {
	return r != '"' && r != '\r' && r != '\n' && utf8.ValidRune(r) && r != utf8.RuneError
}

// findColumn returns the index of the first of names in header
// (case-insensitive, surrounding white space ignored), or -1.
func findColumn(header []string, names ...string) int {
	for _, name := range names {
		for i, h := range header {
			if strings.EqualFold(strings.TrimSpace(h), name) {
				return i
			}
		}
	}
	return -1
}

func wrapReadErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &ParseError{Line: pe.Line, Err: pe}
	}
	return fmt.Errorf("input: %w", err)
}

// Header returns (a copy of) the header as in the file, BOM removed from the
// first name.
func (r *Reader) Header() []string { return slices.Clone(r.header) }

// Column returns the index of the address column.
func (r *Reader) Column() int { return r.col }

// Lookup returns the index of the first of names in the header
// (case-insensitive), or -1: for readers of other columns than the address.
func (r *Reader) Lookup(names ...string) int { return findColumn(r.header, names...) }

// Next returns the next record, io.EOF at the end, or a *ParseError for
// malformed CSV. After an error every later call returns the same error: a
// malformed file is reported, not half-read.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	fields, line, err := r.csv.read()
	if err != nil {
		if err != io.EOF {
			err = wrapReadErr(err)
		}
		r.err = err
		return Record{}, err
	}
	r.row++
	rec := Record{
		Row:    r.row,
		Line:   line,
		Fields: fields,
		Ragged: len(fields) != len(r.header),
	}
	if r.col < len(fields) {
		rec.Email = fields[r.col]
	}
	return rec, nil
}
