package probe

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// endless yields pattern forever and counts what was taken from it.
type endless struct {
	pattern []byte
	pos     int
	n       int
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.pattern[e.pos]
		e.pos = (e.pos + 1) % len(e.pattern)
	}
	e.n += len(p)
	return len(p), nil
}

func TestReadReplyBounded(t *testing.T) {
	const maxLine, maxLines, bufSize = 512, 16, 4096
	tests := []struct {
		name    string
		pattern string
		prefix  string
		reason  string
	}{
		{"endless line", "a", "250 ", "longer than 512 bytes"},
		{"endless reply", "250-x\r\n", "", "longer than 16 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &endless{pattern: []byte(tt.pattern)}
			br := bufio.NewReaderSize(io.MultiReader(strings.NewReader(tt.prefix), src), bufSize)
			_, err := readReply(br, maxLine, maxLines, nil)
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("err = %v, want ProtocolError %q", err, tt.reason)
			}
			// The source is infinite, so returning at all proves the reader
			// stopped; the amount taken shows it stopped near the limit.
			if limit := maxLine*maxLines + 2*bufSize; src.n > limit {
				t.Errorf("consumed %d bytes, want <= %d", src.n, limit)
			}
		})
	}
}

func TestReadReplyEOF(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"250-first\r\n", io.ErrUnexpectedEOF},
		{"250 no line end", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		_, err := readReply(bufio.NewReader(strings.NewReader(tt.in)), 100, 10, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("readReply(%q) err = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestReadReplyLimitsExact(t *testing.T) {
	// A line of exactly MaxLineLength bytes including CRLF and a reply of
	// exactly MaxReplyLines lines are allowed; one more byte or line is not.
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"line at limit", "250 " + strings.Repeat("a", 10-6) + "\r\n", true},
		{"line over limit", "250 " + strings.Repeat("a", 10-5) + "\r\n", false},
		{"lines at limit", "250-a\r\n250-b\r\n250 c\r\n", true},
		{"lines over limit", "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readReply(bufio.NewReader(strings.NewReader(tt.in)), 10, 3, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestReplyMethods(t *testing.T) {
	tests := []struct {
		r                Reply
		str, text        string
		pos, trans, perm bool
	}{
		{Reply{550, "5.1.1", []string{"no such user"}}, "550 5.1.1 no such user", "no such user", false, false, true},
		{Reply{250, "", []string{"mx.test", "PIPELINING"}}, "250 mx.test PIPELINING", "mx.test PIPELINING", true, false, false},
		{Reply{421, "4.7.0", []string{""}}, "421 4.7.0", "", false, true, false},
		{Reply{250, "", []string{""}}, "250", "", true, false, false},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.str {
			t.Errorf("String() = %q, want %q", got, tt.str)
		}
		if got := tt.r.Text(); got != tt.text {
			t.Errorf("Text() = %q, want %q", got, tt.text)
		}
		if tt.r.Positive() != tt.pos || tt.r.Transient() != tt.trans || tt.r.Permanent() != tt.perm {
			t.Errorf("%v: Positive/Transient/Permanent = %v/%v/%v", tt.r, tt.r.Positive(), tt.r.Transient(), tt.r.Permanent())
		}
	}
}

// FuzzReadReply checks that no input makes the reader panic or break its
// limits, and that an accepted reply survives a render/parse round trip.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n",
		"550 5.1.1 <a@b>: no such user\r\n",
		"250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
		"250\r\n",
		"250-first\n250 2.0.0 second\n",
		"550 2.1.1 class mismatch\r\n",
		"250-a\r\n251 b\r\n",
		"abc nonsense\r\n",
		"421 4.7.0 caf\xe9 closing\r\n",
		"250 " + strings.Repeat("x", 100) + "\r\n",
		"250-2.0.0\r\n250 2.0.0 x\r\n",
		"511 sorry, no mailbox here by that name (#5.1.1 - chkuser)\r\n",
		"550 #5.1.0 Address rejected.\r\n",
		"550-first (#4.3.0)\r\n550 second #5.7.1\r\n",
		"553 x #5.1.1.2 #5.1.3\r\n",
	} {
		f.Add([]byte(s))
	}
	const maxLine, maxLines = 64, 8
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 16)
		r, err := readReply(br, maxLine, maxLines, nil)
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Fatalf("code %d out of range", r.Code)
		}
		if len(r.Lines) < 1 || len(r.Lines) > maxLines {
			t.Fatalf("%d lines", len(r.Lines))
		}
		if r.Enhanced != "" && (r.Enhanced[0] != byte('0'+r.Code/100) || enhancedLen(r.Enhanced, r.Enhanced[0]) != len(r.Enhanced)) {
			t.Fatalf("bad enhanced code %q for %d", r.Enhanced, r.Code)
		}
		// A code is either stripped from the start of a line or still in
		// the text after a "#": it never comes from nowhere.
		if r.Enhanced != "" && !strings.Contains(string(data), r.Enhanced+" ") && !strings.Contains(string(data), r.Enhanced+"\r") &&
			!strings.Contains(string(data), r.Enhanced+"\n") && !strings.Contains(strings.Join(r.Lines, "\n"), "#"+r.Enhanced) {
			t.Fatalf("enhanced code %q not found in %q", r.Enhanced, data)
		}
		for _, l := range r.Lines {
			if strings.Contains(l, "\n") || len(l) > maxLine {
				t.Fatalf("bad line %q", l)
			}
		}
		_ = r.String()

		// Render with the enhanced code on every line and parse again.
		var b strings.Builder
		for i, l := range r.Lines {
			sep := "-"
			if i == len(r.Lines)-1 {
				sep = " "
			}
			b.WriteString(itoa3(r.Code) + sep)
			if r.Enhanced != "" {
				b.WriteString(r.Enhanced + " ")
			}
			b.WriteString(l + "\r\n")
		}
		r2, err := readReply(bufio.NewReader(strings.NewReader(b.String())), 4*maxLine, maxLines, nil)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %#v != %#v", r2, r)
		}
	})
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

func TestEnhancedCodeWhereServersPutIt(t *testing.T) {
	tests := []struct {
		name, in string
		enhanced string
		lines    []string
	}{
		{"RFC 2034 at the start", "550 5.1.1 <a@b>: no such user\r\n", "5.1.1", []string{"<a@b>: no such user"}},
		{"RFC 2034 on every line", "550-5.1.1 The email account\r\n550 5.1.1 does not exist\r\n", "5.1.1",
			[]string{"The email account", "does not exist"}},
		{"qmail trailing", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)\r\n", "5.7.1",
			[]string{"sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"}},
		{"chkuser trailing", "511 sorry, no mailbox here by that name (#5.1.1 - chkuser)\r\n", "5.1.1",
			[]string{"sorry, no mailbox here by that name (#5.1.1 - chkuser)"}},
		{"Cisco leading hash", "550 #5.1.0 Address rejected.\r\n", "5.1.0", []string{"#5.1.0 Address rejected."}},
		{"inside the text", "550 Mailbox unavailable #5.1.0 see above\r\n", "5.1.0", []string{"Mailbox unavailable #5.1.0 see above"}},
		{"sentence end", "511 no such user #5.1.1.\r\n", "5.1.1", []string{"no such user #5.1.1."}},
		{"second line", "550-Verification failed\r\n550 Sender verify failed (#5.1.7)\r\n", "5.1.7",
			[]string{"Verification failed", "Sender verify failed (#5.1.7)"}},
		{"start of a line wins over inside", "550-rejected (#5.7.1)\r\n550 5.1.1 no such user\r\n", "5.1.1",
			[]string{"rejected (#5.7.1)", "no such user"}},
		{"class mismatch inside", "550 qqt failure (#4.3.0)\r\n", "", []string{"qqt failure (#4.3.0)"}},
		{"longer number", "550 ticket #5.1.1.2 closed\r\n", "", []string{"ticket #5.1.1.2 closed"}},
		{"followed by a letter", "550 see #5.1.10x\r\n", "", []string{"see #5.1.10x"}},
		{"no hash", "550 user unknown (5.1.1)\r\n", "", []string{"user unknown (5.1.1)"}},
		{"hash at the end", "550 user unknown #\r\n", "", []string{"user unknown #"}},
		{"three-digit detail", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found\r\n", "5.1.10",
			[]string{"RESOLVER.ADR.RecipientNotFound; not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReply(bufio.NewReader(strings.NewReader(tt.in)), 512, 8, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Enhanced != tt.enhanced || !reflect.DeepEqual(r.Lines, tt.lines) {
				t.Errorf("got %q %q, want %q %q", r.Enhanced, r.Lines, tt.enhanced, tt.lines)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in      string
		want    Reply
		problem string // part of the ProtocolError; "" = no error
	}{
		{"550 5.1.1 no such user", Reply{550, "5.1.1", []string{"no such user"}}, ""},
		{"550-5.1.1 a\n550 5.1.1 b\n", Reply{550, "5.1.1", []string{"a", "b"}}, ""},
		{"550-5.1.1 a\r\n550 5.1.1 b\r\n", Reply{550, "5.1.1", []string{"a", "b"}}, ""},
		{"", Reply{}, "empty reply"},
		{"550-a\n", Reply{}, "more lines follow"},
		{"550 a\n550 b\n", Reply{}, "after the reply's last line"},
		{"no code here", Reply{}, "malformed"},
		{"550-a\n551 b", Reply{}, "expected 550"},
	}
	for _, tt := range tests {
		got, err := ParseReply(tt.in)
		if tt.problem == "" {
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseReply(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			}
			continue
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tt.problem) {
			t.Errorf("ParseReply(%q) err = %v, want ProtocolError %q", tt.in, err, tt.problem)
		}
	}
}
