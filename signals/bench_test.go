package signals

import (
	"fmt"
	"testing"

	"github.com/bulkverify/bulkverify/input"
)

// benchAddresses is a mix like a real list: mostly company domains (some
// under a country suffix, so the disposable check walks parents), a third
// at big free providers, a few roles, disposable and typo domains. The
// cost of Of is compared with input.ParseAddress, which the pipeline
// already pays for every row, in the same run:
//
//	go test -run XXX -bench 'Of|ParseAddress' -benchmem ./signals
func benchAddresses() []input.Address {
	var out []input.Address
	free := []string{"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.de", "web.de"}
	for i := range 1000 {
		var s string
		switch {
		case i%100 == 0:
			s = fmt.Sprintf("info@d%d.example.com", i)
		case i%100 == 1:
			s = fmt.Sprintf("u%d@mailinator.com", i)
		case i%100 == 2:
			s = fmt.Sprintf("u%d@gmial.com", i)
		case i%3 == 0:
			s = fmt.Sprintf("first.last%d@%s", i, free[i%len(free)])
		case i%5 == 0:
			s = fmt.Sprintf("first.last%d@sub.company%d.co.uk", i, i)
		default:
			s = fmt.Sprintf("u%d@d%d.test", i, i)
		}
		a, err := input.ParseAddress(s)
		if err != nil {
			panic(err)
		}
		out = append(out, a)
	}
	return out
}

// BenchmarkOf is the hot path: every domain has a mail host, so there is
// no close-miss search.
func BenchmarkOf(b *testing.B) {
	s := Default()
	addrs := benchAddresses()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		a := addrs[i%len(addrs)]
		if s.Of(a.Local, a.Domain, true).Role {
			n++
		}
	}
	_ = n
}

// BenchmarkOfNoMX is the worst case: no domain has a mail host, so every
// domain on no list is searched for a close miss.
func BenchmarkOfNoMX(b *testing.B) {
	s := Default()
	addrs := benchAddresses()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a := addrs[i%len(addrs)]
		s.Of(a.Local, a.Domain, false)
	}
}

// BenchmarkParseAddress is the yardstick: what the pipeline already spends
// on each row's address.
func BenchmarkParseAddress(b *testing.B) {
	addrs := benchAddresses()
	raw := make([]string, len(addrs))
	for i, a := range addrs {
		raw[i] = a.String()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := input.ParseAddress(raw[i%len(raw)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad is the one-off cost of building a Set from the built-in
// lists (at the start of a run).
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
