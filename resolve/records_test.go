package resolve

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

func TestRecordLookups(t *testing.T) {
	records := []string{
		soaRR,
		`example.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 " "-all"`,
		`example.test. 300 IN TXT "second record"`,
		"example.test. 300 IN A 192.0.2.1",
		"mx.example.test. 300 IN MX 20 b.example.test.",
		"mx.example.test. 300 IN MX 10 a.example.test.",
		"null.example.test. 300 IN MX 0 .",
		"1.2.0.192.in-addr.arpa. 300 IN PTR Mail.Example.TEST.",
		"1.2.0.192.in-addr.arpa. 300 IN PTR mail.example.test.",
		"1.2.0.192.in-addr.arpa. 300 IN PTR a.example.test.",
		// RFC 2317 classless delegation: the PTR sits behind a CNAME.
		"9.2.0.192.in-addr.arpa. 300 IN CNAME 9.0-25.2.0.192.in-addr.arpa.",
		"9.0-25.2.0.192.in-addr.arpa. 300 IN PTR nine.example.test.",
		"5.2.0.192.in-addr.arpa. 300 IN PTR five.example.test.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR six.example.test.",
		"2.0.0.127.bl.example.test. 300 IN A 127.0.0.2",
	}
	srv := startServer(t, zone(t, records...))
	r := newTestResolver(t, Config{}, srv)
	ctx := context.Background()

	tests := []struct {
		name    string
		do      func() (any, error)
		want    any
		wantErr error
		asked   string // name whose queries are counted
		qtype   uint16
	}{
		{
			name:  "TXT strings of one record are joined",
			do:    func() (any, error) { return r.LookupTXT(ctx, "Example.TEST.") },
			want:  []string{"v=spf1 ip4:192.0.2.0/24 -all", "second record"},
			asked: "example.test", qtype: dns.TypeTXT,
		},
		{
			name:    "TXT of a name without TXT",
			do:      func() (any, error) { return r.LookupTXT(ctx, "mx.example.test") },
			want:    []string(nil),
			wantErr: ErrNoData,
			asked:   "mx.example.test", qtype: dns.TypeTXT,
		},
		{
			name:    "TXT of a missing name",
			do:      func() (any, error) { return r.LookupTXT(ctx, "missing.example.test") },
			want:    []string(nil),
			wantErr: ErrNXDomain,
			asked:   "missing.example.test", qtype: dns.TypeTXT,
		},
		{
			name:  "PTR names sorted, lower-case, deduplicated",
			do:    func() (any, error) { return r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1")) },
			want:  []string{"a.example.test", "mail.example.test"},
			asked: "1.2.0.192.in-addr.arpa", qtype: dns.TypePTR,
		},
		{
			name:  "PTR behind an RFC 2317 CNAME",
			do:    func() (any, error) { return r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.9")) },
			want:  []string{"nine.example.test"},
			asked: "9.2.0.192.in-addr.arpa", qtype: dns.TypePTR,
		},
		{
			name:  "PTR of an IPv6 address",
			do:    func() (any, error) { return r.LookupPTR(ctx, netip.MustParseAddr("2001:db8::1")) },
			want:  []string{"six.example.test"},
			asked: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", qtype: dns.TypePTR,
		},
		{
			name:  "PTR of an IPv4-mapped address asks in-addr.arpa",
			do:    func() (any, error) { return r.LookupPTR(ctx, netip.MustParseAddr("::ffff:192.0.2.5")) },
			want:  []string{"five.example.test"},
			asked: "5.2.0.192.in-addr.arpa", qtype: dns.TypePTR,
		},
		{
			name:    "no PTR",
			do:      func() (any, error) { return r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.77")) },
			want:    []string(nil),
			wantErr: ErrNXDomain,
			asked:   "77.2.0.192.in-addr.arpa", qtype: dns.TypePTR,
		},
		{
			name:  "A only: a DNSBL listing",
			do:    func() (any, error) { return r.LookupA(ctx, "2.0.0.127.bl.example.test") },
			want:  []netip.Addr{netip.MustParseAddr("127.0.0.2")},
			asked: "2.0.0.127.bl.example.test", qtype: dns.TypeA,
		},
		{
			name:    "A only: not listed is NXDOMAIN",
			do:      func() (any, error) { return r.LookupA(ctx, "3.0.0.127.bl.example.test") },
			want:    []netip.Addr(nil),
			wantErr: ErrNXDomain,
			asked:   "3.0.0.127.bl.example.test", qtype: dns.TypeA,
		},
		{
			name:  "MX as published",
			do:    func() (any, error) { return r.LookupMX(ctx, "mx.example.test") },
			want:  []MX{{"a.example.test", 10}, {"b.example.test", 20}},
			asked: "mx.example.test", qtype: dns.TypeMX,
		},
		{
			name:    "MX without the implicit MX",
			do:      func() (any, error) { return r.LookupMX(ctx, "example.test") },
			want:    []MX(nil),
			wantErr: ErrNoData,
			asked:   "example.test", qtype: dns.TypeMX,
		},
		{
			name:    "MX null",
			do:      func() (any, error) { return r.LookupMX(ctx, "null.example.test") },
			want:    []MX(nil),
			wantErr: ErrNullMX,
			asked:   "null.example.test", qtype: dns.TypeMX,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.count(tc.asked, tc.qtype)
			got, err := tc.do()
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			if n := srv.count(tc.asked, tc.qtype) - before; n != 1 {
				t.Errorf("%d %s queries for %s, want 1", n, dns.TypeToString[tc.qtype], tc.asked)
			}
			// Asked again: from the cache, positive or negative.
			if _, err2 := tc.do(); (err2 == nil) != (err == nil) {
				t.Errorf("second lookup: err = %v, first was %v", err2, err)
			}
			if n := srv.count(tc.asked, tc.qtype) - before; n != 1 {
				t.Errorf("after a second lookup %d queries, want 1 (cached)", n)
			}
		})
	}
	if n := srv.count("2.0.0.127.bl.example.test", dns.TypeAAAA); n != 0 {
		t.Errorf("LookupA sent %d AAAA queries", n)
	}
	if n := srv.count("example.test", dns.TypeA); n != 0 {
		t.Errorf("LookupMX fell back to A (%d queries)", n)
	}
}

func TestRecordLookupTemporaryFailure(t *testing.T) {
	srv := startServer(t, rcodeReply(dns.RcodeServerFailure))
	r := newTestResolver(t, Config{Attempts: 2}, srv)
	ctx := context.Background()
	for name, do := range map[string]func() error{
		"TXT": func() error { _, err := r.LookupTXT(ctx, "example.test"); return err },
		"A":   func() error { _, err := r.LookupA(ctx, "example.test"); return err },
		"MX":  func() error { _, err := r.LookupMX(ctx, "example.test"); return err },
		"PTR": func() error { _, err := r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1")); return err },
	} {
		var te *TemporaryError
		if err := do(); !errors.As(err, &te) || te.Reason != "servfail" {
			t.Errorf("%s: err = %v, want a servfail TemporaryError", name, err)
		}
	}
	if _, err := r.LookupPTR(ctx, netip.Addr{}); err == nil {
		t.Error("PTR of the zero address: no error")
	}
}
