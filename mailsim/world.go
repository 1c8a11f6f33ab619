package mailsim

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// World declares everything the simulation serves. It is plain data: Start
// validates it and never modifies it.
type World struct {
	Domains []Domain
	Hosts   []Host

	// PTR publishes reverse DNS: address (127.0.0.x or ::1) -> host name,
	// answered under in-addr.arpa / ip6.arpa as a PTR record.
	PTR map[string]string
	// DNSBLs are DNS blocklist zones answered the standard way (RFC 5782):
	// the A record of the reversed octets under the zone.
	DNSBLs []DNSBL
	// MyAddressName, when set, is a name whose A (or AAAA) and TXT records
	// answer every query with the address the query came from, as
	// o-o.myaddr.l.google.com (TXT) and whoami.akamai.net (A) do; a client
	// learns its own address through it.
	MyAddressName string
}

// DNSBL is one simulated DNS blocklist zone.
type DNSBL struct {
	Zone string // e.g. "bl.mailsim.test"
	// Listed maps a listed address (IPv4) to the A answer that says why, a
	// 127.0.0.x code such as "127.0.0.2"; Reason, when set, is published as
	// the TXT record of every listed entry.
	Listed map[string]string
	Reason string
	// Refuse, when set, answers every A query under the zone with this
	// address, the way Spamhaus answers 127.255.255.254 to queries through
	// public resolvers: the list could not be checked, which is neither
	// listed nor clean. Listed is ignored then.
	Refuse string
}

// Domain is a mail domain: the DNS records published for its name and the
// mailboxes its mail exchangers accept.
type Domain struct {
	Name      string           // e.g. "acme.test"
	TTL       uint32           // TTL of this domain's records, 0 = 300
	MX        []MX             // published MX records (may be empty; a Host name that is in no Host or Domain dangles)
	NullMX    bool             // publish the RFC 7505 null MX "0 ."
	A         []string         // A/AAAA addresses of the domain name itself (implicit MX when MX is empty)
	ServFail  bool             // the DNS server answers SERVFAIL for every query about this domain
	TXT       []string         // TXT records of the domain name, e.g. an SPF policy "v=spf1 ip4:127.0.0.1 -all"
	Mailboxes []string         // local parts that exist (matched case-insensitively)
	CatchAll  bool             // every local part is accepted
	Replies   map[string]Reply // local part (lower-case) -> a special RCPT reply, e.g. mailbox full
	// UnknownReply, when set, is the reply to RCPT for a local part that
	// does not exist, instead of "550 5.1.1 no such user" (e.g. the 450 of
	// a server that defers what it cannot verify yet).
	UnknownReply *Reply
	// NoPostmaster makes postmaster@ this domain unknown. By default every
	// domain accepts postmaster, as RFC 5321 §4.5.1 requires.
	NoPostmaster bool
	// Greylist, when positive, answers RCPT for this domain with
	// "451 4.7.1 Greylisted, try again later" until this long has passed
	// since the first attempt of the same (client IP, sender, recipient)
	// triplet, as greylisting servers do; afterwards the normal reply. Time is
	// read from Options.Now. It applies before the mailbox lookup, so a
	// greylisting domain reveals nothing about a mailbox until the retry.
	// Triplets are remembered for the life of the Sim, across connections
	// and hosts.
	Greylist time.Duration
}

// MX is one published MX record. Host must be the name of a Host of the world
// or of a Domain that has A records.
type MX struct {
	Preference uint16
	Host       string
}

// Reply is a scripted SMTP reply to RCPT TO: Code, Enhanced and Message, or
// Raw.
type Reply struct {
	Code     int
	Enhanced string // like "5.2.2", or "" for a reply without an enhanced status code
	Message  string
	// Raw, when set, is the whole reply exactly as the server writes it,
	// for replies copied from real servers: lines separated by "\n", each
	// the same three-digit code, then "-" when more lines follow or " " on
	// the last, then the text (at least "550 "), e.g.
	// "550-5.1.1 The email account\n550 5.1.1 does not exist". The server
	// adds CRLF to each line. Code, Enhanced and Message must be empty.
	Raw string
}

// rawLines checks a Reply.Raw and returns its code and the text of each
// line (what follows "ddd-" or "ddd ").
func rawLines(raw string) (int, []string, error) {
	lines := strings.Split(raw, "\n")
	code := 0
	texts := make([]string, len(lines))
	for i, l := range lines {
		last := i == len(lines)-1
		if len(l) < 4 || l[0] < '2' || l[0] > '5' || !isDigit(l[1]) || !isDigit(l[2]) {
			return 0, nil, fmt.Errorf("raw reply line %d %q does not start with a reply code and a separator", i+1, l)
		}
		c := int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
		switch {
		case i == 0:
			code = c
		case c != code:
			return 0, nil, fmt.Errorf("raw reply line %d has code %d, the first line %d", i+1, c, code)
		}
		if want := map[bool]byte{false: '-', true: ' '}[last]; l[3] != want {
			return 0, nil, fmt.Errorf("raw reply line %d: separator %q, want %q", i+1, l[3], want)
		}
		if strings.ContainsAny(l, "\r\x00") {
			return 0, nil, fmt.Errorf("raw reply line %d has a CR or NUL", i+1)
		}
		texts[i] = l[4:]
	}
	return code, texts, nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// Host is one simulated mail server.
//
// The behaviour fields below the first five change what a well-behaved
// server does on one connection; Hostile replaces the SMTP server altogether
// and ignores them.
type Host struct {
	Name          string        // e.g. "mx1.acme.test"; an A record Name -> IP is published
	IP            string        // 127.0.0.x address it listens on (must be in 127.0.0.0/8)
	Down          bool          // published in DNS but nothing listens (connection refused)
	RcptDelay     time.Duration // every RCPT reply is delayed this long (a slow server / tarpit)
	MaxRecipients int           // go-smtp's per-transaction recipient limit (452 4.5.3), 0 = none

	// STARTTLS advertises STARTTLS (RFC 3207) with the Sim's self-signed
	// certificate (see Sim.CertPool); Sim.TLSSessions counts handshakes.
	STARTTLS bool
	// NoPipelining leaves PIPELINING (RFC 2920) out of the EHLO reply. The
	// server still answers pipelined commands in order, as real ones do.
	NoPipelining bool
	// HELOOnly answers EHLO with "502 5.5.1" so that clients must fall back
	// to HELO, like an RFC 821 server.
	HELOOnly bool
	// BannerDelay holds the 220 greeting back this long after the
	// connection is accepted (a tarpit before the banner).
	BannerDelay time.Duration
	// MaxConnections, when positive, is how many connections at once the
	// host serves; one more is greeted "421 4.7.0 too many connections"
	// and closed, as many real servers limit each client.
	MaxConnections int
	// Close421After, when positive, lets this many commands through on one
	// connection, answers the next one "421 4.7.0 too many commands" and
	// closes the connection.
	Close421After int
	// ResetAfterRcpts, when positive, answers this many RCPT commands on one
	// connection and resets the TCP connection (RST, no reply) when the
	// next RCPT arrives, so the client reads ECONNRESET.
	ResetAfterRcpts int
	// RecipientLimitReply, when set, is the reply to a RCPT past
	// MaxRecipients instead of go-smtp's "452 4.5.3", e.g. the "552 5.5.3
	// Too many recipients" of old servers (RFC 5321 §4.5.3.1.10).
	RecipientLimitReply *Reply
	// MaxRcptPerConnection, when positive, answers every RCPT after this
	// many on one connection "452 4.5.3 Too many recipients for this
	// session", whatever the transaction: a per-connection cap.
	MaxRcptPerConnection int
	// RefuseAllAfterUnknown, when positive, is an anti-harvest defence:
	// once a connection has asked for this many recipients that do not
	// exist, every later RCPT on it, existing mailboxes and postmaster
	// included, gets "550 #5.1.0 Address rejected".
	RefuseAllAfterUnknown int
	// ExtraReplyTo names a command verb (e.g. "RSET") that this host
	// answers twice: a reply too many, which desynchronises a client that
	// pairs replies with commands by counting.
	ExtraReplyTo string
	// Hostile, when set, serves the host with a broken peer instead of an
	// SMTP server, for testing a client's bounds and timeouts.
	Hostile Hostility

	// BlockClients lists client addresses (127.0.0.x) this host refuses,
	// as a server consulting a DNSBL does: with BlockReply, as its greeting
	// (then it answers every command but QUIT "503 5.5.1" until the client
	// quits, RFC 5321 §3.1), or, with BlockAtRcpt, to every RCPT TO.
	BlockClients []string
	// BlockReply is the refusal; "{ip}" in its message is replaced by the
	// client's address. The zero value is "554 5.7.1 Service unavailable;
	// Client host [{ip}] blocked using zen.spamhaus.org".
	BlockReply Reply
	// BlockAtRcpt refuses at RCPT TO instead of at the greeting, as
	// Postfix does by default (smtpd_delay_reject).
	BlockAtRcpt bool
}

// Hostility is the misbehaviour of a hostile host.
type Hostility string

// The hostile behaviours. Each one stops as soon as the Sim is closed.
const (
	// HostileSilent accepts the connection and never writes a byte.
	HostileSilent Hostility = "silent"
	// HostileResetAfterBanner sends a 220 banner and resets the connection
	// (RST) when the client's next line (its EHLO) arrives, so the client
	// reads the banner and then ECONNRESET.
	HostileResetAfterBanner Hostility = "reset-after-banner"
	// HostileEndlessReply sends a 220 banner, reads one line (the EHLO) and
	// answers it with "250-" continuation lines that never end.
	HostileEndlessReply Hostility = "endless-reply"
	// HostileHugeLine sends a banner that is a single line of 10 MiB
	// ("220 " and HugeLineSize bytes of text, then CRLF), then stays silent.
	HostileHugeLine Hostility = "huge-line"
	// HostileNeverEnds sends "220 " and then one more byte of text every
	// 100 ms, never a line end.
	HostileNeverEnds Hostility = "never-ends"
)

// HugeLineSize is the length of the text of HostileHugeLine's banner line.
const HugeLineSize = 10 << 20

func (h Hostility) valid() bool {
	switch h {
	case "", HostileSilent, HostileResetAfterBanner, HostileEndlessReply, HostileHugeLine, HostileNeverEnds:
		return true
	}
	return false
}

// ErrInvalidWorld is wrapped by every error Start returns because the World
// itself is inconsistent (as opposed to a failure to listen).
var ErrInvalidWorld = errors.New("mailsim: invalid world")

const defaultTTL = 300

// model is the validated, normalized form of a World that the servers use.
// It is built once by Start and only read afterwards.
type model struct {
	records extraRecords            // reverse DNS, DNSBLs, the "my address" name
	domains map[string]*domainModel // lower-case name without trailing dot
	hosts   []*hostModel            // in World order
	// addrs holds every address published under a name (hosts and Domain.A),
	// keyed like domains; it is what an MX target or implicit MX resolves to.
	addrs map[string][]netip.Addr
}

type domainModel struct {
	name      string
	ttl       uint32
	mx        []MX // host names normalized
	nullMX    bool
	addrs     []netip.Addr // Domain.A only
	servFail  bool
	mailboxes map[string]bool
	catchAll  bool
	replies   map[string]Reply
	greylist  time.Duration
	noPost    bool
	unknown   *Reply
	txt       []string
}

type hostModel struct {
	name            string
	ip              netip.Addr
	down            bool
	rcptDelay       time.Duration
	maxRecipients   int
	startTLS        bool
	noPipelining    bool
	heloOnly        bool
	bannerDelay     time.Duration
	maxConnections  int
	close421After   int
	resetAfterRcpts int
	limitReply      *Reply
	rcptPerConn     int
	refuseAllAfter  int
	extraReplyTo    string
	hostile         Hostility
	block           *clientBlock // nil: no client is refused
	// serves are the domains whose mail (by MX or implicit MX) reaches this
	// host's address; RCPT for any other domain is a relay attempt.
	serves map[string]bool
}

func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidWorld, fmt.Sprintf(format, args...))
}

func validName(name string) bool {
	if name == "" {
		return false
	}
	_, ok := dns.IsDomainName(name)
	return ok
}

func buildModel(w World) (*model, error) {
	m := &model{
		domains: make(map[string]*domainModel, len(w.Domains)),
		addrs:   make(map[string][]netip.Addr),
	}
	addAddr := func(name string, a netip.Addr) {
		for _, x := range m.addrs[name] {
			if x == a {
				return
			}
		}
		m.addrs[name] = append(m.addrs[name], a)
	}

	hostNames := make(map[string]bool, len(w.Hosts))
	hostIPs := make(map[netip.Addr]string, len(w.Hosts))
	for i, h := range w.Hosts {
		name := normName(h.Name)
		if !validName(name) {
			return nil, invalid("host #%d: bad name %q", i, h.Name)
		}
		if hostNames[name] {
			return nil, invalid("duplicate host %q", name)
		}
		hostNames[name] = true
		ip, err := netip.ParseAddr(strings.TrimSpace(h.IP))
		if err != nil {
			return nil, invalid("host %q: bad IP %q", name, h.IP)
		}
		ip = ip.Unmap()
		if !ip.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(ip) {
			return nil, invalid("host %q: IP %s is not in 127.0.0.0/8", name, ip)
		}
		if other, dup := hostIPs[ip]; dup {
			return nil, invalid("hosts %q and %q share IP %s", other, name, ip)
		}
		hostIPs[ip] = name
		if h.RcptDelay < 0 || h.MaxRecipients < 0 || h.BannerDelay < 0 || h.MaxConnections < 0 || h.Close421After < 0 ||
			h.ResetAfterRcpts < 0 || h.MaxRcptPerConnection < 0 || h.RefuseAllAfterUnknown < 0 {
			return nil, invalid("host %q: negative delay or limit", name)
		}
		if !h.Hostile.valid() {
			return nil, invalid("host %q: unknown hostility %q", name, h.Hostile)
		}
		if h.Hostile != "" && h.Down {
			return nil, invalid("host %q: both Down and Hostile", name)
		}
		if r := h.RecipientLimitReply; r != nil {
			if r.Code < 400 || r.Code > 599 {
				return nil, invalid("host %q: recipient limit reply has code %d", name, r.Code)
			}
			if _, err := parseEnhanced(r.Enhanced); err != nil {
				return nil, invalid("host %q: recipient limit reply: %v", name, err)
			}
		}
		m.hosts = append(m.hosts, &hostModel{
			name:            name,
			ip:              ip,
			down:            h.Down,
			rcptDelay:       h.RcptDelay,
			maxRecipients:   h.MaxRecipients,
			startTLS:        h.STARTTLS,
			noPipelining:    h.NoPipelining,
			heloOnly:        h.HELOOnly,
			bannerDelay:     h.BannerDelay,
			maxConnections:  h.MaxConnections,
			close421After:   h.Close421After,
			resetAfterRcpts: h.ResetAfterRcpts,
			limitReply:      h.RecipientLimitReply,
			rcptPerConn:     h.MaxRcptPerConnection,
			refuseAllAfter:  h.RefuseAllAfterUnknown,
			extraReplyTo:    strings.ToUpper(strings.TrimSpace(h.ExtraReplyTo)),
			hostile:         h.Hostile,
			serves:          make(map[string]bool),
		})
		if err := m.hosts[len(m.hosts)-1].setBlock(h); err != nil {
			return nil, err
		}
		addAddr(name, ip)
	}

	for i, d := range w.Domains {
		name := normName(d.Name)
		if !validName(name) {
			return nil, invalid("domain #%d: bad name %q", i, d.Name)
		}
		if _, dup := m.domains[name]; dup {
			return nil, invalid("duplicate domain %q", name)
		}
		if d.Greylist < 0 {
			return nil, invalid("domain %q: negative Greylist", name)
		}
		if d.NullMX && len(d.MX) > 0 {
			return nil, invalid("domain %q: NullMX together with MX records", name)
		}
		dm := &domainModel{
			name:      name,
			ttl:       d.TTL,
			nullMX:    d.NullMX,
			servFail:  d.ServFail,
			mailboxes: make(map[string]bool, len(d.Mailboxes)),
			catchAll:  d.CatchAll,
			replies:   make(map[string]Reply, len(d.Replies)),
			greylist:  d.Greylist,
			noPost:    d.NoPostmaster,
			unknown:   d.UnknownReply,
			txt:       d.TXT,
		}
		if dm.ttl == 0 {
			dm.ttl = defaultTTL
		}
		for _, mx := range d.MX {
			host := normName(mx.Host)
			if !validName(host) {
				return nil, invalid("domain %q: bad MX host %q (use NullMX for \"0 .\")", name, mx.Host)
			}
			dm.mx = append(dm.mx, MX{Preference: mx.Preference, Host: host})
		}
		for _, s := range d.A {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return nil, invalid("domain %q: bad address %q", name, s)
			}
			a = a.Unmap()
			// Loopback only, so that nothing a test resolves can lead a
			// client off this machine.
			if !a.IsLoopback() {
				return nil, invalid("domain %q: address %s is not loopback", name, a)
			}
			dm.addrs = append(dm.addrs, a)
			addAddr(name, a)
		}
		for _, mb := range d.Mailboxes {
			mb = strings.ToLower(strings.TrimSpace(mb))
			if mb == "" {
				return nil, invalid("domain %q: empty mailbox", name)
			}
			dm.mailboxes[mb] = true
		}
		if r := d.UnknownReply; r != nil {
			if r.Code < 400 || r.Code > 599 {
				return nil, invalid("domain %q: unknown-recipient reply has code %d", name, r.Code)
			}
			if _, err := parseEnhanced(r.Enhanced); err != nil {
				return nil, invalid("domain %q: unknown-recipient reply: %v", name, err)
			}
		}
		for local, r := range d.Replies {
			if r.Raw != "" {
				if r.Code != 0 || r.Enhanced != "" || r.Message != "" {
					return nil, invalid("domain %q: reply for %q has Raw and Code, Enhanced or Message", name, local)
				}
				if _, _, err := rawLines(r.Raw); err != nil {
					return nil, invalid("domain %q: reply for %q: %v", name, local, err)
				}
				dm.replies[strings.ToLower(strings.TrimSpace(local))] = r
				continue
			}
			if r.Code < 200 || r.Code > 599 {
				return nil, invalid("domain %q: reply for %q has code %d", name, local, r.Code)
			}
			if _, err := parseEnhanced(r.Enhanced); err != nil {
				return nil, invalid("domain %q: reply for %q: %v", name, local, err)
			}
			dm.replies[strings.ToLower(strings.TrimSpace(local))] = r
		}
		m.domains[name] = dm
	}

	if err := m.records.build(w); err != nil {
		return nil, err
	}

	hostByIP := make(map[netip.Addr]*hostModel, len(m.hosts))
	for _, h := range m.hosts {
		hostByIP[h.ip] = h
	}
	for _, dm := range m.domains {
		var targets []string
		switch {
		case dm.nullMX:
		case len(dm.mx) > 0:
			// An MX naming neither a host nor a domain with addresses is
			// published as it is: a dangling MX, which real worlds have too.
			for _, mx := range dm.mx {
				targets = append(targets, mx.Host)
			}
		default:
			targets = append(targets, dm.name)
		}
		for _, t := range targets {
			for _, a := range m.addrs[t] {
				if h := hostByIP[a]; h != nil {
					h.serves[dm.name] = true
				}
			}
		}
	}
	return m, nil
}

// parseEnhanced parses "x.y.z"; "" yields nil (no enhanced code).
func parseEnhanced(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("bad enhanced code %q", s)
	}
	out := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || (i == 0 && n != 2 && n != 4 && n != 5) {
			return nil, fmt.Errorf("bad enhanced code %q", s)
		}
		out[i] = n
	}
	return out, nil
}
