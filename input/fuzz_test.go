package input

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"user@example.com", "John.Doe@EXAMPLE.Com.", `"a b"@example.com`, `"a\"b"@example.com`,
		`"a@b"@x.example`, "<a@b.example>", " a@b.example ", "a@[IPv6:::1]", "a@[127.0.0.1]",
		"user@bücher.example", "jörg@xn--bcher-kva.example", "a@-x-.com", "a..b@x.example",
		"a@b@c.example", "@", "<>", "", "a@1.2.3.4", "a@xn--zz.example", "a@bücher。example。",
		"\"\\\x7f\"@x.example", "a@\xff.example", strings.Repeat("x", 65) + "@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a *SyntaxError", err, err)
			}
			switch se.Reason {
			case ReasonEmpty, ReasonSyntax, ReasonTooLong, ReasonIDNA, ReasonAddressLiteral:
			default:
				t.Fatalf("unknown reason %q", se.Reason)
			}
			if se.Value != s || se.Detail == "" {
				t.Fatalf("SyntaxError %+v: want Value = input and a Detail", se)
			}
			return
		}
		if len(a.Local) == 0 || len(a.Local) > maxLocalLen || len(a.Domain) > maxDomainLen || len(a.String()) > maxAddressLen {
			t.Fatalf("limits broken: %+v", a)
		}
		for i := 0; i < len(a.Domain); i++ {
			c := a.Domain[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("domain %q has %q", a.Domain, c)
			}
		}
		if !strings.Contains(a.Domain, ".") || strings.HasSuffix(a.Domain, ".") {
			t.Fatalf("domain %q: want two labels and no trailing dot", a.Domain)
		}
		if a.NeedsSMTPUTF8 == isASCII(a.Local) {
			t.Fatalf("NeedsSMTPUTF8 = %v for local %q", a.NeedsSMTPUTF8, a.Local)
		}
		// A normalised address is a fixed point: what we probe parses to itself.
		b, err := ParseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("re-parsing %q = %+v, %v; want %+v", a.String(), b, err, a)
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"email\na@b.example\n",
		"\uFEFF\"Email\",name\r\na@b.example,Ann\r\n",
		"name,email\nAnn\nBob,b@c.example,extra\n",
		"email,name\na@b.example,bad\"quote\n",
		"email\n\"unterminated\n",
		"id,name\n1,2\n",
		"",
		"email;mail\n\xff;\x00\n",
		"e-mail,x\n\"multi\nline\",y\n\n\nz\n",
	} {
		f.Add([]byte(s), "", false)
	}
	f.Add([]byte("a;Contact\n1;x@y.example\n"), "contact", true)
	f.Fuzz(func(t *testing.T, data []byte, column string, semicolon bool) {
		opts := Options{Column: column}
		if semicolon {
			opts.Comma = ';'
		}
		r, err := NewReader(bytes.NewReader(data), opts)
		if err != nil {
			var he *HeaderError
			var pe *ParseError
			if !errors.As(err, &he) && !errors.As(err, &pe) {
				t.Fatalf("NewReader error %T %v is neither *HeaderError nor *ParseError", err, err)
			}
			_ = err.Error()
			return
		}
		if r.Column() < 0 || r.Column() >= len(r.Header()) {
			t.Fatalf("Column() = %d with %d header fields", r.Column(), len(r.Header()))
		}
		if strings.HasPrefix(r.Header()[0], bom) {
			t.Fatalf("BOM left in header %q", r.Header()[0])
		}
		lastLine := 1
		for row := 1; ; row++ {
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("Next error %T %v is not a *ParseError", err, err)
				}
				if pe.Line < lastLine {
					t.Fatalf("error at line %d, before the last record's line %d", pe.Line, lastLine)
				}
				_ = err.Error()
				return
			}
			if rec.Row != row || rec.Line <= lastLine {
				t.Fatalf("record Row %d Line %d; want Row %d and Line > %d", rec.Row, rec.Line, row, lastLine)
			}
			lastLine = rec.Line
			if rec.Ragged != (len(rec.Fields) != len(r.Header())) {
				t.Fatalf("Ragged = %v with %d fields, header %d", rec.Ragged, len(rec.Fields), len(r.Header()))
			}
			want := ""
			if r.Column() < len(rec.Fields) {
				want = rec.Fields[r.Column()]
			}
			if rec.Email != want {
				t.Fatalf("Email = %q, want %q", rec.Email, want)
			}
		}
	})
}
