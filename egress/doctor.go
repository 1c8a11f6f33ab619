package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"golang.org/x/net/publicsuffix"

	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// Status is the verdict of one doctor check.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn" // a problem that may cost answers, or a check that could not be made
	Fail Status = "fail" // a problem that will cost answers or reputation
)

// Check is one line of the doctor's report.
type Check struct {
	Name   string // "resolver", "port 25", "address", "PTR", "FCrDNS", "HELO", "DNSBL zone", "MAIL FROM", "MAIL FROM MX", "HELO domain", "SPF"
	Egress string // the egress it is about; "" for checks about the setup
	Status Status
	Detail string
	Fix    string // what to do about a warn or fail
}

// DoctorConfig configures Doctor. The zero value of every field but HeloName
// is usable.
type DoctorConfig struct {
	HeloName string // --helo
	MailFrom string // --mail-from, "" = the null sender
	Port     int    // SMTP port, default 25
	// Probe holds the timeouts of the port-25 sessions (capped as in
	// CheckPort25); HeloName is set from above.
	Probe          probe.Config
	DNSCanaries    []string      // default DefaultCanaryDomains
	Port25Canaries []string      // default DefaultCanaryDomains
	Port25Timeout  time.Duration // default 60s
	// PublicAddresses maps an egress name to its public address, for an
	// egress behind NAT or a proxy whose outgoing address is not reported.
	PublicAddresses map[string]string
	// AddressNames are asked, in order, to learn the machine's public
	// address when it is not given: "TYPE name" (asked through the
	// resolver) or "TYPE name @server" (asked of that server directly, a
	// host name or IP, optionally with :port). TYPE is A, AAAA or TXT; the
	// first answer that is an IP address wins. Default DefaultAddressNames.
	AddressNames []string
	// DNSBLZones are the blocklists checked, default DefaultDNSBLZones.
	DNSBLZones []string
	// SpamhausDQSKey, when set, sends the Spamhaus zones to the Data Query
	// Service ("KEY.zen.dq.spamhaus.net"), which answers from any resolver.
	// It is a secret: it never shows in a Check. "${NAME}" reads it from
	// the environment through LookupEnv.
	SpamhausDQSKey string
	LookupEnv      func(string) (string, bool)
}

// DefaultAddressNames are names that answer with the address of whoever
// asks, when asked of these servers directly: Google's authoritative server
// (TXT), OpenDNS's resolver and Akamai's authoritative server (A).
func DefaultAddressNames() []string {
	return []string{
		"TXT o-o.myaddr.l.google.com @ns1.google.com",
		"A myip.opendns.com @resolver1.opendns.com",
		"A whoami.akamai.net @ns1-1.akamaitech.net",
	}
}

// ParseAddressName checks an AddressNames entry.
func ParseAddressName(s string) (qtype, name, server string, err error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return "", "", "", fmt.Errorf("egress: address name %q: want \"TYPE name [@server]\"", s)
	}
	qtype, name = strings.ToUpper(f[0]), f[1]
	switch qtype {
	case "A", "AAAA", "TXT":
	default:
		return "", "", "", fmt.Errorf("egress: address name %q: type must be A, AAAA or TXT", s)
	}
	if len(f) == 3 {
		if !strings.HasPrefix(f[2], "@") || len(f[2]) == 1 {
			return "", "", "", fmt.Errorf("egress: address name %q: the server is written @host", s)
		}
		server = f[2][1:]
	}
	return qtype, name, server, nil
}

// Doctor checks the setup of a run and returns one Check per finding, in a
// stable order: the resolver, then per egress (port 25, address, PTR,
// FCrDNS, HELO, DNSBLs, SPF), then the sender (MAIL FROM, its MX, the HELO
// domain). It connects to the port-25 canaries (banner, EHLO, QUIT) and asks
// DNS; it never sends MAIL or RCPT.
func Doctor(ctx context.Context, pool *Pool, res *resolve.Resolver, cfg DoctorConfig) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }

	// The resolver first: every other check depends on it.
	canaries, err := CheckDNS(ctx, res, cfg.DNSCanaries)
	add(resolverCheck(canaries, err))

	pc := cfg.Probe
	pc.HeloName = cfg.HeloName
	if pc.HeloName == "" {
		pc.HeloName = "localhost"
	}
	rep, perr := CheckPort25(ctx, pool, res, Port25Config{
		Domains: cfg.Port25Canaries, Port: cfg.Port, Probe: pc, Timeout: cfg.Port25Timeout,
	})
	learnt := learnAddress(ctx, res, cfg.AddressNames)
	dqsKey, dqsErr := expandSecret(cfg.SpamhausDQSKey, cfg.LookupEnv)
	if dqsErr != nil {
		add(Check{Name: "DNSBL", Status: Warn, Detail: dqsErr.Error(), Fix: "set the variable, or leave egress.spamhaus_dqs_key empty"})
	}
	zones := cfg.DNSBLZones
	if len(zones) == 0 {
		zones = DefaultDNSBLZones()
	}
	stats := pool.Stats()
	for i, e := range pool.Egresses() {
		if stats[i].State == StateDisabled {
			add(Check{Name: "egress", Egress: e.Name(), Status: Warn, Detail: "disabled: " + stats[i].Reason})
			continue
		}
		add(port25Check(e, rep, perr))
		addr, ac := egressAddress(e, cfg.PublicAddresses, learnt, stats[i].BoundAddr)
		add(ac)
		if !addr.IsValid() {
			continue
		}
		out = append(out, reverseChecks(ctx, res, e.Name(), addr, cfg.HeloName)...)
		out = append(out, dnsblChecks(ctx, res, e.Name(), addr, zones, dqsKey)...)
		add(spfCheck(ctx, res, e.Name(), addr, cfg.HeloName, cfg.MailFrom))
	}
	out = append(out, senderChecks(ctx, res, cfg.HeloName, cfg.MailFrom)...)
	return out
}

func resolverCheck(canaries []DNSCanary, err error) Check {
	c := Check{Name: "resolver"}
	var ok, failed []string
	for _, k := range canaries {
		if k.Err != nil {
			failed = append(failed, k.Domain+": "+k.Err.Error())
		} else {
			ok = append(ok, k.Domain)
		}
	}
	switch {
	case err != nil:
		c.Status, c.Detail = Fail, err.Error()
		c.Fix = "use a recursive resolver that answers the whole internet truthfully (--resolver, dns.resolver); " +
			"captive portals, VPNs and corporate DNS often do not"
	case len(failed) > 0:
		c.Status = Warn
		c.Detail = "MX of " + strings.Join(ok, ", ") + " resolved, but " + strings.Join(failed, "; ")
		c.Fix = "a flaky resolver turns answers into dns_error; try another one (--resolver)"
	default:
		c.Status, c.Detail = Pass, "MX of "+strings.Join(ok, ", ")+" resolved"
	}
	return c
}

func port25Check(e *Egress, rep Port25Report, perr error) Check {
	c := Check{Name: "port 25", Egress: e.Name()}
	var parts []string
	reached, ok := false, 0
	for _, a := range rep.Attempts {
		if a.Egress != e.Name() {
			continue
		}
		part := a.Host + ": " + string(a.Outcome)
		if a.Err != nil {
			part += " (" + a.Err.Error() + ")"
		}
		parts = append(parts, part)
		switch a.Outcome {
		case OutcomeOK:
			ok++
			reached = true
		case OutcomeRefused:
			reached = true
		}
	}
	c.Detail = strings.Join(parts, "; ")
	var pe *Port25Error
	switch {
	case len(parts) == 0 && errors.As(perr, &pe):
		c.Status, c.Detail = Fail, perr.Error()
		c.Fix = "fix DNS first (see the resolver line)"
	case !reached:
		c.Status = Fail
		c.Fix = "outbound port 25 is blocked or the egress is broken: use a SOCKS5 proxy that allows port 25 " +
			"(--proxy), another source address (--source-ip), or a host that allows outbound SMTP"
		if e.Kind() == SOCKS5 {
			c.Fix = "check the proxy (address, user:password, that it allows CONNECT to port 25), or use another"
		}
	case ok == 0:
		c.Status = Warn
		c.Fix = "the canaries answered but refused us: the address may be blocklisted (see the DNSBL lines)"
	case ok < len(parts):
		c.Status = Warn
		c.Fix = "some canaries could not be reached or refused us; see the DNSBL lines, and try again later"
	default:
		c.Status = Pass
	}
	return c
}

// learnedAddress is the machine's public address as a DNS name told it.
type learnedAddress struct {
	addr netip.Addr
	from string // the AddressNames entry that answered
	errs []string
}

func learnAddress(ctx context.Context, res *resolve.Resolver, names []string) learnedAddress {
	if names == nil {
		names = DefaultAddressNames()
	}
	var l learnedAddress
	for _, entry := range names {
		a, err := askAddress(ctx, res, entry)
		if err == nil {
			l.addr, l.from = a, entry
			return l
		}
		l.errs = append(l.errs, entry+": "+err.Error())
	}
	return l
}

func askAddress(ctx context.Context, res *resolve.Resolver, entry string) (netip.Addr, error) {
	qtype, name, server, err := ParseAddressName(entry)
	if err != nil {
		return netip.Addr{}, err
	}
	ask := res
	if server != "" {
		addr, err := serverAddress(ctx, res, server)
		if err != nil {
			return netip.Addr{}, err
		}
		// A resolver of its own: the answer depends on who asks, so it must
		// not come from (or go into) the run's cache.
		if ask, err = resolve.New(resolve.Config{Servers: []string{addr}, Attempts: 2, Timeout: 2 * time.Second}); err != nil {
			return netip.Addr{}, err
		}
	}
	var answers []string
	switch qtype {
	case "TXT":
		answers, err = ask.LookupTXT(ctx, name)
	default:
		var addrs []netip.Addr
		if qtype == "A" {
			addrs, err = ask.LookupA(ctx, name)
		} else {
			addrs, err = ask.LookupHost(ctx, name)
		}
		for _, a := range addrs {
			if a.Is4() == (qtype == "A") {
				answers = append(answers, a.String())
			}
		}
	}
	if err != nil {
		return netip.Addr{}, err
	}
	for _, s := range answers {
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no address in the answer %q", answers)
}

// serverAddress turns "host", "ip", "host:port" or "ip:port" into "ip:port".
func serverAddress(ctx context.Context, res *resolve.Resolver, server string) (string, error) {
	host, port := server, "53"
	if h, p, err := net.SplitHostPort(server); err == nil {
		host, port = h, p
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(a.String(), port), nil
	}
	addrs, err := res.LookupHost(ctx, host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addrs[0].String(), port), nil
}

// egressAddress decides the public address of e: given in config, its own
// source address when that is not private, the address its proxy reported
// binding, or the one learnt through DNS (for direct egresses).
func egressAddress(e *Egress, given map[string]string, learnt learnedAddress, bound netip.Addr) (netip.Addr, Check) {
	c := Check{Name: "address", Egress: e.Name(), Status: Pass}
	if s, ok := given[e.Name()]; ok {
		a, err := netip.ParseAddr(s)
		if err != nil {
			c.Status, c.Detail = Fail, fmt.Sprintf("egress.public_addresses gives %q, which is not an IP address", s)
			c.Fix = "write the address as 203.0.113.5 or 2001:db8::5"
			return netip.Addr{}, c
		}
		c.Detail = a.String() + " (given in egress.public_addresses)"
		return a.Unmap(), c
	}
	switch src := e.Source(); {
	case e.Kind() == SOCKS5:
		if bound.IsValid() && !bound.IsPrivate() && !bound.IsUnspecified() {
			c.Detail = bound.String() + " (as the proxy reported binding its outgoing connection)"
			return bound, c
		}
		c.Status = Warn
		c.Detail = "unknown: the proxy did not report a public outgoing address"
		c.Fix = "give it in egress.public_addresses (\"" + e.Name() + "\": ADDRESS) to check PTR, DNSBLs and SPF"
		return netip.Addr{}, c
	case src.IsValid() && !src.IsPrivate() && !isSharedAddress(src):
		c.Detail = src.String() + " (the source address)"
		return src, c
	case learnt.addr.IsValid():
		c.Detail = learnt.addr.String() + " (learnt from " + learnt.from + ")"
		if src.IsValid() {
			c.Status = Warn
			c.Detail += "; the source address " + src.String() + " is private, so this is the NAT's address as " +
				"seen on the default route, which may not be this egress's"
			c.Fix = "give the public address in egress.public_addresses if it differs"
		}
		return learnt.addr, c
	}
	c.Status = Warn
	c.Detail = "unknown: no address name answered (" + strings.Join(learnt.errs, "; ") + ")"
	c.Fix = "give it in egress.public_addresses, or check egress.public_address_names"
	return netip.Addr{}, c
}

// isSharedAddress reports carrier-grade NAT space (RFC 6598), which
// netip.Addr.IsPrivate does not cover.
func isSharedAddress(a netip.Addr) bool {
	return netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

// reverseChecks are PTR, forward-confirmed reverse DNS, and the HELO name.
func reverseChecks(ctx context.Context, res *resolve.Resolver, egress string, addr netip.Addr, helo string) []Check {
	ptr := Check{Name: "PTR", Egress: egress}
	names, err := res.LookupPTR(ctx, addr)
	var te *resolve.TemporaryError
	switch {
	case errors.As(err, &te):
		ptr.Status, ptr.Detail = Warn, "could not check: "+err.Error()
		ptr.Fix = "try again; if it persists, check the resolver"
		return []Check{ptr}
	case err != nil:
		ptr.Status, ptr.Detail = Fail, addr.String()+" has no PTR record"
		ptr.Fix = "ask whoever runs the address (hosting provider, ISP) to set its reverse DNS to your HELO name; " +
			"many receivers refuse clients without one"
		return []Check{ptr, heloCheck(ctx, res, egress, addr, helo, nil)}
	}
	ptr.Status, ptr.Detail = Pass, addr.String()+" -> "+strings.Join(names, ", ")

	fc := Check{Name: "FCrDNS", Egress: egress}
	var confirmed, others []string
	for _, n := range names {
		addrs, err := res.LookupHost(ctx, n)
		if err == nil && slices.Contains(addrs, addr) {
			confirmed = append(confirmed, n)
		} else {
			others = append(others, n)
		}
	}
	if len(confirmed) > 0 {
		fc.Status, fc.Detail = Pass, strings.Join(confirmed, ", ")+" -> "+addr.String()
	} else {
		fc.Status = Fail
		fc.Detail = "no PTR name resolves back to " + addr.String() + " (" + strings.Join(others, ", ") + ")"
		fc.Fix = "give the PTR name an A/AAAA record with the address (forward-confirmed reverse DNS)"
	}
	return []Check{ptr, fc, heloCheck(ctx, res, egress, addr, helo, confirmed)}
}

func heloCheck(ctx context.Context, res *resolve.Resolver, egress string, addr netip.Addr, helo string, confirmed []string) Check {
	c := Check{Name: "HELO", Egress: egress}
	name := strings.ToLower(strings.TrimSuffix(helo, "."))
	fix := "set --helo (smtp.helo_name) to the forward-confirmed PTR name of the address"
	if _, err := netip.ParseAddr(name); err == nil || !strings.Contains(name, ".") {
		c.Status, c.Detail, c.Fix = Fail, fmt.Sprintf("%q is not a fully qualified domain name", helo), fix
		return c
	}
	if slices.Contains(confirmed, name) {
		c.Status, c.Detail = Pass, name+" is the PTR name of "+addr.String()
		return c
	}
	addrs, err := res.LookupHost(ctx, name)
	switch {
	case errors.Is(err, resolve.ErrNoAddress) || errors.Is(err, resolve.ErrNXDomain):
		c.Status, c.Detail, c.Fix = Fail, name+" does not resolve", fix
	case err != nil:
		c.Status, c.Detail, c.Fix = Warn, "could not check: "+err.Error(), "try again"
	case slices.Contains(addrs, addr):
		c.Status, c.Detail, c.Fix = Warn, name+" resolves to "+addr.String()+" but is not its PTR name", fix
	default:
		c.Status, c.Detail, c.Fix = Warn, name+" does not resolve to "+addr.String(), fix
	}
	return c
}

func dnsblChecks(ctx context.Context, res *resolve.Resolver, egress string, addr netip.Addr, zones []string, dqsKey string) []Check {
	out := make([]Check, len(zones))
	var wg sync.WaitGroup
	for i, zone := range zones {
		wg.Go(func() {
			qzone, dqs := dqsZone(zone, dqsKey)
			c := Check{Name: "DNSBL " + zone, Egress: egress}
			if dqs {
				c.Name += " (DQS)"
			}
			r := lookupDNSBL(ctx, res, addr, qzone)
			switch r.verdict {
			case dnsblClean:
				c.Status, c.Detail = Pass, addr.String()+" is not listed"
			case dnsblListed:
				c.Status = Fail
				c.Detail = addr.String() + " is listed (" + r.answer.String()
				if r.reason != "" {
					c.Detail += ": " + r.reason
				}
				c.Detail += ")"
				c.Fix = "receivers that use " + zone + " will refuse this address: use another egress, find out " +
					"why it was listed and ask for delisting at the list's site"
			default:
				c.Status, c.Detail = Warn, "could not check: "+r.reason
				c.Fix = "ask through your own recursive resolver rather than a public one"
				if strings.HasSuffix(zone, ".spamhaus.org") && !dqs {
					c.Fix += ", or set egress.spamhaus_dqs_key (Spamhaus Data Query Service)"
				}
			}
			out[i] = c
		})
	}
	wg.Wait()
	return out
}

func spfCheck(ctx context.Context, res *resolve.Resolver, egress string, addr netip.Addr, helo, mailFrom string) Check {
	c := Check{Name: "SPF", Egress: egress}
	domain := mailDomain(mailFrom)
	if domain == "" {
		c.Status, c.Detail = Warn, "not checked: no MAIL FROM domain (null sender)"
		c.Fix = "set --mail-from to an address at your domain, whose SPF record authorises this address"
		return c
	}
	result, err := checkSPF(ctx, res, addr, helo, mailFrom)
	detail := fmt.Sprintf("%s for %s from %s", result, domain, addr)
	fix := "add the address to the SPF record of " + domain + " (e.g. ip4:" + addr.String() + ")"
	switch result {
	case spf.Pass:
		c.Status, c.Detail = Pass, detail
	case spf.Neutral, spf.SoftFail:
		c.Status, c.Detail, c.Fix = Warn, detail, fix
	case spf.TempError:
		c.Status, c.Detail, c.Fix = Warn, "could not check: "+errText(err), "try again"
	case spf.None:
		c.Status, c.Detail = Fail, domain+" publishes no SPF record"
		c.Fix = "publish one that authorises the address: \"v=spf1 ip4:" + addr.String() + " -all\" (or add it to yours)"
	case spf.PermError:
		c.Status, c.Detail, c.Fix = Fail, "the SPF record of "+domain+" is broken: "+errText(err), "fix the record"
	default:
		c.Status, c.Detail, c.Fix = Fail, detail, fix
	}
	return c
}

// mailDomain is the domain of an address, lower-case; "" when there is none.
func mailDomain(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(address[at+1:], "."))
}

// senderChecks are MAIL FROM, its domain's MX, and whether the HELO name is
// under the same registered domain.
func senderChecks(ctx context.Context, res *resolve.Resolver, helo, mailFrom string) []Check {
	mf := Check{Name: "MAIL FROM"}
	domain := mailDomain(mailFrom)
	switch {
	case mailFrom == "":
		mf.Status, mf.Detail = Warn, "the null sender <>"
		mf.Fix = "set --mail-from (smtp.mail_from) to a real address at your own domain: the null sender with " +
			"many recipients looks like address harvesting, and a real one lets receivers reach you"
		return []Check{mf}
	case probe.CheckAddress(mailFrom) != nil || at(mailFrom) <= 0 || domain == "" || !strings.Contains(domain, "."):
		mf.Status, mf.Detail, mf.Fix = Fail, fmt.Sprintf("%q is not a usable address", mailFrom), "give a full address, user@your-domain.example"
		return []Check{mf}
	}
	mf.Status, mf.Detail = Pass, mailFrom

	mx := Check{Name: "MAIL FROM MX"}
	mail, err := res.LookupMail(ctx, domain)
	var te *resolve.TemporaryError
	switch {
	case err == nil:
		hosts := make([]string, len(mail.Hosts))
		for i, h := range mail.Hosts {
			hosts[i] = h.Host
		}
		mx.Status, mx.Detail = Pass, domain+" receives mail at "+strings.Join(hosts, ", ")
		if mail.Implicit {
			mx.Status = Warn
			mx.Detail = domain + " has no MX record; mail goes to its own address"
			mx.Fix = "publish an MX record, so that replies and abuse reports reach you"
		}
	case errors.As(err, &te):
		mx.Status, mx.Detail, mx.Fix = Warn, "could not check: "+err.Error(), "try again"
	default:
		mx.Status, mx.Detail = Fail, domain+" cannot receive mail: "+err.Error()
		mx.Fix = "use a MAIL FROM at a domain of yours that receives mail"
	}

	hd := Check{Name: "HELO domain"}
	hb, herr := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(strings.TrimSuffix(helo, ".")))
	mb, merr := publicsuffix.EffectiveTLDPlusOne(domain)
	switch {
	case herr != nil || merr != nil:
		hd.Status, hd.Detail = Warn, fmt.Sprintf("cannot tell the registered domains of %q and %q", helo, domain)
		hd.Fix = "use a HELO name under your own domain"
	case hb == mb:
		hd.Status, hd.Detail = Pass, "HELO "+helo+" and MAIL FROM are both under "+mb
	default:
		hd.Status, hd.Detail = Warn, "HELO "+helo+" is under "+hb+", MAIL FROM under "+mb
		hd.Fix = "use a HELO name under " + mb + " (with its PTR), so receivers see one sender"
	}
	return []Check{mf, mx, hd}
}

func at(s string) int { return strings.LastIndexByte(s, '@') }

// expandSecret reads a "${NAME}" reference from the environment.
func expandSecret(v string, lookup func(string) (string, bool)) (string, error) {
	m := envRef.FindStringSubmatch(v)
	if m == nil {
		return v, nil
	}
	if lookup != nil {
		if val, ok := lookup(m[1]); ok {
			return val, nil
		}
	}
	return "", fmt.Errorf("egress.spamhaus_dqs_key refers to $%s, which is not set", m[1])
}
