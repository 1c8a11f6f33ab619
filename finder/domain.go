package finder

import (
	"errors"
	"net"
	"net/url"
	"strings"

	"github.com/bulkverify/bulkverify/input"
)

// DomainFrom takes the mail domain from a domain cell, which may hold a bare
// domain ("acme.com", "ACME.COM."), a website ("https://www.acme.com/about",
// "www.acme.com/contact", "acme.com:8080") or an address ("someone@acme.com",
// "mailto:someone@acme.com"). The result is normalised as input.ParseAddress
// normalises domains: lower-case, IDNA A-labels, no trailing dot.
//
// A leading "www" label is removed ("www.acme.com" -> "acme.com"), bare or in
// a URL, as long as two labels remain: people's mailboxes are at the
// organisation's domain, almost never at its web host. Other subdomains are
// kept ("mail.acme.com", "shop.acme.co.uk"), since which part is the
// organisation's domain cannot be told without the public suffix list.
//
// The error is always an *input.SyntaxError whose Value is s and whose Reason
// is one of the input.Reason constants (empty, syntax, too_long, idna,
// address_literal), so a caller can report it like an invalid address.
func DomainFrom(s string) (string, error) {
	fail := func(reason, detail string) (string, error) {
		return "", &input.SyntaxError{Value: s, Reason: reason, Detail: detail}
	}
	host := strings.TrimSpace(s)
	if host == "" {
		return fail(input.ReasonEmpty, "no domain given")
	}
	if len(host) >= len("mailto:") && strings.EqualFold(host[:len("mailto:")], "mailto:") {
		host = host[len("mailto:"):]
	}
	if scheme := hasScheme(host); scheme || !strings.Contains(host, "@") {
		// A URL, or a domain that may carry a path or port: let net/url find
		// the host. "//" makes a scheme-less value parse as an authority.
		raw := host
		if !scheme && !strings.HasPrefix(raw, "//") {
			raw = "//" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			return fail(input.ReasonSyntax, "not a domain or URL: "+unwrapURLError(err))
		}
		host = u.Hostname()
		if host == "" {
			return fail(input.ReasonSyntax, "no host name in URL")
		}
		if strings.HasPrefix(u.Host, "[") || net.ParseIP(host) != nil {
			return fail(input.ReasonAddressLiteral, "an IP address is not a mail domain")
		}
	} else {
		host = host[strings.LastIndexByte(host, '@')+1:]
		if strings.HasPrefix(host, "[") {
			return fail(input.ReasonAddressLiteral, "an address literal is not a mail domain")
		}
	}
	if lower := strings.ToLower(host); strings.HasPrefix(lower, "www.") && strings.Count(strings.TrimSuffix(lower, "."), ".") >= 2 {
		host = host[len("www."):]
	}

	// The local part is a placeholder: only the domain's checks matter.
	a, err := input.ParseAddress("x@" + host)
	if err != nil {
		var se *input.SyntaxError
		if errors.As(err, &se) {
			return fail(se.Reason, se.Detail)
		}
		return fail(input.ReasonSyntax, err.Error())
	}
	return a.Domain, nil
}

// unwrapURLError drops the *url.Error wrapper, which repeats the whole input.
func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// hasScheme reports whether s starts with a URL scheme and "://".
func hasScheme(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for j := 0; j < i; j++ {
		c := s[j]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}
