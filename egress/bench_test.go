package egress

import "testing"

// BenchmarkSession compares the setup of a probe session (connect, banner,
// EHLO, QUIT) to a mailsim host on loopback, direct and through an
// in-process SOCKS5 proxy: the proxy path's cost per connection. Compare the
// two lines of one run (go test -bench Session -run ^$ ./egress).
func BenchmarkSession(b *testing.B) {
	sim := startSim(b, mailWorld())
	proxy := startSOCKS(b, socksOptions{})
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"direct", Config{SourceIPs: []string{"127.0.7.1"}}},
		{"socks5", Config{Proxies: []string{proxy.url("")}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			e := p.Egresses()[0]
			for b.Loop() {
				if _, err := session(b, e, hostport(sim, "127.0.4.10")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
