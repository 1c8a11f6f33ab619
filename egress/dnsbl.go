package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/resolve"
)

// DefaultDNSBLZones are widely used public blocklists that receivers
// consult for the sending address.
func DefaultDNSBLZones() []string {
	return []string{"zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org", "psbl.surriel.com"}
}

// dnsblVerdict is what a DNSBL said about an address.
type dnsblVerdict int

const (
	dnsblClean     dnsblVerdict = iota // NXDOMAIN: not listed
	dnsblListed                        // an answer in 127.0.0.0/8
	dnsblUnchecked                     // refused (127.255.255.x), failed, or an answer that cannot be a listing
)

type dnsblResult struct {
	verdict dnsblVerdict
	answer  netip.Addr // the A answer, if any
	reason  string     // the TXT record of a listing, or why it could not be checked
}

// dnsblQueryName is the RFC 5782 name for ip in zone: reversed octets, or
// reversed nibbles for IPv6.
func dnsblQueryName(ip netip.Addr, zone string) (string, error) {
	rev, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return "", err
	}
	rev = strings.TrimSuffix(rev, "in-addr.arpa.")
	rev = strings.TrimSuffix(rev, "ip6.arpa.")
	return rev + zone, nil
}

// dqsZone rewrites a Spamhaus public zone to its Data Query Service form
// ("zen.spamhaus.org" -> "KEY.zen.dq.spamhaus.net"); other zones are kept.
func dqsZone(zone, key string) (string, bool) {
	if key == "" || !strings.HasSuffix(zone, ".spamhaus.org") {
		return zone, false
	}
	return key + "." + strings.TrimSuffix(zone, ".spamhaus.org") + ".dq.spamhaus.net", true
}

// spamhausRefusals are the 127.255.255.x answers by which Spamhaus says it
// did not answer the question; they are never a listing.
var spamhausRefusals = map[netip.Addr]string{
	netip.MustParseAddr("127.255.255.252"): "the query name is malformed (typo in the zone?)",
	netip.MustParseAddr("127.255.255.254"): "queries through public or open resolvers are refused",
	netip.MustParseAddr("127.255.255.255"): "the query limit of the free service is exceeded",
}

func lookupDNSBL(ctx context.Context, res *resolve.Resolver, ip netip.Addr, zone string) dnsblResult {
	name, err := dnsblQueryName(ip, zone)
	if err != nil {
		return dnsblResult{verdict: dnsblUnchecked, reason: err.Error()}
	}
	addrs, err := res.LookupA(ctx, name)
	var te *resolve.TemporaryError
	switch {
	case errors.Is(err, resolve.ErrNXDomain):
		return dnsblResult{verdict: dnsblClean}
	case errors.As(err, &te):
		return dnsblResult{verdict: dnsblUnchecked, reason: "DNS failure (" + te.Reason + ")"}
	case errors.Is(err, resolve.ErrNoData):
		return dnsblResult{verdict: dnsblUnchecked, reason: "the zone answered without an address (is it still in service?)"}
	case err != nil:
		return dnsblResult{verdict: dnsblUnchecked, reason: err.Error()}
	}
	a := addrs[0]
	if why, ok := spamhausRefusals[a]; ok || netip.MustParsePrefix("127.255.255.0/24").Contains(a) {
		if !ok {
			why = "the list refused the query"
		}
		return dnsblResult{verdict: dnsblUnchecked, answer: a, reason: why}
	}
	if !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
		return dnsblResult{verdict: dnsblUnchecked, answer: a,
			reason: fmt.Sprintf("answer %s is not a listing code (a resolver that rewrites NXDOMAIN?)", a)}
	}
	r := dnsblResult{verdict: dnsblListed, answer: a}
	if txts, err := res.LookupTXT(ctx, name); err == nil && len(txts) > 0 {
		r.reason = txts[0]
	}
	return r
}
