package input

import (
	"errors"
	"strings"
	"testing"
)

// domainOfLen builds a valid domain of exactly n octets (n >= 5) ending in ".com".
func domainOfLen(n int) string {
	body := n - len(".com")
	var labels []string
	for body > 0 {
		l := min(body, 63)
		if body-l == 1 { // a 0-octet label would be left after the dot
			l--
		}
		labels = append(labels, strings.Repeat("a", l))
		body -= l + 1 // label plus its dot
	}
	d := strings.Join(labels, ".") + ".com"
	if len(d) != n {
		panic("domainOfLen: miscounted")
	}
	return d
}

func TestParseAddress(t *testing.T) {
	local64 := strings.Repeat("l", 64)
	tests := []struct {
		name   string
		in     string
		want   Address // checked when reason == ""
		reason string
		detail string // checked when non-empty
	}{
		{name: "plain", in: "user@example.com", want: Address{Local: "user", Domain: "example.com"}},
		{name: "upper-case domain lower-cased, local case kept", in: "John.Doe@EXAMPLE.Com", want: Address{Local: "John.Doe", Domain: "example.com"}},
		{name: "atext specials", in: "a!#$%&'*+-/=?^_`{|}~z@example.com", want: Address{Local: "a!#$%&'*+-/=?^_`{|}~z", Domain: "example.com"}},
		{name: "quoted local part with space", in: `"a b"@example.com`, want: Address{Local: `"a b"`, Domain: "example.com"}},
		{name: "escaped quote inside quotes", in: `"a\"b"@example.com`, want: Address{Local: `"a\"b"`, Domain: "example.com"}},
		{name: "@ inside quotes", in: `"a@b"@example.com`, want: Address{Local: `"a@b"`, Domain: "example.com"}},
		{name: "< inside quotes: it would end RCPT TO:<…> early", in: `"a<b"@example.com`, reason: ReasonSyntax},
		{name: "escaped > inside quotes", in: `"a\>b"@example.com`, reason: ReasonSyntax},
		{name: "dots inside", in: "a.b.c@example.com", want: Address{Local: "a.b.c", Domain: "example.com"}},
		{name: "leading dot", in: ".a@example.com", reason: ReasonSyntax},
		{name: "trailing dot", in: "a.@example.com", reason: ReasonSyntax},
		{name: "double dot", in: "a..b@example.com", reason: ReasonSyntax},
		{name: "space unquoted", in: "a b@example.com", reason: ReasonSyntax},
		{name: "empty local part", in: "@example.com", reason: ReasonSyntax},
		{name: "unterminated quote", in: `"abc@example.com`, reason: ReasonSyntax},
		{name: "text after closing quote", in: `"a"b@example.com`, reason: ReasonSyntax},
		{name: "bad quoted-pair", in: "\"a\\\x01\"@example.com", reason: ReasonSyntax},
		{name: "hyphen-bounded label", in: "a@-x-.com", reason: ReasonSyntax},
		{name: "R-LDH label is a legal host name", in: "a@ab--cd.example", want: Address{Local: "a", Domain: "ab--cd.example"}},
		{name: "underscore in domain", in: "a@exa_mple.com", reason: ReasonSyntax},
		{name: "trailing dot on domain removed", in: "a@example.com.", want: Address{Local: "a", Domain: "example.com"}},
		{name: "two trailing dots", in: "a@example.com..", reason: ReasonSyntax},
		{name: "empty label", in: "a@example..com", reason: ReasonSyntax},
		{name: "single-label domain", in: "a@localhost", reason: ReasonSyntax},
		{name: "single label with trailing dot", in: "a@localhost.", reason: ReasonSyntax},
		{name: "all-numeric TLD", in: "a@1.2.3.4", reason: ReasonSyntax},
		{name: "empty domain", in: "a@", reason: ReasonSyntax},
		{name: "64-octet local part", in: local64 + "@example.com", want: Address{Local: local64, Domain: "example.com"}},
		{name: "65-octet local part", in: local64 + "l@example.com", reason: ReasonTooLong, detail: "local part is 65 octets, limit is 64"},
		{name: "300-octet local part", in: strings.Repeat("x", 300) + "@example.com", reason: ReasonTooLong, detail: "local part is 300 octets, limit is 64"},
		{name: "254 octets total", in: local64 + "@" + domainOfLen(189), want: Address{Local: local64, Domain: domainOfLen(189)}},
		{name: "255 octets total", in: local64 + "@" + domainOfLen(190), reason: ReasonTooLong, detail: "address is 255 octets, limit is 254"},
		{name: "252-octet domain", in: "a@" + domainOfLen(252), want: Address{Local: "a", Domain: domainOfLen(252)}},
		{name: "253-octet domain leaves no room for a local part", in: "a@" + domainOfLen(253), reason: ReasonTooLong, detail: "address is 255 octets, limit is 254"},
		{name: "254-octet domain", in: "a@" + domainOfLen(254), reason: ReasonTooLong, detail: "domain is 254 octets, limit is 253"},
		{name: "64-octet label", in: "a@" + strings.Repeat("b", 64) + ".com", reason: ReasonTooLong},
		{name: "IDN domain", in: "user@bücher.example", want: Address{Local: "user", Domain: "xn--bcher-kva.example"}},
		{name: "IDN domain upper-case", in: "user@BÜCHER.Example", want: Address{Local: "user", Domain: "xn--bcher-kva.example"}},
		{name: "IDN with ideographic full stop and trailing dot", in: "user@bücher。example.", want: Address{Local: "user", Domain: "xn--bcher-kva.example"}},
		{name: "A-label kept", in: "user@XN--BCHER-KVA.example", want: Address{Local: "user", Domain: "xn--bcher-kva.example"}},
		{name: "bogus A-label", in: "user@xn--zz.example", reason: ReasonIDNA},
		{name: "IDN with disallowed rune", in: "user@bü_cher.example", reason: ReasonIDNA},
		{name: "domain not UTF-8", in: "user@b\xfccher.example", reason: ReasonSyntax},
		{name: "UTF-8 local part", in: "jörg@example.com", want: Address{Local: "jörg", Domain: "example.com", NeedsSMTPUTF8: true}},
		{name: "UTF-8 in quoted local part", in: `"jö rg"@example.com`, want: Address{Local: `"jö rg"`, Domain: "example.com", NeedsSMTPUTF8: true}},
		{name: "UTF-8 local and IDN domain", in: "用户@bücher.example", want: Address{Local: "用户", Domain: "xn--bcher-kva.example", NeedsSMTPUTF8: true}},
		{name: "local part not UTF-8", in: "j\xf6rg@example.com", reason: ReasonSyntax},
		{name: "C1 control in local part", in: "a\u0085b@example.com", reason: ReasonSyntax},
		{name: "IPv4 address literal", in: "a@[127.0.0.1]", reason: ReasonAddressLiteral},
		{name: "IPv6 address literal", in: "a@[IPv6:::1]", reason: ReasonAddressLiteral},
		{name: "unterminated literal", in: "a@[127.0.0.1", reason: ReasonSyntax},
		{name: "empty", in: "", reason: ReasonEmpty},
		{name: "white space only", in: " \t ", reason: ReasonEmpty},
		{name: "null path", in: "<>", reason: ReasonEmpty},
		{name: "missing @", in: "user.example.com", reason: ReasonSyntax, detail: "missing @"},
		{name: "two @ outside quotes", in: "a@b@example.com", reason: ReasonSyntax},
		{name: "angle brackets", in: "<a@b.example>", want: Address{Local: "a", Domain: "b.example"}},
		{name: "unbalanced angle bracket", in: "<a@b.example", reason: ReasonSyntax},
		{name: "surrounding spaces", in: "  a@b.example \t\r\n", want: Address{Local: "a", Domain: "b.example"}},
		{name: "spaces and brackets", in: " <a@b.example> ", want: Address{Local: "a", Domain: "b.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddress(tt.in)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ParseAddress(%q) error: %v", tt.in, err)
				}
				if got != tt.want {
					t.Fatalf("ParseAddress(%q) = %+v, want %+v", tt.in, got, tt.want)
				}
				if want := tt.want.Local + "@" + tt.want.Domain; got.String() != want {
					t.Errorf("String() = %q, want %q", got.String(), want)
				}
				return
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("ParseAddress(%q) = %+v, %v; want *SyntaxError with reason %q", tt.in, got, err, tt.reason)
			}
			if se.Reason != tt.reason {
				t.Errorf("reason = %q (%s), want %q", se.Reason, se.Detail, tt.reason)
			}
			if tt.detail != "" && se.Detail != tt.detail {
				t.Errorf("detail = %q, want %q", se.Detail, tt.detail)
			}
			if se.Value != tt.in {
				t.Errorf("Value = %q, want the input %q", se.Value, tt.in)
			}
			if got != (Address{}) {
				t.Errorf("address %+v returned with an error", got)
			}
		})
	}
}

func TestSyntaxErrorMessageBounded(t *testing.T) {
	_, err := ParseAddress(strings.Repeat("x", 1<<20))
	if err == nil {
		t.Fatal("1 MiB value accepted")
	}
	if n := len(err.Error()); n > 300 {
		t.Errorf("error message is %d bytes; a huge value must not be copied into it", n)
	}
}
