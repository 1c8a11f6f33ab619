package input

import (
	"encoding/csv"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll drains r, failing the test on anything but io.EOF.
func readAll(t *testing.T, r *Reader) []Record {
	t.Helper()
	var recs []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatalf("Next after %d records: %v", len(recs), err)
		}
		recs = append(recs, rec)
	}
}

func TestReaderBOMAndCRLF(t *testing.T) {
	const file = "\uFEFF\"Email\",name\r\na@b.example,Ann\r\n\r\nc@d.example,\"Carl\r\nJr\"\r\ne@f.example,Eve\r\n"
	r, err := NewReader(strings.NewReader(file), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Email", "name"}; !reflect.DeepEqual(r.Header(), want) {
		t.Errorf("Header() = %q, want %q", r.Header(), want)
	}
	if r.Column() != 0 {
		t.Errorf("Column() = %d, want 0", r.Column())
	}
	want := []Record{
		{Row: 1, Line: 2, Fields: []string{"a@b.example", "Ann"}, Email: "a@b.example"},
		// the blank line 3 is skipped; the quoted CRLF is read as LF by encoding/csv
		{Row: 2, Line: 4, Fields: []string{"c@d.example", "Carl\nJr"}, Email: "c@d.example"},
		{Row: 3, Line: 6, Fields: []string{"e@f.example", "Eve"}, Email: "e@f.example"},
	}
	if got := readAll(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("records:\n got %+v\nwant %+v", got, want)
	}
}

func TestReaderColumnDetection(t *testing.T) {
	tests := []struct {
		header string
		column string // Options.Column
		want   int
	}{
		{header: "email", want: 0},
		{header: "id,EMAIL", want: 1},
		{header: "id, E-Mail ", want: 1},
		{header: "id,Email Address", want: 1},
		{header: "id,email_address", want: 1},
		{header: "id,Address", want: 1},
		{header: "id,MAIL", want: 1},
		{header: "\uFEFFemail,id", want: 0},
		// priority: email > e-mail > address > email_address > email address > mail
		{header: "mail,address,email", want: 2},
		{header: "mail,address,e-mail", want: 2},
		{header: "email_address,address", want: 1},
		{header: "mail,email address,email_address", want: 2},
		{header: "mail,email address", want: 1},
		{header: "email,email", want: 0},
		// explicit column wins over auto-detection, case-insensitively
		{header: "id,Contact,email", column: "CONTACT", want: 1},
		{header: "id, Contact ,email", column: " contact", want: 1},
		{header: "id,email", column: "  ", want: 1}, // blank means auto-detect
	}
	for _, tt := range tests {
		t.Run(tt.header+"/"+tt.column, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.header+"\n"), Options{Column: tt.column})
			if err != nil {
				t.Fatal(err)
			}
			if r.Column() != tt.want {
				t.Errorf("Column() = %d, want %d", r.Column(), tt.want)
			}
		})
	}
}

func TestReaderHeaderErrors(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		column     string
		reason     string
		msgHas     []string
		wantHeader []string
	}{
		{name: "empty file", file: "", reason: HeaderEmpty, msgHas: []string{"empty"}},
		{name: "BOM only", file: "\uFEFF", reason: HeaderEmpty},
		{name: "blank lines only", file: "\n\r\n\n", reason: HeaderEmpty},
		{
			name: "no usable column", file: "id,name,phone\n1,Ann,555\n", reason: HeaderNoColumn,
			msgHas:     []string{`"id", "name", "phone"`, "email, e-mail, address, email_address, email address, mail"},
			wantHeader: []string{"id", "name", "phone"},
		},
		{
			name: "file without header", file: "a@b.example,Ann\n", reason: HeaderNoColumn,
			msgHas: []string{"no header line"},
		},
		{
			name: "explicit column missing", file: "id,email\n", column: "contact", reason: HeaderColumnNotFound,
			msgHas: []string{`"contact"`, `"id", "email"`},
		},
		{
			name: "many columns listed boundedly", file: strings.Repeat("x,", 100) + "y\n", reason: HeaderNoColumn,
			msgHas: []string{"and 81 more"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.file), Options{Column: tt.column})
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("NewReader = %v, %v; want *HeaderError", r, err)
			}
			if he.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q", he.Reason, tt.reason)
			}
			if tt.wantHeader != nil && !reflect.DeepEqual(he.Header, tt.wantHeader) {
				t.Errorf("Header = %q, want %q", he.Header, tt.wantHeader)
			}
			for _, s := range tt.msgHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not mention %q", err.Error(), s)
				}
			}
		})
	}
}

func TestReaderHeaderOnly(t *testing.T) {
	r, err := NewReader(strings.NewReader("email,name\r\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next #%d = %v, want io.EOF", i+1, err)
		}
	}
}

func TestReaderRaggedRows(t *testing.T) {
	const file = "name,email\nAnn,a@b.example\nBob\nCarl,c@d.example,extra\n,\n"
	r, err := NewReader(strings.NewReader(file), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Row: 1, Line: 2, Fields: []string{"Ann", "a@b.example"}, Email: "a@b.example"},
		{Row: 2, Line: 3, Fields: []string{"Bob"}, Email: "", Ragged: true},
		{Row: 3, Line: 4, Fields: []string{"Carl", "c@d.example", "extra"}, Email: "c@d.example", Ragged: true},
		{Row: 4, Line: 5, Fields: []string{"", ""}, Email: ""},
	}
	if got := readAll(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("records:\n got %+v\nwant %+v", got, want)
	}
}

func TestReaderParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		good     int // records before the error
		line     int
		sentinel error
	}{
		{name: "stray quote in a row", file: "email,name\na@b.example,ok\nc@d.example,bad\"quote\ne@f.example,ok\n", good: 1, line: 3, sentinel: csv.ErrBareQuote},
		{name: "stray quote in the header", file: "email,na\"me\na@b.example,x\n", line: 1, sentinel: csv.ErrBareQuote},
		{name: "text after closing quote", file: "email\r\na@b.example\r\n\"c@d.example\"x\r\n", good: 1, line: 3, sentinel: csv.ErrQuote},
		{name: "quote never closed", file: "email\na@b.example\n\"c@d.example\nmore\n", good: 1, line: 4, sentinel: csv.ErrQuote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.file), Options{})
			for i := 0; err == nil && i <= tt.good; i++ {
				_, err = r.Next()
				if i < tt.good && err != nil {
					t.Fatalf("Next #%d: %v", i+1, err)
				}
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want *ParseError", err)
			}
			if pe.Line != tt.line {
				t.Errorf("Line = %d, want %d (%v)", pe.Line, tt.line, err)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("message %q does not name the line", err.Error())
			}
			if r != nil {
				if _, again := r.Next(); again != err {
					t.Errorf("Next after the error = %v, want the same error again", again)
				}
			}
		})
	}
}

func TestReaderSemicolon(t *testing.T) {
	r, err := NewReader(strings.NewReader("name;e-mail\nAnn, Jr;a@b.example\n"), Options{Comma: ';'})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{{Row: 1, Line: 2, Fields: []string{"Ann, Jr", "a@b.example"}, Email: "a@b.example"}}
	if got := readAll(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("records:\n got %+v\nwant %+v", got, want)
	}
}

func TestReaderInvalidComma(t *testing.T) {
	for _, c := range []rune{'"', '\n', '\r', 0xFFFD, -1} {
		_, err := NewReader(strings.NewReader("email\n"), Options{Comma: c})
		var he *HeaderError
		if err == nil || errors.As(err, &he) {
			t.Errorf("Comma %q: err = %v, want a plain error", c, err)
		}
	}
}

func TestReaderOddContent(t *testing.T) {
	big := strings.Repeat("x", 1<<20) + "@example.com"
	file := "email,note\n" + big + ",big\n\xff\xfe@b.example,\x00\x80\n"
	r, err := NewReader(strings.NewReader(file), Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, r)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	if recs[0].Email != big {
		t.Errorf("1 MiB field not kept intact (len %d)", len(recs[0].Email))
	}
	if want := []string{"\xff\xfe@b.example", "\x00\x80"}; !reflect.DeepEqual(recs[1].Fields, want) {
		t.Errorf("non-UTF-8 fields = %q, want %q untouched", recs[1].Fields, want)
	}
}

func TestReaderIOErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	if _, err := NewReader(iotest.ErrReader(boom), Options{}); !errors.Is(err, boom) {
		t.Errorf("NewReader on a failing reader = %v, want it to wrap %v", err, boom)
	}

	r, err := NewReader(io.MultiReader(strings.NewReader("email\na@b.example\n"), iotest.ErrReader(boom)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatalf("first record: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Errorf("Next = %v, want it to wrap %v", err, boom)
	}
}
