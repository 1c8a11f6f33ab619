package finder

import (
	"errors"
	"strings"
	"testing"

	"github.com/bulkverify/bulkverify/input"
)

func TestDomainFrom(t *testing.T) {
	tests := []struct {
		in         string
		want       string
		wantReason string // set for an error
	}{
		{in: "acme.com", want: "acme.com"},
		{in: "ACME.COM.", want: "acme.com"},
		{in: "  acme.com\t", want: "acme.com"},
		{in: "https://www.acme.com/about", want: "acme.com"},
		{in: "http://acme.com:8080/x?y=1#z", want: "acme.com"},
		{in: "HTTPS://WWW.Acme.COM", want: "acme.com"},
		{in: "https://user:pw@acme.com/", want: "acme.com"},
		{in: "//acme.com/team", want: "acme.com"},
		{in: "www.acme.com", want: "acme.com"},
		{in: "www.acme.com.", want: "acme.com"},
		{in: "www.acme.com/contact", want: "acme.com"},
		{in: "acme.com:8080", want: "acme.com"},
		{in: "acme.com/?next=http://other.example", want: "acme.com"},
		{in: "someone@acme.com", want: "acme.com"},
		{in: "Some.One@Acme.COM", want: "acme.com"},
		{in: "mailto:someone@acme.com", want: "acme.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "https://www.bücher.example/", want: "xn--bcher-kva.example"},
		{in: "www.com", want: "www.com"},             // stripping www would leave one label
		{in: "mail.acme.com", want: "mail.acme.com"}, // other subdomains are kept
		{in: "www2.acme.com", want: "www2.acme.com"}, // only the exact label www
		{in: "acme.co.uk/www.x", want: "acme.co.uk"}, // www in the path is not the host
		{in: "", wantReason: input.ReasonEmpty},
		{in: "   ", wantReason: input.ReasonEmpty},
		{in: "localhost", wantReason: input.ReasonSyntax},
		{in: "acme", wantReason: input.ReasonSyntax},
		{in: "https://", wantReason: input.ReasonSyntax},
		{in: "acme com", wantReason: input.ReasonSyntax},
		{in: "exa_mple.com", wantReason: input.ReasonSyntax},
		{in: "acme.com:port", wantReason: input.ReasonSyntax},
		{in: "someone@acme.com/x", wantReason: input.ReasonSyntax},
		{in: "http://192.0.2.1/", wantReason: input.ReasonAddressLiteral},
		{in: "192.0.2.1", wantReason: input.ReasonAddressLiteral},
		{in: "http://[2001:db8::1]/", wantReason: input.ReasonAddressLiteral},
		{in: "someone@[192.0.2.1]", wantReason: input.ReasonAddressLiteral},
		{in: "xn--zz.example", wantReason: input.ReasonIDNA},
		{in: strings.Repeat("a", 64) + ".com", wantReason: input.ReasonTooLong},
	}
	for _, tt := range tests {
		got, err := DomainFrom(tt.in)
		if tt.wantReason == "" {
			if err != nil || got != tt.want {
				t.Errorf("DomainFrom(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		var se *input.SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("DomainFrom(%q) = %q, %v; want a *input.SyntaxError with reason %s", tt.in, got, err, tt.wantReason)
			continue
		}
		if se.Reason != tt.wantReason || se.Value != tt.in || got != "" {
			t.Errorf("DomainFrom(%q): reason %q value %q result %q; want reason %q, the input as value, no result",
				tt.in, se.Reason, se.Value, got, tt.wantReason)
		}
	}
}
