package input

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// RFC 5321 section 4.5.3.1 limits, in octets.
const (
	maxLocalLen   = 64
	maxDomainLen  = 253 // 255 minus the length octet and the root label
	maxLabelLen   = 63
	maxAddressLen = 254 // RFC 3696 erratum 1690: the path limit of 256 minus "<" and ">"
)

// Reasons a value is rejected; they end up in the result's reason column, so
// they are short machine words.
const (
	ReasonEmpty          = "empty"
	ReasonSyntax         = "syntax"
	ReasonTooLong        = "too_long"
	ReasonIDNA           = "idna"
	ReasonAddressLiteral = "address_literal"
)

// Address is a syntactically valid RFC 5321 mailbox, normalised for probing.
type Address struct {
	Local         string // local part exactly as it will be sent (dot-string, or quoted-string with its quotes)
	Domain        string // lower-case ASCII (IDNA A-labels), no trailing dot
	NeedsSMTPUTF8 bool   // local part contains non-ASCII (RFC 6531)
}

// String returns the address in the form used in RCPT TO (without the angle
// brackets).
func (a Address) String() string { return a.Local + "@" + a.Domain }

// SyntaxError explains why a value is not a probe-able address.
type SyntaxError struct {
	Value  string
	Reason string // one of the Reason constants
	Detail string // human explanation
}

func (e *SyntaxError) Error() string {
	// Value comes from the user's file and may be huge; the message is for a log line.
	return fmt.Sprintf("invalid address %q: %s", clip(e.Value, 80), e.Detail)
}

// ParseAddress trims surrounding white space and an optional pair of angle
// brackets, then checks RFC 5321 syntax (RFC 6531 UTF-8 allowed in the local
// part) and normalises the domain: lower-cased, IDNA A-labels, one trailing dot
// removed. The error, if any, is a *SyntaxError.
//
// Beyond the grammar it rejects what cannot be probed usefully: address
// literals, single-label domains, an all-numeric top-level label (which would
// make a@1.2.3.4 look like a domain), and control characters in a UTF-8 local
// part.
func ParseAddress(s string) (Address, error) {
	orig := s
	fail := func(reason, format string, args ...any) (Address, error) {
		return Address{}, &SyntaxError{Value: orig, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}

	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return fail(ReasonEmpty, "no address given")
	}
	if !strings.Contains(s, "@") {
		return fail(ReasonSyntax, "missing @")
	}

	local, rest, detail := splitLocal(s)
	if detail != "" {
		return fail(ReasonSyntax, "%s", detail)
	}
	if len(local) > maxLocalLen {
		return fail(ReasonTooLong, "local part is %d octets, limit is %d", len(local), maxLocalLen)
	}
	domain := rest[1:] // rest starts with the @
	if strings.IndexByte(domain, '@') >= 0 {
		return fail(ReasonSyntax, "more than one @ outside quotes")
	}
	if strings.HasPrefix(domain, "[") {
		if strings.HasSuffix(domain, "]") {
			return fail(ReasonAddressLiteral, "address literal %s is not probed, only domain names are", clip(domain, 50))
		}
		return fail(ReasonSyntax, "unterminated address literal")
	}

	domain, reason, detail := normaliseDomain(domain)
	if reason != "" {
		return fail(reason, "%s", detail)
	}
	if n := len(local) + 1 + len(domain); n > maxAddressLen {
		return fail(ReasonTooLong, "address is %d octets, limit is %d", n, maxAddressLen)
	}
	return Address{Local: local, Domain: domain, NeedsSMTPUTF8: !isASCII(local)}, nil
}

// splitLocal takes the local part off the front of s. rest starts with the @
// that ends the local part. A non-empty detail says what is wrong.
func splitLocal(s string) (local, rest, detail string) {
	if s[0] == '"' {
		end, detail := scanQuoted(s)
		if detail != "" {
			return "", "", detail
		}
		if end == len(s) || s[end] != '@' {
			return "", "", "quoted local part must be followed by @"
		}
		return s[:end], s[end:], ""
	}
	// atext contains neither @ nor ", so a dot-string ends at the first @.
	at := strings.IndexByte(s, '@')
	local = s[:at]
	if detail := checkDotString(local); detail != "" {
		return "", "", detail
	}
	return local, s[at:], ""
}

// scanQuoted scans the RFC 5321 Quoted-string at the start of s and returns the
// index just past its closing quote.
func scanQuoted(s string) (end int, detail string) {
	for i := 1; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, ""
		case c == '<' || c == '>' || (c == '\\' && i+1 < len(s) && (s[i+1] == '<' || s[i+1] == '>')):
			// RFC 5321 allows them quoted, but inside RCPT TO:<…> they
			// would end the path early; no real mailbox needs them.
			return 0, "< and > are not accepted in a local part, even quoted"
		case c == '\\':
			// quoted-pairSMTP = %d92 %d32-126
			if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
				return 0, "backslash in quoted local part must be followed by a printable ASCII character"
			}
			i += 2
		case c >= 32 && c <= 126:
			i++
		case c >= utf8.RuneSelf:
			n, d := checkUTF8(s[i:])
			if d != "" {
				return 0, d
			}
			i += n
		default:
			return 0, fmt.Sprintf("character %q is not allowed in a quoted local part", c)
		}
	}
	return 0, "unterminated quoted local part"
}

// checkDotString validates Dot-string = Atom *("." Atom), with RFC 6531 UTF-8.
func checkDotString(s string) string {
	switch {
	case s == "":
		return "local part is empty"
	case s[0] == '.':
		return "local part starts with a dot"
	case s[len(s)-1] == '.':
		return "local part ends with a dot"
	case strings.Contains(s, ".."):
		return "local part contains two dots in a row"
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			n, d := checkUTF8(s[i:])
			if d != "" {
				return d
			}
			i += n
		case c == '.' || isAtext(c):
			i++
		default:
			return fmt.Sprintf("character %q is not allowed in an unquoted local part", c)
		}
	}
	return ""
}

// checkUTF8 checks the non-ASCII rune at the start of s (RFC 6532 UTF8-non-ascii)
// and returns its length.
func checkUTF8(s string) (int, string) {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return 0, "local part is not valid UTF-8"
	}
	if unicode.IsControl(r) {
		// C1 controls are UTF8-non-ascii by the grammar, but no real mailbox has them.
		return 0, fmt.Sprintf("control character %U in local part", r)
	}
	return n, ""
}

// isAtext reports whether c is an RFC 5322 atext character (ASCII only).
func isAtext(c byte) bool { return atext[c] }

var atext = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", b) >= 0
	}
	return t
}()

// normaliseDomain converts d to lower-case A-labels without the trailing dot and
// checks it. A non-empty reason says what is wrong.
func normaliseDomain(d string) (domain, reason, detail string) {
	if d == "" {
		return "", ReasonSyntax, "domain is empty"
	}
	if !isASCII(d) {
		if !utf8.ValidString(d) {
			return "", ReasonSyntax, "domain is not valid UTF-8"
		}
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", ReasonIDNA, fmt.Sprintf("domain cannot be converted to ASCII: %v", err)
		}
		d = a
	}
	d = strings.ToLower(d)
	d = strings.TrimSuffix(d, ".")
	if len(d) > maxDomainLen {
		return "", ReasonTooLong, fmt.Sprintf("domain is %d octets, limit is %d", len(d), maxDomainLen)
	}

	// Label by label, without splitting: this runs once per input row.
	labels, tld := 0, ""
	for rest := d; ; {
		l := rest
		i := strings.IndexByte(rest, '.')
		if i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		}
		if reason, detail := checkLabel(l); reason != "" {
			return "", reason, detail
		}
		labels++
		tld = l
		if i < 0 {
			break
		}
	}
	if labels < 2 {
		return "", ReasonSyntax, "domain needs at least two labels"
	}
	if allDigits(tld) {
		return "", ReasonSyntax, "top-level label is all-numeric"
	}
	return d, "", ""
}

// checkLabel checks one lower-case ASCII label: RFC 5321 sub-domain
// (Let-dig [Ldh-str]), and A-labels must decode.
func checkLabel(l string) (reason, detail string) {
	switch {
	case l == "":
		return ReasonSyntax, "domain has an empty label"
	case len(l) > maxLabelLen:
		return ReasonTooLong, fmt.Sprintf("domain label is %d octets, limit is %d", len(l), maxLabelLen)
	case l[0] == '-' || l[len(l)-1] == '-':
		return ReasonSyntax, fmt.Sprintf("domain label %q starts or ends with a hyphen", clip(l, 63))
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return ReasonSyntax, fmt.Sprintf("character %q is not allowed in a domain", c)
		}
	}
	// Only A-labels go through IDNA validation: the Lookup profile would also
	// reject LDH labels such as "ab--cd" that are legal host names.
	if strings.HasPrefix(l, "xn--") {
		if _, err := idna.Lookup.ToUnicode(l); err != nil {
			return ReasonIDNA, fmt.Sprintf("domain label %q is not a valid A-label: %v", l, err)
		}
	}
	return "", ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// clip shortens s to at most n bytes for use in a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
