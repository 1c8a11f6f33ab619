package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// doctorWorld is a world with three sending addresses in three states:
// 127.0.6.1 is set up right, 127.0.6.2 has a PTR that does not resolve back
// and is listed, 127.0.6.3 has no PTR at all.
func doctorWorld() mailsim.World {
	return mailsim.World{
		Domains: []mailsim.Domain{
			{Name: "canary.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.canary.test"}}},
			{Name: "downcanary.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.downcanary.test"}}},
			{Name: "doctor.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.canary.test"}},
				TXT: []string{"v=spf1 ip4:127.0.6.1 -all"}},
			{Name: "good.doctor.test", A: []string{"127.0.6.1"}},
			{Name: "bad.doctor.test", A: []string{"127.0.0.99"}},
			{Name: "nospf.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.canary.test"}}},
			{Name: "softspf.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.canary.test"}}, TXT: []string{"v=spf1 ~all"}},
			{Name: "brokenspf.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.canary.test"}}, TXT: []string{"v=spf1 ip4:nonsense -all"}},
			{Name: "nomx.test", A: []string{"127.0.0.98"}},
		},
		Hosts: []mailsim.Host{
			{Name: "mx.canary.test", IP: "127.0.6.10"},
			{Name: "mx.downcanary.test", IP: "127.0.6.11", Down: true},
		},
		PTR: map[string]string{"127.0.6.1": "good.doctor.test", "127.0.6.2": "bad.doctor.test"},
		DNSBLs: []mailsim.DNSBL{
			{Zone: "bl.doctor.test", Listed: map[string]string{"127.0.6.2": "127.0.0.2"}, Reason: "seen spamming"},
			{Zone: "refuse.doctor.test", Refuse: "127.255.255.254"},
			{Zone: "hijack.doctor.test", Listed: map[string]string{"127.0.6.1": "198.51.100.1"}},
		},
		MyAddressName: "myaddr.doctor.test",
	}
}

func doctorConfig(sim *mailsim.Sim) DoctorConfig {
	return DoctorConfig{
		HeloName:       "good.doctor.test",
		MailFrom:       "verify@doctor.test",
		Port:           sim.SMTPPort(),
		Probe:          probe.Config{GreetingTimeout: time.Second, CommandTimeout: time.Second},
		DNSCanaries:    []string{"canary.test"},
		Port25Canaries: []string{"canary.test"},
		AddressNames:   []string{"TXT myaddr.doctor.test"},
		DNSBLZones:     []string{"bl.doctor.test", "refuse.doctor.test"},
	}
}

// statuses renders checks as "name[egress]=status" for comparison.
func statuses(checks []Check) map[string]Status {
	m := map[string]Status{}
	for _, c := range checks {
		k := c.Name
		if c.Egress != "" {
			k += "[" + c.Egress + "]"
		}
		m[k] = c.Status
	}
	return m
}

func report(checks []Check) string {
	var b strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&b, "%-4s %s [%s] %s | %s\n", c.Status, c.Name, c.Egress, c.Detail, c.Fix)
	}
	return b.String()
}

func TestDoctorPerEgress(t *testing.T) {
	sim := startSim(t, doctorWorld())
	res := newResolver(t, sim)
	p := newPool(t, Config{SourceIPs: []string{"127.0.6.1", "127.0.6.2", "127.0.6.3"}})
	checks := Doctor(t.Context(), p, res, doctorConfig(sim))
	got := statuses(checks)
	want := map[string]Status{
		"resolver": Pass,

		"port 25[127.0.6.1]": Pass, "address[127.0.6.1]": Pass, "PTR[127.0.6.1]": Pass, "FCrDNS[127.0.6.1]": Pass,
		"HELO[127.0.6.1]": Pass, "DNSBL bl.doctor.test[127.0.6.1]": Pass, "DNSBL refuse.doctor.test[127.0.6.1]": Warn,
		"SPF[127.0.6.1]": Pass,

		"port 25[127.0.6.2]": Pass, "address[127.0.6.2]": Pass, "PTR[127.0.6.2]": Pass, "FCrDNS[127.0.6.2]": Fail,
		"HELO[127.0.6.2]": Warn, "DNSBL bl.doctor.test[127.0.6.2]": Fail, "DNSBL refuse.doctor.test[127.0.6.2]": Warn,
		"SPF[127.0.6.2]": Fail,

		"port 25[127.0.6.3]": Pass, "address[127.0.6.3]": Pass, "PTR[127.0.6.3]": Fail,
		"HELO[127.0.6.3]": Warn, "DNSBL bl.doctor.test[127.0.6.3]": Pass, "DNSBL refuse.doctor.test[127.0.6.3]": Warn,
		"SPF[127.0.6.3]": Fail,

		"MAIL FROM": Pass, "MAIL FROM MX": Pass, "HELO domain": Pass,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d checks, want %d", len(got), len(want))
	}
	for _, c := range checks {
		if c.Status != Pass && c.Fix == "" {
			t.Errorf("%s [%s] is %s without a fix", c.Name, c.Egress, c.Status)
		}
		if c.Name == "DNSBL bl.doctor.test" && c.Egress == "127.0.6.2" && !strings.Contains(c.Detail, "127.0.0.2: seen spamming") {
			t.Errorf("listing detail %q", c.Detail)
		}
		if c.Name == "DNSBL refuse.doctor.test" && !strings.Contains(c.Detail, "could not check") {
			t.Errorf("refusal detail %q", c.Detail)
		}
	}
	// Banner, EHLO and QUIT from each egress; never MAIL or RCPT.
	for _, src := range []string{"127.0.6.1", "127.0.6.2", "127.0.6.3"} {
		if n := sim.ConnectionsFrom("mx.canary.test", src); n != 1 {
			t.Errorf("canary saw %d connections from %s", n, src)
		}
	}
	if sim.Commands("mx.canary.test", "MAIL")+sim.Commands("mx.canary.test", "RCPT") != 0 {
		t.Error("doctor sent MAIL or RCPT")
	}
	if t.Failed() {
		t.Log("\n" + report(checks))
	}
}

func TestDoctorSetupFailures(t *testing.T) {
	sim := startSim(t, doctorWorld())
	tests := []struct {
		name   string
		change func(*DoctorConfig, *Config)
		want   map[string]Status
		detail map[string]string // check -> text its detail must contain
	}{
		{
			name:   "resolver lies about a canary",
			change: func(d *DoctorConfig, _ *Config) { d.DNSCanaries = []string{"canary.test", "gmail.test"} },
			want:   map[string]Status{"resolver": Fail},
			detail: map[string]string{"resolver": "gmail.test"},
		},
		{
			name:   "port 25 blocked",
			change: func(d *DoctorConfig, _ *Config) { d.Port25Canaries = []string{"downcanary.test"} },
			want:   map[string]Status{"port 25[127.0.6.1]": Fail},
			detail: map[string]string{"port 25[127.0.6.1]": "mx.downcanary.test: unreachable"},
		},
		{
			name: "null sender, bare HELO",
			change: func(d *DoctorConfig, _ *Config) {
				d.MailFrom, d.HeloName = "", "myhost"
			},
			want: map[string]Status{"MAIL FROM": Warn, "HELO[127.0.6.1]": Fail, "SPF[127.0.6.1]": Warn},
		},
		{
			name:   "MAIL FROM domain without MX, HELO under another domain",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "x@nxdomain.test" },
			want:   map[string]Status{"MAIL FROM": Pass, "MAIL FROM MX": Fail, "HELO domain": Warn, "SPF[127.0.6.1]": Fail},
		},
		{
			name:   "implicit MX",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "x@nomx.test" },
			want:   map[string]Status{"MAIL FROM MX": Warn},
		},
		{
			name:   "not an address",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "verify" },
			want:   map[string]Status{"MAIL FROM": Fail},
		},
		{
			name:   "no SPF record",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "x@nospf.test" },
			want:   map[string]Status{"SPF[127.0.6.1]": Fail},
			detail: map[string]string{"SPF[127.0.6.1]": "publishes no SPF record"},
		},
		{
			name:   "soft fail",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "x@softspf.test" },
			want:   map[string]Status{"SPF[127.0.6.1]": Warn},
		},
		{
			name:   "broken SPF",
			change: func(d *DoctorConfig, _ *Config) { d.MailFrom = "x@brokenspf.test" },
			want:   map[string]Status{"SPF[127.0.6.1]": Fail},
			detail: map[string]string{"SPF[127.0.6.1]": "broken"},
		},
		{
			name:   "a DNSBL answer that is no listing code",
			change: func(d *DoctorConfig, _ *Config) { d.DNSBLZones = []string{"hijack.doctor.test"} },
			want:   map[string]Status{"DNSBL hijack.doctor.test[127.0.6.1]": Warn},
			detail: map[string]string{"DNSBL hijack.doctor.test[127.0.6.1]": "not a listing code"},
		},
		{
			name: "address given in config",
			change: func(d *DoctorConfig, _ *Config) {
				d.PublicAddresses = map[string]string{"127.0.6.1": "127.0.6.2"}
			},
			want:   map[string]Status{"address[127.0.6.1]": Pass, "DNSBL bl.doctor.test[127.0.6.1]": Fail},
			detail: map[string]string{"address[127.0.6.1]": "given in egress.public_addresses"},
		},
		{
			name: "address learnt by asking a server directly",
			change: func(d *DoctorConfig, c *Config) {
				c.SourceIPs = nil
				d.AddressNames = []string{"A nothing.doctor.test", "TXT myaddr.doctor.test @" + sim.DNSAddr()}
			},
			want:   map[string]Status{"address[direct]": Pass, "PTR[direct]": Fail},
			detail: map[string]string{"address[direct]": "127.0.0.1 (learnt from TXT myaddr.doctor.test @"},
		},
		{
			name: "address unknown",
			change: func(d *DoctorConfig, c *Config) {
				c.SourceIPs = nil
				d.AddressNames = []string{"A nothing.doctor.test"}
			},
			want: map[string]Status{"address[direct]": Warn},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dc := doctorConfig(sim)
			pc := Config{SourceIPs: []string{"127.0.6.1"}}
			tc.change(&dc, &pc)
			checks := Doctor(t.Context(), newPool(t, pc), newResolver(t, sim), dc)
			got := statuses(checks)
			for k, w := range tc.want {
				if got[k] != w {
					t.Errorf("%s: %q, want %q", k, got[k], w)
				}
			}
			for k, want := range tc.detail {
				found := false
				for _, c := range checks {
					name := c.Name
					if c.Egress != "" {
						name += "[" + c.Egress + "]"
					}
					if name == k {
						found = strings.Contains(c.Detail, want)
					}
				}
				if !found {
					t.Errorf("%s: detail does not contain %q", k, want)
				}
			}
			if t.Failed() {
				t.Log("\n" + report(checks))
			}
		})
	}
}

func TestDoctorThroughProxy(t *testing.T) {
	sim := startSim(t, doctorWorld())
	proxy := startSOCKS(t, socksOptions{out: "127.0.6.1"})
	p := newPool(t, Config{Proxies: []string{proxy.url("")}})
	checks := Doctor(t.Context(), p, newResolver(t, sim), doctorConfig(sim))
	got := statuses(checks)
	e := "socks5://" + proxy.addr
	for _, k := range []string{"port 25", "address", "PTR", "FCrDNS", "HELO", "SPF"} {
		if got[k+"["+e+"]"] != Pass {
			t.Errorf("%s: %q, want pass", k, got[k+"["+e+"]"])
		}
	}
	if sim.ConnectionsFrom("mx.canary.test", "127.0.6.1") != 1 {
		t.Error("the canary session did not come through the proxy")
	}
	if t.Failed() {
		t.Log("\n" + report(checks))
	}
}

func TestDoctorSpamhausDQSKeyStaysSecret(t *testing.T) {
	const key = "k3yS3CRET"
	sim := startSim(t, doctorWorld())
	dc := doctorConfig(sim)
	dc.DNSBLZones = []string{"zen.spamhaus.org"}
	dc.SpamhausDQSKey = "${DQS}"
	dc.LookupEnv = func(k string) (string, bool) { return key, k == "DQS" }
	checks := Doctor(t.Context(), newPool(t, Config{SourceIPs: []string{"127.0.6.1"}}), newResolver(t, sim), dc)
	if got := statuses(checks)["DNSBL zen.spamhaus.org (DQS)[127.0.6.1]"]; got != Pass {
		t.Errorf("DQS check: %q\n%s", got, report(checks))
	}
	if n := sim.DNSQueries("1.6.0.127."+key+".zen.dq.spamhaus.net", dns.TypeA); n != 1 {
		t.Errorf("%d queries to the DQS name", n)
	}
	if strings.Contains(report(checks), key) {
		t.Error("the DQS key shows in the report")
	}
	dc.LookupEnv = nil
	checks = Doctor(t.Context(), newPool(t, Config{SourceIPs: []string{"127.0.6.1"}}), newResolver(t, sim), dc)
	if statuses(checks)["DNSBL"] != Warn {
		t.Errorf("unset key variable not reported:\n%s", report(checks))
	}
}

func TestDNSBLQueryName(t *testing.T) {
	tests := []struct{ ip, zone, want string }{
		{"192.0.2.99", "zen.spamhaus.org", "99.2.0.192.zen.spamhaus.org"},
		{"2001:db8::1", "zen.spamhaus.org", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"},
		{"::ffff:192.0.2.99", "bl.test", "99.2.0.192.bl.test"},
	}
	for _, tc := range tests {
		got, err := dnsblQueryName(netip.MustParseAddr(tc.ip), tc.zone)
		if err != nil || got != tc.want {
			t.Errorf("%s in %s: %q, %v; want %q", tc.ip, tc.zone, got, err, tc.want)
		}
	}
	if z, ok := dqsZone("zen.spamhaus.org", "KEY"); !ok || z != "KEY.zen.dq.spamhaus.net" {
		t.Errorf("DQS zone %q", z)
	}
	if z, ok := dqsZone("bl.spamcop.net", "KEY"); ok || z != "bl.spamcop.net" {
		t.Errorf("non-Spamhaus zone rewritten: %q", z)
	}
}

func TestParseAddressName(t *testing.T) {
	for _, bad := range []string{"", "o-o.myaddr.l.google.com", "MX x.test", "A x.test ns1", "A x.test @", "A a b c"} {
		if _, _, _, err := ParseAddressName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range DefaultAddressNames() {
		if _, _, _, err := ParseAddressName(good); err != nil {
			t.Errorf("default %q: %v", good, err)
		}
	}
}

// The SPF library reads errors as net.Resolver makes them.
func TestSPFResolverErrors(t *testing.T) {
	sim := startSim(t, doctorWorld())
	r := spfResolver{newResolver(t, sim)}
	ctx := t.Context()
	if _, err := r.LookupTXT(ctx, "nothing.test"); !isNotFound(err) {
		t.Errorf("TXT of a missing name: %v", err)
	}
	if _, err := r.LookupMX(ctx, "good.doctor.test"); !isNotFound(err) {
		t.Errorf("MX of a name without MX: %v", err)
	}
	if names, err := r.LookupAddr(ctx, "127.0.6.1"); err != nil || len(names) != 1 || names[0] != "good.doctor.test." {
		t.Errorf("LookupAddr: %v, %v", names, err)
	}
	if _, err := r.LookupIPAddr(ctx, "good.doctor.test"); err != nil {
		t.Errorf("LookupIPAddr: %v", err)
	}
	err := dnsError("x", fmt.Errorf("wrapped: %w", &resolve.TemporaryError{Name: "x", Reason: "timeout"}))
	if de, ok := err.(*net.DNSError); !ok || !de.IsTemporary || !de.IsTimeout || de.IsNotFound {
		t.Errorf("temporary failure translated to %#v", err)
	}
}

// isNotFound reads err the way the SPF library does: a type assertion.
func isNotFound(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.IsNotFound
}
