package mailsim

import (
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// negativeTTL is the SOA minimum (and SOA TTL) of negative answers, short so
// that negative caching in a resolver under test is observable but harmless.
const negativeTTL = 60

// ednsSize is the UDP payload size this server advertises when the query
// carries EDNS0 (the DNS flag day 2020 recommendation).
const ednsSize = 1232

// zone is the authoritative data built from a model. It is immutable after
// newZone; handlers copy records before answering because packing a record
// writes its Rdlength.
type zone struct {
	extra    *extraRecords                  // answers that depend on the client
	rrs      map[string]map[uint16][]dns.RR // lower-case fqdn -> type -> records
	exists   map[string]bool                // every owner name and its ancestors (empty non-terminals)
	apexes   map[string]bool                // fqdn of every world domain
	servFail []string                       // fqdn of ServFail domains
}

func newZone(m *model) *zone {
	z := &zone{
		extra:  &m.records,
		rrs:    make(map[string]map[uint16][]dns.RR),
		exists: make(map[string]bool),
		apexes: make(map[string]bool),
	}
	add := func(rr dns.RR) {
		h := rr.Header()
		byType := z.rrs[h.Name]
		if byType == nil {
			byType = make(map[uint16][]dns.RR)
			z.rrs[h.Name] = byType
		}
		for _, old := range byType[h.Rrtype] {
			if dns.IsDuplicate(old, rr) {
				return
			}
		}
		byType[h.Rrtype] = append(byType[h.Rrtype], rr)
	}
	hdr := func(name string, t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}

	names := make([]string, 0, len(m.domains))
	for name := range m.domains {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic record order
	for _, name := range names {
		d := m.domains[name]
		fqdn := dns.Fqdn(name)
		z.apexes[fqdn] = true
		if d.servFail {
			z.servFail = append(z.servFail, fqdn)
		}
		add(&dns.SOA{Hdr: hdr(fqdn, dns.TypeSOA, d.ttl), Ns: "ns.mailsim.test.", Mbox: "hostmaster.mailsim.test.",
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negativeTTL})
		if d.nullMX {
			add(&dns.MX{Hdr: hdr(fqdn, dns.TypeMX, d.ttl), Preference: 0, Mx: "."})
		}
		mxs := append([]MX(nil), d.mx...)
		sort.SliceStable(mxs, func(i, j int) bool {
			if mxs[i].Preference != mxs[j].Preference {
				return mxs[i].Preference < mxs[j].Preference
			}
			return mxs[i].Host < mxs[j].Host
		})
		for _, mx := range mxs {
			add(&dns.MX{Hdr: hdr(fqdn, dns.TypeMX, d.ttl), Preference: mx.Preference, Mx: dns.Fqdn(mx.Host)})
		}
		for _, txt := range d.txt {
			add(&dns.TXT{Hdr: hdr(fqdn, dns.TypeTXT, d.ttl), Txt: splitTXT(txt)})
		}
		for _, a := range d.addrs {
			if a.Is4() {
				add(&dns.A{Hdr: hdr(fqdn, dns.TypeA, d.ttl), A: net.IP(a.AsSlice())})
			} else {
				add(&dns.AAAA{Hdr: hdr(fqdn, dns.TypeAAAA, d.ttl), AAAA: net.IP(a.AsSlice())})
			}
		}
	}
	for _, h := range m.hosts {
		fqdn := dns.Fqdn(h.name)
		add(&dns.A{Hdr: hdr(fqdn, dns.TypeA, ttlFor(m, h.name)), A: net.IP(h.ip.AsSlice())})
	}
	m.records.addTo(add)
	for _, apex := range m.records.apexes() {
		z.apexes[apex] = true
		z.exists[apex] = true
	}
	for name := range z.rrs {
		for n := name; ; {
			z.exists[n] = true
			if n == "." {
				break
			}
			_, rest, _ := strings.Cut(n, ".")
			if rest == "" {
				rest = "."
			}
			n = rest
		}
	}
	return z
}

// ttlFor gives a host the TTL of the closest enclosing world domain, so that
// "mx1.acme.test" expires together with "acme.test".
func ttlFor(m *model, name string) uint32 {
	for n := name; n != ""; {
		if d := m.domains[n]; d != nil {
			return d.ttl
		}
		_, rest, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		n = rest
	}
	return defaultTTL
}

func (z *zone) isServFail(fqdn string) bool {
	for _, d := range z.servFail {
		if fqdn == d || strings.HasSuffix(fqdn, "."+d) {
			return true
		}
	}
	return false
}

// soaFor builds the SOA for a negative answer: owned by the closest enclosing
// world domain, or else by the top-level label, as a real parent zone would.
func (z *zone) soaFor(fqdn string) *dns.SOA {
	owner := "."
	for n := fqdn; n != "."; {
		if z.apexes[n] {
			owner = n
			break
		}
		_, rest, _ := strings.Cut(n, ".")
		if rest == "" {
			owner = n // top-level label
			break
		}
		n = rest
	}
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negativeTTL},
		Ns:  "ns.mailsim.test.", Mbox: "hostmaster.mailsim.test.",
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negativeTTL,
	}
}

// dnsCounter counts queries by (lower-case fqdn, qtype).
type dnsCounter struct {
	mu     sync.Mutex
	counts map[dnsKey]int
	total  int
}

type dnsKey struct {
	name  string
	qtype uint16
}

func (c *dnsCounter) add(name string, qtype uint16) {
	c.mu.Lock()
	c.counts[dnsKey{name, qtype}]++
	c.total++
	c.mu.Unlock()
}

// dnsHandler answers from the zone. miekg/dns's default accept function has
// already rejected messages that are not a QUERY with exactly one question.
// With rtt > 0 every answer is held until rtt after the query arrived; the
// wait ends early, without an answer, when stop is closed. miekg/dns runs the
// handler in its own goroutine per UDP query, so UDP queries wait in
// parallel; on one TCP connection they are answered in turn.
func dnsHandler(z *zone, c *dnsCounter, rtt time.Duration, stop <-chan struct{}) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		due := time.Now().Add(rtt)
		resp := new(dns.Msg)
		resp.SetReply(req)
		if len(req.Question) != 1 {
			resp.SetRcode(req, dns.RcodeFormatError)
			_ = w.WriteMsg(resp)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(dns.Fqdn(q.Name))
		c.add(name, q.Qtype)

		switch {
		case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
			resp.Rcode = dns.RcodeRefused
		case z.isServFail(name):
			resp.Rcode = dns.RcodeServerFailure
		case z.answerDynamic(resp, name, q, w.RemoteAddr()):
		default:
			resp.Authoritative = true
			if !z.exists[name] {
				resp.Rcode = dns.RcodeNameError
				resp.Ns = []dns.RR{z.soaFor(name)}
				break
			}
			var found []dns.RR
			if q.Qtype == dns.TypeANY {
				for _, rrs := range z.rrs[name] {
					found = append(found, rrs...)
				}
			} else {
				found = z.rrs[name][q.Qtype]
			}
			for _, rr := range found {
				cp := dns.Copy(rr)
				cp.Header().Name = q.Name // echo the query's case (0x20)
				resp.Answer = append(resp.Answer, cp)
			}
			if len(resp.Answer) == 0 {
				resp.Ns = []dns.RR{z.soaFor(name)}
			}
		}

		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			resp.SetEdns0(ednsSize, false)
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.Compress = true
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			resp.Truncate(size)
		}
		if d := time.Until(due); rtt > 0 && d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
		_ = w.WriteMsg(resp)
	}
}

// answerDynamic fills resp for a name whose answer depends on who asks (see
// extraRecords.dynamic) and reports whether it did.
func (z *zone) answerDynamic(resp *dns.Msg, name string, q dns.Question, from net.Addr) bool {
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(from.String()); err == nil {
		client = ap.Addr().Unmap()
	}
	answer, ok := z.extra.dynamic(name, q.Qtype, client)
	if !ok {
		return false
	}
	resp.Authoritative = true
	for _, rr := range answer {
		rr.Header().Name = q.Name // echo the query's case (0x20)
	}
	resp.Answer = answer
	if len(answer) == 0 {
		resp.Ns = []dns.RR{z.soaFor(name)}
	}
	return true
}

// splitTXT cuts a TXT text into the 255-byte character-strings a record is
// made of (RFC 1035 §3.3.14); readers join them again (RFC 7208 §3.3).
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
