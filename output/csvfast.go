package output

import (
	"bufio"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// A verify run writes one Result per input row, millions of them: csvutil's
// reflection, a []string per row and encoding/csv's copies were a good part
// of a run's CPU. Result rows are encoded here instead, field by field
// straight into the buffered writer, with exactly encoding/csv's quoting
// (TestFastCSVMatchesCSVUtil holds the two to the same bytes). Other row
// kinds (find's) go through csvutil.

// fastCSV encodes Result rows.
type fastCSV struct {
	bw          *bufio.Writer
	formulaSafe bool
	num         []byte
	// The time of the previous row, formatted: rows decided in the same
	// second share it.
	lastTime time.Time
	lastText []byte
	started  bool   // a cell of the line has been written
	line     []byte // the line being encoded
}

// write encodes r, which it cleans in place (its caller's copy).
func (f *fastCSV) write(inputFields []string, width int, r *Result) error {
	cleanServerText(&r.SMTPMessage, &r.MXHost, &r.EnhancedCode, &r.CheckedAt)
	f.started = false
	f.line = f.line[:0]
	for i := range width {
		field := ""
		if i < len(inputFields) {
			field = inputFields[i]
		}
		f.str(field)
	}
	f.num = strconv.AppendInt(f.num[:0], int64(r.Row), 10)
	f.raw(f.num)
	f.str(r.Email)
	f.str(r.Status)
	f.str(r.Reason)
	if r.SMTPCode != 0 {
		f.num = strconv.AppendInt(f.num[:0], int64(r.SMTPCode), 10)
		f.raw(f.num)
	} else {
		f.str("")
	}
	f.str(r.EnhancedCode)
	f.str(r.SMTPMessage)
	f.str(r.MXHost)
	f.raw(triText(r.CatchAll))
	f.raw(triText(r.TLS))
	f.num = strconv.AppendInt(f.num[:0], int64(r.Attempts), 10)
	f.raw(f.num)
	if !r.CheckedAt.Equal(f.lastTime) || f.lastText == nil {
		f.lastTime = r.CheckedAt
		f.lastText = r.CheckedAt.UTC().AppendFormat(f.lastText[:0], time.RFC3339)
	}
	f.raw(f.lastText)
	f.str(r.Provider)
	f.str(r.Egress)
	f.raw(boolText(r.Disposable))
	f.raw(boolText(r.Free))
	f.raw(boolText(r.Role))
	f.str(r.TypoSuggestion)
	f.str(r.Source)
	f.line = append(f.line, '\n')
	_, err := f.bw.Write(f.line)
	if cap(f.line) > 1<<16 {
		f.line = nil // a huge row: do not keep its buffer
	}
	return err
}

func triText(b *bool) []byte {
	if b == nil {
		return nil
	}
	return boolText(*b)
}

func boolText(b bool) []byte {
	if b {
		return []byte("true")
	}
	return []byte("false")
}

func (f *fastCSV) sep() {
	if f.started {
		f.line = append(f.line, ',')
	}
	f.started = true
}

// raw writes a cell that never needs quoting or escaping (digits, a time,
// true or false).
func (f *fastCSV) raw(b []byte) {
	f.sep()
	f.line = append(f.line, b...)
}

// str writes one cell as encoding/csv would (Comma ',', no CRLF), with
// FormulaSafe's escaping first when it is on.
func (f *fastCSV) str(s string) {
	f.sep()
	if s == "" {
		return
	}
	if plainCell(s) && !(f.formulaSafe && formulaLead(s[0])) {
		f.line = append(f.line, s...)
		return
	}
	prefix := false
	if f.formulaSafe {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			prefix = true
		}
	}
	quote := needsQuotes(s)
	if prefix {
		// The cell is "'" + s: no longer led by a space, nor `\.`.
		quote = hasSpecial(s)
	}
	if !quote {
		if prefix {
			f.line = append(f.line, '\'')
		}
		f.line = append(f.line, s...)
		return
	}
	f.line = append(f.line, '"')
	if prefix {
		f.line = append(f.line, '\'')
	}
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '"' {
			i++
		}
		f.line = append(f.line, s[:i]...)
		if i < len(s) {
			f.line = append(f.line, `""`...)
			i++
		}
		s = s[i:]
	}
	f.line = append(f.line, '"')
}

// needsQuotes is encoding/csv's fieldNeedsQuotes for Comma ','.
func needsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` {
		return true
	}
	if hasSpecial(field) {
		return true
	}
	r1, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r1)
}

// hasSpecial reports whether s holds a byte that makes a cell quoted.
func hasSpecial(s string) bool {
	for i := 0; i < len(s); i++ {
		if special[s[i]] {
			return true
		}
	}
	return false
}

var special = [256]bool{'\n': true, '\r': true, '"': true, ',': true}

// formulaLead: a cell starting with c gets FormulaSafe's "'".
func formulaLead(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// writeFastCSV is how a Result writes itself through fastCSV; the other
// row kinds go through csvutil.
func (r Result) writeFastCSV(f *fastCSV, fields []string, width int) (bool, error) {
	return true, f.write(fields, width, &r)
}
