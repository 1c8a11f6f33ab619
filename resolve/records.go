package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/miekg/dns"
)

// ErrNoData means the name exists but has no records of the type asked
// (NOERROR with an empty answer, "NODATA" in RFC 2308's words).
var ErrNoData = errors.New("name has no records of that type")

// The lookups below answer the checks of an egress (reverse DNS, DNSBL,
// SPF, "what is my address" names) rather than mail routing. They share the
// cache, TTLs and single flights of LookupMail, and tell the three outcomes a
// checker branches on apart by type: ErrNXDomain (the name does not exist),
// ErrNoData (it exists without such records), *TemporaryError.

// LookupTXT returns the TXT records of name, each record's strings joined
// without separator (RFC 7208 §3.3), in the order the server sent them.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, n, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.texts), emptyErr(n, len(a.texts))
}

// LookupA returns the IPv4 addresses of name from its A records only,
// without the AAAA query LookupHost adds: a DNSBL answers with A records,
// and its NXDOMAIN ("not listed") must not be confused with a failure.
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	a, n, err := r.lookup(ctx, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.addrs), emptyErr(n, len(a.addrs))
}

// LookupMX returns the MX records of name as published, sorted like
// LookupMail's, without LookupMail's implicit MX: the SPF "mx" mechanism
// (RFC 7208 §5.4) and a canary check want the records themselves. A name
// publishing only the null MX gives ErrNullMX.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]MX, error) {
	a, n, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if a.kind == kindAnswer && len(a.mx) == 0 {
		return nil, fmt.Errorf("resolve %s: %w", n, ErrNullMX)
	}
	return slices.Clone(a.mx), emptyErr(n, len(a.mx))
}

// LookupPTR returns the names the reverse zone publishes for ip (RFC 1035
// §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa), lower-case, without the
// trailing dot, sorted. A classless delegation's CNAME (RFC 2317) is
// followed like any alias.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	if !ip.IsValid() {
		return nil, fmt.Errorf("resolve: invalid address for PTR lookup")
	}
	name, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("resolve: PTR name of %s: %w", ip, err)
	}
	a, n, err := r.lookup(ctx, name, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.names), emptyErr(n, len(a.names))
}

// lookup normalizes name, asks (name, qtype) and turns NXDOMAIN into an
// error; the caller reads the records of the answer.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, string, error) {
	n, err := normalize(name)
	if err != nil {
		return nil, "", err
	}
	a, err := r.query(ctx, n, qtype)
	if err != nil {
		return nil, n, err
	}
	if a.kind == kindNXDomain {
		return nil, n, fmt.Errorf("resolve %s %s: %w", n, dns.TypeToString[qtype], ErrNXDomain)
	}
	return a, n, nil
}

// emptyErr is ErrNoData when an existing name had no records to return.
func emptyErr(name string, records int) error {
	if records == 0 {
		return fmt.Errorf("resolve %s: %w", name, ErrNoData)
	}
	return nil
}
