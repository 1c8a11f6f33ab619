package egress

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// DefaultCanaryDomains are the canaries of both preflights: mail domains of
// providers whose MX hosts exist, resolve and answer on port 25 from
// anywhere outbound SMTP is allowed.
func DefaultCanaryDomains() []string { return []string{"gmail.com", "outlook.com", "yahoo.com"} }

// DNSCanary is the answer for one canary domain.
type DNSCanary struct {
	Domain string
	Hosts  []string // its MX hosts when the lookup succeeded
	Err    error    // why the lookup failed or cannot be believed
}

// DNSError says the resolver cannot be trusted: a canary that certainly
// has MX records does not exist or has none (a filtering, captive-portal or
// split-horizon resolver), or no canary could be resolved at all. Failed
// holds the canaries that failed.
type DNSError struct {
	Failed    []DNSCanary
	AllFailed bool
}

func (e *DNSError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, c := range e.Failed {
		parts[i] = c.Domain + ": " + c.Err.Error()
	}
	return "the DNS resolver cannot be trusted: MX lookups of well-known mail domains failed (" +
		strings.Join(parts, "; ") + "); a filtering, captive-portal or split-horizon resolver would make " +
		"every address look invalid, so nothing was verified. Point --resolver (dns.resolver) at a working " +
		"recursive resolver, or run `bulkverify doctor`"
}

// errNoMX marks a canary answered with its implicit MX: the resolver
// claims a provider's mail domain publishes no MX record.
var errNoMX = errors.New("no MX record (a resolver that hides MX records?)")

// CheckDNS resolves the MX of each canary domain (DefaultCanaryDomains when
// domains is empty), in parallel. It returns a *DNSError when any canary
// gets a permanent negative answer (NXDOMAIN, no MX, null MX), or when every
// canary fails; the report lists every answer, so temporary failures of
// some canaries can be shown as warnings.
func CheckDNS(ctx context.Context, res *resolve.Resolver, domains []string) ([]DNSCanary, error) {
	if len(domains) == 0 {
		domains = DefaultCanaryDomains()
	}
	out := make([]DNSCanary, len(domains))
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Go(func() {
			out[i] = DNSCanary{Domain: d}
			mail, err := res.LookupMail(ctx, d)
			switch {
			case err != nil:
				out[i].Err = err
			case mail.Implicit:
				out[i].Err = errNoMX
			default:
				for _, mx := range mail.Hosts {
					out[i].Hosts = append(out[i].Hosts, mx.Host)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("egress: DNS check: %w", err)
	}
	var failed []DNSCanary
	permanent := false
	for _, c := range out {
		if c.Err == nil {
			continue
		}
		failed = append(failed, c)
		var te *resolve.TemporaryError
		if !errors.As(c.Err, &te) {
			permanent = true
		}
	}
	if permanent || len(failed) == len(out) {
		return out, &DNSError{Failed: failed, AllFailed: len(failed) == len(out)}
	}
	return out, nil
}

// Port25Config configures CheckPort25. The zero value of every field but
// Probe.HeloName is usable.
type Port25Config struct {
	// Domains are the canary mail domains; the most preferred MX host of
	// each is tried. Default DefaultCanaryDomains.
	Domains []string
	// Port is the SMTP port, default 25.
	Port int
	// Probe gives the HELO name and timeouts of the canary sessions; Dial
	// and TLS are set by the check (no STARTTLS). Its timeouts are capped
	// at 10s to connect and 20s per reply, so that a blocked network is told
	// within Timeout.
	Probe probe.Config
	// Timeout bounds the whole check, default 60s.
	Timeout time.Duration
	// Parallel is how many canary sessions run at once, default 32: enough
	// for every egress to try every canary at once in common setups, so
	// that a blocked network is told within one timeout, however many
	// egresses there are.
	Parallel int
}

// Outcome is the result of one canary session.
type Outcome string

const (
	// OutcomeOK: banner, EHLO and QUIT went through.
	OutcomeOK Outcome = "ok"
	// OutcomeUnreachable: no SMTP conversation: the connection was refused,
	// timed out or had no route, or no banner came.
	OutcomeUnreachable Outcome = "unreachable"
	// OutcomeRefused: the server answered but refused us at the banner or
	// EHLO (a block of our address?); port 25 itself is reachable.
	OutcomeRefused Outcome = "refused"
	// OutcomeEgressFailed: the egress itself failed (*ProxyError, *BindError).
	OutcomeEgressFailed Outcome = "egress_failed"
)

// CanaryHost is the MX host of a canary domain.
type CanaryHost struct {
	Domain string
	Host   string
	Addrs  []netip.Addr // IPv4 first
}

// Attempt is one canary session from one egress.
type Attempt struct {
	Egress  string
	Host    string
	Addr    string // "ip:port" dialed; "" when no address of the egress's family
	Outcome Outcome
	Err     error // nil for OutcomeOK
}

// Port25Report lists what CheckPort25 found.
type Port25Report struct {
	Hosts      []CanaryHost
	Unresolved []DNSCanary // canaries whose MX host could not be resolved
	Attempts   []Attempt   // by egress in pool order, then by host
}

// Reached reports whether egress had an SMTP conversation with any canary
// (OutcomeOK or OutcomeRefused).
func (r Port25Report) Reached(egress string) bool {
	for _, a := range r.Attempts {
		if a.Egress == egress && (a.Outcome == OutcomeOK || a.Outcome == OutcomeRefused) {
			return true
		}
	}
	return false
}

// Port25Error says no canary mail server could be reached from any egress:
// outbound port 25 is most likely blocked.
type Port25Error struct {
	Hosts    []CanaryHost
	Egresses []string
	Attempts []Attempt
	// Unresolved is set when not even one canary host could be resolved.
	Unresolved []DNSCanary
}

func (e *Port25Error) Error() string {
	if len(e.Hosts) == 0 {
		parts := make([]string, len(e.Unresolved))
		for i, c := range e.Unresolved {
			parts[i] = c.Domain + ": " + c.Err.Error()
		}
		return "port-25 preflight: no canary mail host could be resolved (" + strings.Join(parts, "; ") +
			"); check the resolver with `bulkverify doctor`"
	}
	hosts := make([]string, len(e.Hosts))
	for i, h := range e.Hosts {
		hosts[i] = h.Host
		if len(h.Addrs) > 0 {
			hosts[i] += " [" + h.Addrs[0].String() + "]"
		}
	}
	counts := map[string]int{}
	for _, a := range e.Attempts {
		counts[failureWord(a)]++
	}
	var tally []string
	for _, w := range slices.Sorted(maps.Keys(counts)) {
		tally = append(tally, fmt.Sprintf("%d %s", counts[w], w))
	}
	return fmt.Sprintf("port 25 unreachable: no canary mail server answered from any egress "+
		"(tried %s from %s; %d attempts: %s). Outbound SMTP (port 25) is probably blocked on this "+
		"network, as it is on most home and cloud networks, and every row would end unknown after long "+
		"timeouts. What to do: send through a SOCKS5 proxy that allows port 25 (--proxy "+
		"socks5://user:password@host:port), send from another local address (--source-ip), run bulkverify "+
		"on a host that allows outbound port 25, or see `bulkverify doctor`; --no-preflight skips this check",
		strings.Join(hosts, ", "), strings.Join(e.Egresses, ", "), len(e.Attempts), strings.Join(tally, ", "))
}

// failureWord summarises why an attempt failed, for messages.
func failureWord(a Attempt) string {
	switch {
	case a.Outcome == OutcomeEgressFailed:
		return "egress failed"
	case a.Addr == "":
		return "no address of the egress's family"
	case isTimeout(a.Err):
		return "timed out"
	case strings.Contains(errText(a.Err), "refused"):
		return "refused"
	case strings.Contains(errText(a.Err), "unreachable"):
		return "unreachable"
	case a.Outcome == OutcomeRefused:
		return "SMTP refusal"
	}
	return "failed"
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

const (
	preflightConnectTimeout = 10 * time.Second
	preflightReplyTimeout   = 20 * time.Second
	defaultPreflightTimeout = 60 * time.Second
	defaultPreflightJobs    = 32
)

// CheckPort25 connects from every egress of pool that is not disabled to
// the most preferred MX host of each canary domain: banner, EHLO, QUIT; no
// MAIL, no RCPT, no STARTTLS. It returns a *Port25Error when no egress
// reached any canary. When only some egresses or hosts fail, the error is
// nil and the report says which (warnings for the caller to print, or
// egresses to Disable).
func CheckPort25(ctx context.Context, pool *Pool, res *resolve.Resolver, cfg Port25Config) (Port25Report, error) {
	if len(cfg.Domains) == 0 {
		cfg.Domains = DefaultCanaryDomains()
	}
	if cfg.Port <= 0 {
		cfg.Port = 25
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultPreflightTimeout
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = defaultPreflightJobs
	}
	pc := cfg.Probe
	pc.TLS = probe.TLSOff
	pc.MailFrom = ""
	pc.ConnectTimeout = capDuration(pc.ConnectTimeout, preflightConnectTimeout)
	pc.GreetingTimeout = capDuration(pc.GreetingTimeout, preflightReplyTimeout)
	pc.CommandTimeout = capDuration(pc.CommandTimeout, preflightReplyTimeout)
	if pc.HeloName == "" {
		return Port25Report{}, fmt.Errorf("egress: port-25 preflight: %w: no HELO name", probe.ErrBadArgument)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var rep Port25Report
	rep.Hosts, rep.Unresolved = canaryHosts(ctx, res, cfg.Domains)

	var egresses []*Egress
	stats := pool.Stats()
	for i, e := range pool.Egresses() {
		if stats[i].State != StateDisabled {
			egresses = append(egresses, e)
		}
	}
	rep.Attempts = make([]Attempt, len(egresses)*len(rep.Hosts))
	sem := make(chan struct{}, cfg.Parallel)
	var wg sync.WaitGroup
	for i, e := range egresses {
		for j, h := range rep.Hosts {
			wg.Go(func() {
				select {
				case sem <- struct{}{}:
					defer func() { <-sem }()
				case <-ctx.Done():
				}
				rep.Attempts[i*len(rep.Hosts)+j] = canaryAttempt(ctx, e, h, cfg.Port, pc)
			})
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return rep, fmt.Errorf("egress: port-25 preflight: %w", err)
	}

	names := make([]string, len(egresses))
	for i, e := range egresses {
		names[i] = e.Name()
		if rep.Reached(e.Name()) {
			return rep, nil
		}
	}
	return rep, &Port25Error{Hosts: rep.Hosts, Egresses: names, Attempts: rep.Attempts, Unresolved: rep.Unresolved}
}

func capDuration(d, limit time.Duration) time.Duration {
	if d <= 0 || d > limit {
		return limit
	}
	return d
}

// canaryHosts resolves the most preferred MX host of each domain.
func canaryHosts(ctx context.Context, res *resolve.Resolver, domains []string) ([]CanaryHost, []DNSCanary) {
	hosts := make([]CanaryHost, len(domains))
	errs := make([]error, len(domains))
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Go(func() {
			mail, err := res.LookupMail(ctx, d)
			if err != nil {
				errs[i] = err
				return
			}
			h := mail.Hosts[0].Host
			addrs, err := res.LookupHost(ctx, h)
			if err != nil {
				errs[i] = err
				return
			}
			hosts[i] = CanaryHost{Domain: d, Host: h, Addrs: addrs}
		})
	}
	wg.Wait()
	var ok []CanaryHost
	var failed []DNSCanary
	for i, d := range domains {
		if errs[i] != nil {
			failed = append(failed, DNSCanary{Domain: d, Err: errs[i]})
		} else {
			ok = append(ok, hosts[i])
		}
	}
	return ok, failed
}

func canaryAttempt(ctx context.Context, e *Egress, h CanaryHost, port int, pc probe.Config) Attempt {
	a := Attempt{Egress: e.Name(), Host: h.Host, Outcome: OutcomeUnreachable}
	var target netip.Addr
	for _, ip := range h.Addrs {
		if src := e.Source(); !src.IsValid() || src.Is4() == ip.Is4() {
			target = ip
			break
		}
	}
	if !target.IsValid() {
		a.Err = ErrAddressFamily
		return a
	}
	a.Addr = netip.AddrPortFrom(target, uint16(port)).String()
	if err := ctx.Err(); err != nil {
		a.Err = err
		return a
	}
	pc.Dial = e.DialContext
	s, err := probe.Dial(ctx, a.Addr, pc)
	if err == nil {
		_ = s.Quit(ctx)
		a.Outcome = OutcomeOK
		return a
	}
	a.Err = err
	var (
		re *probe.ReplyError
		pe *ProxyError
		be *BindError
	)
	switch {
	case errors.As(err, &re):
		a.Outcome = OutcomeRefused
	case errors.As(err, &pe), errors.As(err, &be):
		a.Outcome = OutcomeEgressFailed
	}
	return a
}
