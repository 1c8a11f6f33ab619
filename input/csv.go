package input

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"io"
	"unicode/utf8"
)

// csvReader reads CSV records exactly as encoding/csv's Reader does with
// FieldsPerRecord -1, strict quotes, no comment character and no trimming
// (the settings Reader uses): the same fields, the same line numbers, the
// same *csv.ParseError (TestCSVReaderMatchesEncodingCSV holds the two to
// it). What it does differently is allocate: a list of a million rows is
// read into one string per record, as encoding/csv does, but the records'
// field slices are cut from shared blocks instead of allocated one by one,
// which halves the allocations of reading and spares the garbage
// collector a million small objects to mark.
type csvReader struct {
	r       *bufio.Reader
	comma   rune
	numLine int

	rawBuffer    []byte   // a line longer than r's buffer
	recordBuffer []byte   // the fields of the record being read, unquoted
	fieldIndexes []int    // where each field ends in recordBuffer
	fields       []string // free slots the next records' fields are cut from
}

// fieldsBlock is how many field slots are allocated at once.
const fieldsBlock = 1024

func newCSVReader(r *bufio.Reader, comma rune) *csvReader {
	return &csvReader{r: r, comma: comma}
}

// readLine is encoding/csv's: the next line with "\r\n" made "\n", and a
// "\r" before the end of the input dropped.
func (r *csvReader) readLine() ([]byte, error) {
	line, err := r.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.rawBuffer = append(r.rawBuffer[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = r.r.ReadSlice('\n')
			r.rawBuffer = append(r.rawBuffer, line...)
		}
		line = r.rawBuffer
	}
	readSize := len(line)
	if readSize > 0 && err == io.EOF {
		err = nil
		if line[readSize-1] == '\r' {
			line = line[:readSize-1]
		}
	}
	r.numLine++
	if n := len(line); n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
		line[n-2] = '\n'
		line = line[:n-1]
	}
	return line, err
}

func lengthNL(b []byte) int {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return 1
	}
	return 0
}

func nextRune(b []byte) rune {
	r, _ := utf8.DecodeRune(b)
	return r
}

// read returns the next record and the line it starts on; io.EOF at the
// end. Its parsing is encoding/csv's readRecord, step for step, without the
// branches of the settings Reader does not use.
func (r *csvReader) read() ([]string, int, error) {
	var line []byte
	var errRead error
	for errRead == nil {
		line, errRead = r.readLine()
		if errRead == nil && len(line) == lengthNL(line) {
			line = nil
			continue // empty lines are skipped
		}
		break
	}
	if errRead == io.EOF {
		return nil, 0, errRead
	}

	var err error
	const quoteLen = len(`"`)
	commaLen := utf8.RuneLen(r.comma)
	recLine := r.numLine
	r.recordBuffer = r.recordBuffer[:0]
	r.fieldIndexes = r.fieldIndexes[:0]
	posLine, posCol := r.numLine, 1
parseField:
	for {
		if len(line) == 0 || line[0] != '"' {
			// Non-quoted field.
			i := indexComma(line, r.comma)
			field := line
			if i >= 0 {
				field = field[:i]
			} else {
				field = field[:len(field)-lengthNL(field)]
			}
			if j := bytes.IndexByte(field, '"'); j >= 0 {
				err = &csv.ParseError{StartLine: recLine, Line: r.numLine, Column: posCol + j, Err: csv.ErrBareQuote}
				break parseField
			}
			r.recordBuffer = append(r.recordBuffer, field...)
			r.fieldIndexes = append(r.fieldIndexes, len(r.recordBuffer))
			if i >= 0 {
				line = line[i+commaLen:]
				posCol += i + commaLen
				continue parseField
			}
			break parseField
		}
		// Quoted field.
		line = line[quoteLen:]
		posCol += quoteLen
		for {
			i := bytes.IndexByte(line, '"')
			switch {
			case i >= 0:
				r.recordBuffer = append(r.recordBuffer, line[:i]...)
				line = line[i+quoteLen:]
				posCol += i + quoteLen
				switch rn := nextRune(line); {
				case rn == '"':
					r.recordBuffer = append(r.recordBuffer, '"')
					line = line[quoteLen:]
					posCol += quoteLen
				case rn == r.comma:
					line = line[commaLen:]
					posCol += commaLen
					r.fieldIndexes = append(r.fieldIndexes, len(r.recordBuffer))
					continue parseField
				case lengthNL(line) == len(line):
					r.fieldIndexes = append(r.fieldIndexes, len(r.recordBuffer))
					break parseField
				default:
					err = &csv.ParseError{StartLine: recLine, Line: r.numLine, Column: posCol - quoteLen, Err: csv.ErrQuote}
					break parseField
				}
			case len(line) > 0:
				// The field goes on on the next line.
				r.recordBuffer = append(r.recordBuffer, line...)
				if errRead != nil {
					break parseField
				}
				posCol += len(line)
				line, errRead = r.readLine()
				if len(line) > 0 {
					posLine++
					posCol = 1
				}
				if errRead == io.EOF {
					errRead = nil
				}
			default:
				// Abrupt end of the input inside quotes.
				if errRead == nil {
					err = &csv.ParseError{StartLine: recLine, Line: posLine, Column: posCol, Err: csv.ErrQuote}
					break parseField
				}
				r.fieldIndexes = append(r.fieldIndexes, len(r.recordBuffer))
				break parseField
			}
		}
	}
	if err == nil {
		err = errRead
	}
	if err != nil {
		return nil, 0, err // Reader keeps no part of a record that failed
	}

	// One string for the record, and the fields cut from it.
	str := string(r.recordBuffer)
	n := len(r.fieldIndexes)
	if len(r.fields) < n {
		r.fields = make([]string, max(fieldsBlock, n))
	}
	dst := r.fields[:n:n]
	r.fields = r.fields[n:]
	pre := 0
	for i, idx := range r.fieldIndexes {
		dst[i] = str[pre:idx]
		pre = idx
	}
	return dst, recLine, nil
}

// indexComma is bytes.IndexRune for the separator: a byte search for the
// common one-byte separators.
func indexComma(line []byte, comma rune) int {
	if comma < utf8.RuneSelf {
		return bytes.IndexByte(line, byte(comma))
	}
	return bytes.IndexRune(line, comma)
}
