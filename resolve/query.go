package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

type kind uint8

const (
	kindAnswer   kind = iota // records of the asked type exist (for MX possibly only the null MX)
	kindNoData               // NOERROR without records of the asked type
	kindNXDomain             // NXDOMAIN
)

// answer is what one (name, type) query settled to. It is shared between
// cache readers and singleflight callers, so it is never modified after
// parse builds it; callers clone slices before handing them out.
type answer struct {
	kind   kind
	mx     []MX // sorted, deduplicated, null MX targets removed
	nullMX bool // a "." target was present
	addrs  []netip.Addr
	texts  []string      // TXT: each record's strings joined
	names  []string      // PTR targets: lower-case, no trailing dot
	ttl    time.Duration // how long the answer may be cached
}

type cacheKey struct {
	name  string // normalized
	qtype uint16
}

type entry struct {
	a       *answer
	expires time.Time
}

func (r *Resolver) cached(k cacheKey) (*answer, bool) {
	e, ok := r.cache.Get(k)
	if !ok {
		return nil, false
	}
	if !r.now().Before(e.expires) {
		r.cache.Remove(k)
		return nil, false
	}
	return e.a, true
}

// query answers (name, qtype) from the cache or by one shared exchange.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("resolve %s %s: %w", name, dns.TypeToString[qtype], err)
	}
	k := cacheKey{name, qtype}
	if a, ok := r.cached(k); ok {
		r.hits.Add(1)
		return a, nil
	}
	r.misses.Add(1)
	ch := r.flight.DoChan(name+"/"+strconv.Itoa(int(qtype)), func() (any, error) {
		// A flight that finished between our cache miss and joining
		// would otherwise make us send a duplicate query.
		if a, ok := r.cached(k); ok {
			return a, nil
		}
		// The exchange is shared by every caller that joins, so one
		// caller giving up must not fail it for the others; the
		// per-attempt timeouts bound it instead.
		a, err := r.exchange(context.WithoutCancel(ctx), name, qtype)
		if err != nil {
			return nil, err
		}
		if a.ttl > 0 {
			r.cache.Add(k, entry{a: a, expires: r.now().Add(a.ttl)})
		}
		return a, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("resolve %s %s: %w", name, dns.TypeToString[qtype], ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*answer), nil
	}
}

// exchange sends the query up to r.attempts times, rotating over the
// servers, and returns the first definitive answer.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*answer, error) {
	fqdn := dns.Fqdn(name)
	var last *TemporaryError
	for i := range r.attempts {
		server := r.servers[i%len(r.servers)]
		resp, reason, err := r.try(ctx, server, fqdn, qtype)
		if reason != "" {
			last = &TemporaryError{Name: name, Reason: reason, Err: err}
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return r.parse(resp, fqdn, qtype), nil
		case dns.RcodeNameError:
			return &answer{kind: kindNXDomain, ttl: r.negTTL(resp)}, nil
		case dns.RcodeServerFailure:
			last = &TemporaryError{Name: name, Reason: "servfail"}
		case dns.RcodeRefused:
			last = &TemporaryError{Name: name, Reason: "refused"}
		default:
			// FORMERR, NOTIMP and friends: another server may do better.
			reason := strings.ToLower(dns.RcodeToString[resp.Rcode])
			if reason == "" {
				reason = "rcode" + strconv.Itoa(resp.Rcode)
			}
			last = &TemporaryError{Name: name, Reason: reason}
		}
	}
	return nil, last
}

// try makes one attempt at one server: UDP, then TCP if truncated. A
// non-empty reason means the attempt failed before a usable response.
func (r *Resolver) try(ctx context.Context, server, fqdn string, qtype uint16) (*dns.Msg, string, error) {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype) // also sets RD and a fresh random ID
	m.SetEdns0(ednsUDPSize, false)

	r.queries.Add(1)
	resp, err := r.udp.exchange(ctx, m, server)
	if err == nil && resp.Truncated {
		r.queries.Add(1)
		resp, _, err = r.tcp.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, failureReason(err), err
	}
	// miekg/dns already discards responses with a foreign ID; a response
	// that is not about our question cannot be trusted either.
	if !resp.Response || !sameQuestion(resp, fqdn, qtype) {
		if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
			return nil, "mismatch", nil
		}
	}
	return resp, "", nil
}

func sameQuestion(resp *dns.Msg, fqdn string, qtype uint16) bool {
	if len(resp.Question) != 1 {
		return false
	}
	q := resp.Question[0]
	return q.Qtype == qtype && q.Qclass == dns.ClassINET && strings.EqualFold(q.Name, fqdn)
}

func failureReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var de *dns.Error
	if errors.As(err, &de) {
		return "malformed"
	}
	return "network"
}

// parse reads a NOERROR response. Records of the asked type are taken for
// the name and for every CNAME target the recursive server included, so
// aliases work without following them ourselves.
func (r *Resolver) parse(resp *dns.Msg, fqdn string, qtype uint16) *answer {
	owners := map[string]bool{strings.ToLower(fqdn): true}
	minTTL := uint32(0)
	haveTTL := false
	use := func(rr dns.RR) {
		if t := rr.Header().Ttl; !haveTTL || t < minTTL {
			minTTL, haveTTL = t, true
		}
	}
	// Follow the chain to a fixed point; each pass adds at least one
	// owner, so this ends within len(Answer) passes whatever the order.
	for grown := true; grown; {
		grown = false
		for _, rr := range resp.Answer {
			c, ok := rr.(*dns.CNAME)
			if !ok || !owners[strings.ToLower(c.Hdr.Name)] {
				continue
			}
			if t := strings.ToLower(c.Target); !owners[t] {
				owners[t] = true
				use(c)
				grown = true
			}
		}
	}

	a := &answer{kind: kindAnswer}
	found := false
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype != qtype || !owners[strings.ToLower(rr.Header().Name)] {
			continue
		}
		switch v := rr.(type) {
		case *dns.MX:
			host := strings.ToLower(strings.TrimSuffix(v.Mx, "."))
			if host == "" {
				a.nullMX = true
			} else {
				a.mx = append(a.mx, MX{Host: host, Preference: v.Preference})
			}
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(v.A.To4()); ok {
				a.addrs = append(a.addrs, ip)
			} else {
				continue
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				a.addrs = append(a.addrs, ip)
			} else {
				continue
			}
		case *dns.TXT:
			// RFC 7208 §3.3: the strings of one record are one text,
			// concatenated without spaces.
			a.texts = append(a.texts, strings.Join(v.Txt, ""))
		case *dns.PTR:
			name := strings.ToLower(strings.TrimSuffix(v.Ptr, "."))
			if name == "" {
				continue
			}
			a.names = append(a.names, name)
		default:
			continue
		}
		found = true
		use(rr)
	}
	if !found {
		return &answer{kind: kindNoData, ttl: r.negTTL(resp)}
	}

	slices.SortFunc(a.mx, func(x, y MX) int {
		return cmp.Or(cmp.Compare(x.Preference, y.Preference), strings.Compare(x.Host, y.Host))
	})
	a.mx = dedupHosts(a.mx)
	a.addrs = dedupAddrs(a.addrs)
	slices.Sort(a.names)
	a.names = slices.Compact(a.names)

	ttl := time.Duration(minTTL) * time.Second
	a.ttl = min(max(ttl, r.minTTL), r.maxTTL)
	return a
}

// dedupHosts keeps the most preferred entry of a host listed twice; mx is
// already sorted.
func dedupHosts(mx []MX) []MX {
	seen := make(map[string]bool, len(mx))
	out := mx[:0]
	for _, m := range mx {
		if !seen[m.Host] {
			seen[m.Host] = true
			out = append(out, m)
		}
	}
	return out
}

func dedupAddrs(addrs []netip.Addr) []netip.Addr {
	seen := make(map[netip.Addr]bool, len(addrs))
	out := addrs[:0]
	for _, ip := range addrs {
		if !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

// negTTL is the RFC 2308 negative caching time: the smaller of the SOA's
// own TTL and its MINIMUM field, capped by the configured bound.
func (r *Resolver) negTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(ttl, r.negativeTTL)
		}
	}
	return r.negativeTTL
}
