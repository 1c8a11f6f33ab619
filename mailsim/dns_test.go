package mailsim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsWorld is the example world plus the DNS corner cases.
func dnsWorld() World {
	w := Example()
	w.Domains = append(w.Domains,
		Domain{Name: "servfail.test", ServFail: true, MX: []MX{{Preference: 10, Host: "mx.servfail.test"}}},
		Domain{Name: "ttl.test", TTL: 42, MX: []MX{{Preference: 5, Host: "mx.ttl.test"}}},
		Domain{Name: "v6.test", A: []string{"::1", "127.0.0.99"}},
	)
	w.Hosts = append(w.Hosts,
		Host{Name: "mx.servfail.test", IP: "127.0.0.61", Down: true},
		Host{Name: "mx.ttl.test", IP: "127.0.0.62", Down: true},
	)
	return w
}

// rrStrings renders records without the owner's case, for comparison.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.MX:
			out = append(out, fmt.Sprintf("MX %d %s ttl=%d", v.Preference, v.Mx, v.Hdr.Ttl))
		case *dns.A:
			out = append(out, fmt.Sprintf("A %s ttl=%d", v.A, v.Hdr.Ttl))
		case *dns.AAAA:
			out = append(out, fmt.Sprintf("AAAA %s ttl=%d", v.AAAA, v.Hdr.Ttl))
		case *dns.SOA:
			out = append(out, fmt.Sprintf("SOA %s min=%d", v.Hdr.Name, v.Minttl))
		case *dns.OPT:
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func TestDNSAnswers(t *testing.T) {
	t.Parallel()
	s := startSim(t, dnsWorld())
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string // in order
		ns     []string
	}{
		{"mx sorted by preference", "acme.test", dns.TypeMX, dns.RcodeSuccess,
			[]string{"MX 10 mx1.acme.test. ttl=300", "MX 20 mx2.acme.test. ttl=300"}, nil},
		{"mx any case, trailing dot", "ACME.Test.", dns.TypeMX, dns.RcodeSuccess,
			[]string{"MX 10 mx1.acme.test. ttl=300", "MX 20 mx2.acme.test. ttl=300"}, nil},
		{"shared provider mx", "initech.test", dns.TypeMX, dns.RcodeSuccess,
			[]string{"MX 10 mx.mailhost.test. ttl=300"}, nil},
		{"null mx", "nullmx.test", dns.TypeMX, dns.RcodeSuccess, []string{"MX 0 . ttl=300"}, nil},
		{"nxdomain has parent soa", "nonexistent.test", dns.TypeMX, dns.RcodeNameError,
			nil, []string{"SOA test. min=60"}},
		{"nxdomain under a world domain", "nobody.acme.test", dns.TypeA, dns.RcodeNameError,
			nil, []string{"SOA acme.test. min=60"}},
		{"nodata for implicit mx domain", "implicit.test", dns.TypeMX, dns.RcodeSuccess,
			nil, []string{"SOA implicit.test. min=60"}},
		{"implicit mx address, deduplicated", "implicit.test", dns.TypeA, dns.RcodeSuccess,
			[]string{"A 127.0.0.30 ttl=300"}, nil},
		{"host address", "mx1.acme.test", dns.TypeA, dns.RcodeSuccess, []string{"A 127.0.0.11 ttl=300"}, nil},
		{"down host still published", "mx.ttl.test", dns.TypeA, dns.RcodeSuccess, []string{"A 127.0.0.62 ttl=42"}, nil},
		{"domain ttl", "ttl.test", dns.TypeMX, dns.RcodeSuccess, []string{"MX 5 mx.ttl.test. ttl=42"}, nil},
		{"host has no aaaa", "mx1.acme.test", dns.TypeAAAA, dns.RcodeSuccess, nil, []string{"SOA acme.test. min=60"}},
		{"empty non-terminal is nodata", "mailhost.test", dns.TypeMX, dns.RcodeSuccess, nil, []string{"SOA test. min=60"}},
		{"aaaa", "v6.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA ::1 ttl=300"}, nil},
		{"a next to aaaa", "v6.test", dns.TypeA, dns.RcodeSuccess, []string{"A 127.0.0.99 ttl=300"}, nil},
		{"servfail domain", "servfail.test", dns.TypeMX, dns.RcodeServerFailure, nil, nil},
		{"servfail below domain", "mx.servfail.test", dns.TypeA, dns.RcodeServerFailure, nil, nil},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				r := query(t, s, network, tc.qname, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if want := tc.rcode != dns.RcodeServerFailure; r.Authoritative != want {
					t.Errorf("AA = %v, want %v", r.Authoritative, want)
				}
				if r.Truncated {
					t.Errorf("TC set on a small answer")
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("answer %q, want %q", got, tc.answer)
				}
				if got := rrStrings(r.Ns); !slices.Equal(got, tc.ns) {
					t.Errorf("authority %q, want %q", got, tc.ns)
				}
				for _, rr := range r.Answer {
					if rr.Header().Name != dns.Fqdn(tc.qname) {
						t.Errorf("owner %q does not echo the question %q", rr.Header().Name, tc.qname)
					}
				}
			})
		}
	}
}

func TestDNSQueryCounting(t *testing.T) {
	t.Parallel()
	s := startSim(t, Example())
	query(t, s, "udp", "acme.test", dns.TypeMX, 0)
	query(t, s, "tcp", "ACME.TEST", dns.TypeMX, 0)
	query(t, s, "udp", "Acme.Test.", dns.TypeMX, 1232)
	query(t, s, "udp", "mx1.acme.test", dns.TypeA, 0)
	query(t, s, "udp", "nonexistent.test", dns.TypeMX, 0)

	tests := []struct {
		name  string
		qtype uint16
		want  int
	}{
		{"acme.test", dns.TypeMX, 3},
		{"ACME.TEST.", dns.TypeMX, 3},
		{"acme.test", dns.TypeA, 0},
		{"mx1.acme.test.", dns.TypeA, 1},
		{"NONEXISTENT.test", dns.TypeMX, 1},
		{"globex.test", dns.TypeMX, 0},
	}
	for _, tc := range tests {
		if got := s.DNSQueries(tc.name, tc.qtype); got != tc.want {
			t.Errorf("DNSQueries(%q, %s) = %d, want %d", tc.name, dns.TypeToString[tc.qtype], got, tc.want)
		}
	}
	if got := s.TotalDNSQueries(); got != 5 {
		t.Errorf("TotalDNSQueries = %d, want 5", got)
	}
}

func TestDNSTruncation(t *testing.T) {
	t.Parallel()
	w := World{Domains: []Domain{{Name: "big.test"}}}
	for i := range 40 {
		name := fmt.Sprintf("mx%02d.big.test", i)
		w.Domains[0].MX = append(w.Domains[0].MX, MX{Preference: uint16(i), Host: name})
		w.Hosts = append(w.Hosts, Host{Name: name, IP: fmt.Sprintf("127.0.1.%d", i+1), Down: true})
	}
	s := startSim(t, w)

	tests := []struct {
		network   string
		bufsize   uint16
		truncated bool
	}{
		{"udp", 0, true},     // 512 bytes without EDNS0
		{"udp", 600, true},   // still too small
		{"udp", 4096, false}, // EDNS0 makes room
		{"tcp", 0, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d", tc.network, tc.bufsize), func(t *testing.T) {
			r := query(t, s, tc.network, "big.test", dns.TypeMX, tc.bufsize)
			if r.Truncated != tc.truncated {
				t.Fatalf("TC = %v, want %v", r.Truncated, tc.truncated)
			}
			if tc.truncated {
				if len(r.Answer) >= 40 {
					t.Errorf("truncated answer still has %d records", len(r.Answer))
				}
				limit := max(int(tc.bufsize), dns.MinMsgSize)
				r.Compress = true // as it came over the wire
				if n := r.Len(); n > limit {
					t.Errorf("answer is %d bytes, limit %d", n, limit)
				}
				return
			}
			if len(r.Answer) != 40 {
				t.Fatalf("got %d MX, want 40", len(r.Answer))
			}
			for i, rr := range r.Answer {
				if mx := rr.(*dns.MX); mx.Preference != uint16(i) {
					t.Errorf("record %d has preference %d", i, mx.Preference)
				}
			}
		})
	}
}

func TestDNSQueryAfterClose(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), Example(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.DNSAddr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("acme.test.", dns.TypeMX)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	if _, _, err := c.Exchange(m, addr); err == nil {
		t.Fatal("TCP query answered after Close")
	}
}
