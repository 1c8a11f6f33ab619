package mailsim

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// extraRecords is the validated form of the World's records that are not
// about mail routing: what an egress check (bulkverify doctor) asks.
type extraRecords struct {
	ptr    map[netip.Addr]string // address -> host name (normalized)
	dnsbls []dnsblModel
	myAddr string // normalized name, "" = none
}

type dnsblModel struct {
	zone   string
	listed map[netip.Addr]netip.Addr // listed address -> the A answer
	reason string
	refuse netip.Addr // invalid = answer from listed
}

func (x *extraRecords) build(w World) error {
	x.ptr = make(map[netip.Addr]string, len(w.PTR))
	for ip, name := range w.PTR {
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		if err != nil || !a.Unmap().IsLoopback() {
			return invalid("PTR: %q is not a loopback address", ip)
		}
		n := normName(name)
		if !validName(n) {
			return invalid("PTR of %s: bad name %q", ip, name)
		}
		x.ptr[a.Unmap()] = n
	}
	seen := map[string]bool{}
	for _, bl := range w.DNSBLs {
		zone := normName(bl.Zone)
		if !validName(zone) || seen[zone] {
			return invalid("DNSBL zone %q: bad or duplicate name", bl.Zone)
		}
		seen[zone] = true
		m := dnsblModel{zone: zone, reason: bl.Reason, listed: make(map[netip.Addr]netip.Addr, len(bl.Listed))}
		for ip, code := range bl.Listed {
			a, err := netip.ParseAddr(strings.TrimSpace(ip))
			c, err2 := netip.ParseAddr(strings.TrimSpace(code))
			if err != nil || err2 != nil || !a.Unmap().Is4() || !c.Is4() {
				return invalid("DNSBL %s: listing %q -> %q: want IPv4 address -> IPv4 code", zone, ip, code)
			}
			m.listed[a.Unmap()] = c
		}
		if bl.Refuse != "" {
			r, err := netip.ParseAddr(strings.TrimSpace(bl.Refuse))
			if err != nil || !r.Is4() {
				return invalid("DNSBL %s: refusal answer %q is not an IPv4 address", zone, bl.Refuse)
			}
			m.refuse = r
		}
		x.dnsbls = append(x.dnsbls, m)
	}
	if w.MyAddressName != "" {
		x.myAddr = normName(w.MyAddressName)
		if !validName(x.myAddr) {
			return invalid("MyAddressName: bad name %q", w.MyAddressName)
		}
	}
	return nil
}

// addTo publishes the static records in the zone under construction.
func (x *extraRecords) addTo(add func(dns.RR)) {
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: defaultTTL}
	}
	for a, name := range x.ptr {
		rev, err := dns.ReverseAddr(a.String())
		if err != nil {
			continue // unreachable: validated addresses
		}
		add(&dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: dns.Fqdn(name)})
	}
	for _, bl := range x.dnsbls {
		if bl.refuse.IsValid() {
			continue // answered dynamically
		}
		for a, code := range bl.listed {
			name := dnsblName(a, bl.zone)
			add(&dns.A{Hdr: hdr(name, dns.TypeA), A: code.AsSlice()})
			if bl.reason != "" {
				add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: []string{bl.reason}})
			}
		}
	}
}

// dnsblName is the RFC 5782 query name of IPv4 address a in zone.
func dnsblName(a netip.Addr, zone string) string {
	b := a.As4()
	return dns.Fqdn(strings.Join([]string{
		strconv.Itoa(int(b[3])), strconv.Itoa(int(b[2])), strconv.Itoa(int(b[1])), strconv.Itoa(int(b[0])), zone,
	}, "."))
}

// dynamic answers the names whose answer depends on the query: the "my
// address" name and refusing DNSBL zones. ok is false for every other name.
func (x *extraRecords) dynamic(name string, qtype uint16, client netip.Addr) (answer []dns.RR, ok bool) {
	hdr := func(t uint16) dns.RR_Header {
		// TTL 0: the answer is about this client only.
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 0}
	}
	if x.myAddr != "" && name == dns.Fqdn(x.myAddr) {
		switch {
		case qtype == dns.TypeTXT:
			answer = append(answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{client.String()}})
		case qtype == dns.TypeA && client.Is4():
			answer = append(answer, &dns.A{Hdr: hdr(dns.TypeA), A: client.AsSlice()})
		case qtype == dns.TypeAAAA && client.Is6():
			answer = append(answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: client.AsSlice()})
		}
		return answer, true
	}
	for _, bl := range x.dnsbls {
		if !bl.refuse.IsValid() || !strings.HasSuffix(name, "."+dns.Fqdn(bl.zone)) {
			continue
		}
		if qtype == dns.TypeA {
			answer = append(answer, &dns.A{Hdr: hdr(dns.TypeA), A: bl.refuse.AsSlice()})
		}
		return answer, true
	}
	return nil, false
}

// apexes are the names that own an SOA for negative answers.
func (x *extraRecords) apexes() []string {
	var out []string
	for _, bl := range x.dnsbls {
		out = append(out, dns.Fqdn(bl.zone))
	}
	return out
}

// clientBlock is a host's refusal of chosen client addresses.
type clientBlock struct {
	clients map[netip.Addr]bool
	reply   Reply
	atRcpt  bool
}

// defaultBlockReply is what Spamhaus-consulting servers answer; "{ip}" is
// the client's address.
var defaultBlockReply = Reply{Code: 554, Enhanced: "5.7.1",
	Message: "Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org"}

func (h *hostModel) setBlock(host Host) error {
	if len(host.BlockClients) == 0 {
		return nil
	}
	b := &clientBlock{clients: map[netip.Addr]bool{}, reply: host.BlockReply, atRcpt: host.BlockAtRcpt}
	if b.reply == (Reply{}) {
		b.reply = defaultBlockReply
	}
	if b.reply.Code < 400 || b.reply.Code > 599 {
		return invalid("host %q: BlockReply code %d is not a refusal", h.name, b.reply.Code)
	}
	if _, err := parseEnhanced(b.reply.Enhanced); err != nil {
		return invalid("host %q: BlockReply: %v", h.name, err)
	}
	for _, c := range host.BlockClients {
		a, err := netip.ParseAddr(strings.TrimSpace(c))
		if err != nil {
			return invalid("host %q: BlockClients: bad address %q", h.name, c)
		}
		b.clients[a.Unmap()] = true
	}
	h.block = b
	return nil
}

// refuses returns the refusal of client, with its address filled in, or
// false when the host serves it.
func (b *clientBlock) refuses(client string) (Reply, bool) {
	if b == nil {
		return Reply{}, false
	}
	a, err := netip.ParseAddr(client)
	if err != nil || !b.clients[a.Unmap()] {
		return Reply{}, false
	}
	r := b.reply
	r.Message = strings.ReplaceAll(r.Message, "{ip}", a.Unmap().String())
	return r, true
}

func (r Reply) line() string {
	s := strconv.Itoa(r.Code) + " "
	if r.Enhanced != "" {
		s += r.Enhanced + " "
	}
	return s + r.Message
}
