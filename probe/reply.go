package probe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is one SMTP reply (RFC 5321 §4.2), possibly multi-line.
type Reply struct {
	Code int // e.g. 250
	// Enhanced is the RFC 3463 enhanced status code such as "5.1.1", or "" if
	// absent. It is taken from where servers put it: at the start of a line
	// (RFC 2034), or, on a reply with none there, inside the text after a
	// "#" as qmail and Cisco write it ("(#5.1.1)", "(#5.1.1 - chkuser)",
	// "550 #5.1.0 Address rejected"). It is only recognised when its class
	// digit equals the first digit of Code, so free text like "2.0 ready" or
	// "(#4.3.0)" on a 5xx reply is left alone.
	Enhanced string
	// Lines holds the text of each line without the code, separator and
	// line ending, and without a leading RFC 2034 code equal to Enhanced
	// (stripped from every line that carries it). A code found inside the
	// text stays there: the text is what the server said. A reply always has
	// at least one line; a bare "250" gives [""].
	Lines []string
}

// Text returns the lines joined with a single space.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// String renders the reply on one line, e.g. "550 5.1.1 no such user".
func (r Reply) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if t := r.Text(); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	return b.String()
}

// Positive reports a 2xx reply.
func (r Reply) Positive() bool { return r.Code/100 == 2 }

// Transient reports a 4xx reply.
func (r Reply) Transient() bool { return r.Code/100 == 4 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code/100 == 5 }

// ProtocolError reports a reply the client refuses to accept: malformed, too
// long, too many lines, or inconsistent codes in one multi-line reply.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "probe: SMTP protocol error: " + e.Reason }

// ParseReply parses text as one complete SMTP reply, the way a session reads
// one off the wire: lines separated by "\n" or "\r\n", each "ddd-text",
// "ddd text" or "ddd", bounded by the default MaxLineLength and
// MaxReplyLines. It is for replies that did not come off a connection: a
// user's copy of one, a test's. Anything after the reply's last line, or
// a malformed line, is a *ProtocolError.
func ParseReply(text string) (Reply, error) {
	if strings.TrimSpace(text) == "" {
		return Reply{}, &ProtocolError{Reason: "empty reply"}
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	br := bufio.NewReader(strings.NewReader(text))
	r, err := readReply(br, defaultMaxLineLength, defaultMaxReplyLines, nil)
	switch {
	case errors.Is(err, io.EOF):
		return Reply{}, &ProtocolError{Reason: "empty reply"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Reply{}, &ProtocolError{Reason: "the last line says more lines follow (\"ddd-\")"}
	case err != nil:
		return Reply{}, err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return Reply{}, &ProtocolError{Reason: "text after the reply's last line (\"ddd \")"}
	}
	return r, nil
}

// readReply reads one complete reply from br. maxLine bounds each line in
// bytes including its line ending and maxLines bounds the number of lines;
// exceeding either is a *ProtocolError, detected without holding more than
// maxLine bytes of the offending line. trace, if non-nil, sees every line as
// received minus its line ending, before it is validated.
//
// An EOF before the first byte is returned as io.EOF; inside a reply it is
// io.ErrUnexpectedEOF.
func readReply(br *bufio.Reader, maxLine, maxLines int, trace func(line []byte)) (Reply, error) {
	var scratch []byte
	return readReplyInto(br, maxLine, maxLines, trace, &scratch, nil)
}

// readReplyInto is readReply reading lines into *scratch (which it may
// grow, and which holds nothing of the reply afterwards) and keeping the
// reply's lines in lines (len 0; appended to, so a reply of more lines
// than its capacity gets a slice of its own): a session reading thousands
// of replies allocates little per reply.
func readReplyInto(br *bufio.Reader, maxLine, maxLines int, trace func(line []byte), scratch *[]byte, lines []string) (Reply, error) {
	r := Reply{Lines: lines}
	for n := 1; ; n++ {
		line, err := readLine(br, maxLine, (*scratch)[:0])
		if err != nil {
			if err == io.EOF && n > 1 {
				err = io.ErrUnexpectedEOF
			}
			return Reply{}, err
		}
		*scratch = line
		if trace != nil {
			trace(line)
		}
		code, more, text, err := parseLine(line)
		if err != nil {
			return Reply{}, err
		}
		if n == 1 {
			r.Code = code
		} else if code != r.Code {
			return Reply{}, &ProtocolError{Reason: fmt.Sprintf("reply line %d has code %d, expected %d", n, code, r.Code)}
		}
		r.Lines = append(r.Lines, text)
		if !more {
			break
		}
		if n >= maxLines {
			return Reply{}, &ProtocolError{Reason: fmt.Sprintf("reply longer than %d lines", maxLines)}
		}
	}
	stripEnhanced(&r)
	return r, nil
}

// readLine returns the next line without its LF and an optional CR before it.
// It appends to buf, which it never grows beyond max bytes, so a hostile
// server cannot make the client buffer an endless line.
func readLine(br *bufio.Reader, max int, buf []byte) ([]byte, error) {
	line := buf
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, &ProtocolError{Reason: fmt.Sprintf("reply line longer than %d bytes", max)}
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// parseLine splits "ddd-text", "ddd text" or "ddd" into its parts.
func parseLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, "", &ProtocolError{Reason: fmt.Sprintf("malformed reply line %q", truncate(line, 64))}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		more = true
	case ' ':
	default:
		return 0, false, "", &ProtocolError{Reason: fmt.Sprintf("malformed reply line %q", truncate(line, 64))}
	}
	return code, more, string(line[4:]), nil
}

// stripEnhanced finds the enhanced status code and removes it, with the
// single space after it, from every line that starts with that same code. A
// code at the start of a line (the first such line wins) is preferred to one
// inside the text, which is only looked for when no line starts with one and
// is left in place.
func stripEnhanced(r *Reply) {
	class := byte('0' + r.Code/100)
	for _, l := range r.Lines {
		if n := enhancedLen(l, class); n > 0 {
			r.Enhanced = l[:n]
			break
		}
	}
	if r.Enhanced == "" {
		r.Enhanced = embeddedEnhanced(r.Lines, class)
		return
	}
	for i, l := range r.Lines {
		if n := enhancedLen(l, class); n > 0 && l[:n] == r.Enhanced {
			l = l[n:]
			if l != "" { // enhancedLen guarantees a space here
				l = l[1:]
			}
			r.Lines[i] = l
		}
	}
}

// enhancedLen returns the length of an RFC 3463 code (class "." 1*3digit "."
// 1*3digit) at the start of s whose class is the given digit and which is
// followed by a space or the end of s, or 0 if there is none.
func enhancedLen(s string, class byte) int {
	i := codeLen(s, class)
	if i == 0 || i < len(s) && s[i] != ' ' {
		return 0
	}
	return i
}

// embeddedEnhanced returns the first code written inside the text after a
// "#" (qmail's "(#5.1.1)", chkuser's "(#5.1.1 - chkuser)", Cisco's
// "#5.1.0 Address rejected") whose class is the given digit, or "".
func embeddedEnhanced(lines []string, class byte) string {
	for _, l := range lines {
		for i := 0; i < len(l); i++ {
			if l[i] != '#' {
				continue
			}
			rest := l[i+1:]
			n := codeLen(rest, class)
			if n == 0 {
				continue
			}
			// The code must end there: "#5.1.1.2" or "#5.1.10x" is
			// something else. A full stop ending a sentence may follow.
			if n < len(rest) {
				next := rest[n]
				if isDigit(next) || isLetter(next) || next == '.' && n+1 < len(rest) && isDigit(rest[n+1]) {
					continue
				}
			}
			return rest[:n]
		}
	}
	return ""
}

// codeLen returns the length of "class.d{1,3}.d{1,3}" at the start of s, or
// 0. It is enhancedLen without the rule about what follows.
func codeLen(s string, class byte) int {
	if len(s) < 5 || s[0] != class || s[1] != '.' {
		return 0
	}
	i := 2
	n := digits(s[i:])
	if n < 1 || n > 3 {
		return 0
	}
	i += n
	if i >= len(s) || s[i] != '.' {
		return 0
	}
	i++
	n = digits(s[i:])
	if n < 1 || n > 3 {
		return 0
	}
	return i + n
}

func isLetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

func digits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
