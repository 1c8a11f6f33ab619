package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// JSONL writes results as JSON Lines: one object per input row,
// {"input": {column: value, ...}, "row": ..., "email": ..., ...}.
type JSONL = JSONLOf[Result]

// JSONLOf writes rows of T as JSON Lines, T's fields next to "input".
type JSONLOf[T Row[T]] struct {
	w    *bufio.Writer
	keys []string // input object keys, unique
	buf  bytes.Buffer
	enc  *json.Encoder
}

// inputObject marshals as a JSON object whose keys keep the header's order.
type inputObject struct {
	keys, vals []string
}

// NewJSONL returns a writer of JSON Lines to w. JSON object keys must be unique,
// so an empty or repeated header name becomes name_N (column_N when empty),
// N being its 1-based column.
func NewJSONL(w io.Writer, inputHeader []string) (*JSONL, error) {
	return NewJSONLOf[Result](w, inputHeader)
}

// NewJSONLOf is NewJSONL for any kind of row.
func NewJSONLOf[T Row[T]](w io.Writer, inputHeader []string) (*JSONLOf[T], error) {
	j := &JSONLOf[T]{w: bufio.NewWriter(w), keys: uniqueKeys(inputHeader)}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false) // addresses like <a@b> stay readable
	return j, nil
}

func uniqueKeys(header []string) []string {
	seen := make(map[string]bool, len(header))
	keys := make([]string, len(header))
	for i, h := range header {
		k := h
		if k == "" || seen[k] {
			base := h
			if base == "" {
				base = "column"
			}
			k = base + "_" + strconv.Itoa(i+1)
			for seen[k] {
				k += "_"
			}
		}
		seen[k] = true
		keys[i] = k
	}
	return keys
}

// Write writes one line: the input fields (padded with "" or cut to the
// header's length) under "input", then r with its server text sanitized.
func (j *JSONLOf[T]) Write(inputFields []string, r T) error {
	input, err := inputObject{keys: j.keys, vals: fitFields(inputFields, len(j.keys), 0)}.MarshalJSON()
	if err != nil {
		return fmt.Errorf("output: encoding JSON row %d: %w", r.rowNumber(), err)
	}
	j.buf.Reset()
	// The row's own object, with "input" spliced in as its first member.
	if err := j.enc.Encode(r.clean()); err != nil { // Encode ends the line with \n
		return fmt.Errorf("output: encoding JSON row %d: %w", r.rowNumber(), err)
	}
	rest := j.buf.Bytes()[1:] // after the opening brace
	if _, err := fmt.Fprintf(j.w, `{"input":%s`, input); err != nil {
		return fmt.Errorf("output: writing JSON row %d: %w", r.rowNumber(), err)
	}
	if len(rest) > 2 { // not an empty object "}\n"
		j.w.WriteByte(',')
	}
	if _, err := j.w.Write(rest); err != nil {
		return fmt.Errorf("output: writing JSON row %d: %w", r.rowNumber(), err)
	}
	return nil
}

// Flush writes buffered lines to the underlying writer.
func (j *JSONLOf[T]) Flush() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("output: flushing JSON Lines: %w", err)
	}
	return nil
}

func (o inputObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	str := func(s string) error {
		if err := enc.Encode(s); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // drop Encode's newline
		return nil
	}
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := str(k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := str(o.vals[i]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
