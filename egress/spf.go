package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/bulkverify/bulkverify/resolve"
)

// spfResolver lets blitiri.com.ar/go/spf ask our resolver, so the SPF check
// sees the same DNS as the run. The library reads errors the way net.Resolver
// makes them (it type-asserts *net.DNSError for "not found" and "temporary"),
// so every error is translated into one.
type spfResolver struct{ res *resolve.Resolver }

var _ spf.DNSResolver = spfResolver{}

func (r spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.res.LookupTXT(ctx, name)
	return txts, dnsError(name, err)
}

func (r spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := r.res.LookupMX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	out := make([]*net.MX, len(mxs))
	for i, mx := range mxs {
		out[i] = &net.MX{Host: mx.Host + ".", Pref: mx.Preference}
	}
	return out, nil
}

func (r spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := r.res.LookupHost(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: a.AsSlice()}
	}
	return out, nil
}

func (r spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "invalid address", Name: addr}
	}
	names, err := r.res.LookupPTR(ctx, ip)
	if err != nil {
		return nil, dnsError(addr, err)
	}
	for i := range names {
		names[i] += "."
	}
	return names, nil
}

// dnsError translates our resolver's errors into net.Resolver's.
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	var te *resolve.TemporaryError
	switch {
	case errors.Is(err, resolve.ErrNXDomain), errors.Is(err, resolve.ErrNoData),
		errors.Is(err, resolve.ErrNoAddress), errors.Is(err, resolve.ErrNullMX):
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	case errors.As(err, &te):
		return &net.DNSError{Err: te.Reason, Name: name, IsTemporary: true, IsTimeout: te.Reason == "timeout"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, IsTimeout: true}
	}
	return &net.DNSError{Err: err.Error(), Name: name}
}

// checkSPF evaluates the SPF policy of sender's domain for ip (RFC 7208
// check_host with the HELO name for macros).
func checkSPF(ctx context.Context, res *resolve.Resolver, ip netip.Addr, helo, sender string) (spf.Result, error) {
	return spf.CheckHostWithSender(net.IP(ip.AsSlice()), strings.TrimSuffix(helo, "."), sender,
		spf.WithResolver(spfResolver{res}), spf.WithContext(ctx))
}
