package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host       string // lower-case, no trailing dot
	Preference uint16
}

// Mail is the answer for one mail domain.
type Mail struct {
	Domain   string // as asked, lower-case, no trailing dot
	Hosts    []MX   // sorted by preference ascending, ties by host name; never empty on success
	Implicit bool   // domain had no MX; Hosts is the domain itself because it has A/AAAA (RFC 5321 §5.1)
}

var (
	// ErrNXDomain means the name does not exist (NXDOMAIN).
	ErrNXDomain = errors.New("domain does not exist (NXDOMAIN)")
	// ErrNullMX means the domain publishes the RFC 7505 null MX "0 .": it accepts no mail.
	ErrNullMX = errors.New("domain accepts no mail (null MX)")
	// ErrNoMailHost means the domain exists but has neither MX nor A/AAAA records.
	ErrNoMailHost = errors.New("domain has no MX and no address records")
	// ErrNoAddress means a host name has no A/AAAA records (or does not exist).
	ErrNoAddress = errors.New("host has no address records")
)

// TemporaryError reports a failure that may go away on a later try:
// SERVFAIL, REFUSED, timeouts or network errors that persisted after all
// attempts. It is never cached.
type TemporaryError struct {
	Name   string // the name queried
	Reason string // short word: "servfail", "refused", "timeout", "network", ...
	Err    error  // underlying error, may be nil
}

func (e *TemporaryError) Error() string {
	msg := "resolve " + e.Name + ": temporary failure (" + e.Reason + ")"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TemporaryError) Unwrap() error { return e.Err }

// Config configures a Resolver. The zero value is usable: it reads
// /etc/resolv.conf and applies the defaults documented on each field.
type Config struct {
	Servers     []string         // "host:port" of recursive resolvers; empty = read ResolvConf
	ResolvConf  string           // default "/etc/resolv.conf"
	Timeout     time.Duration    // per query attempt, default 2s
	Attempts    int              // total tries per query, rotating over Servers, default 3
	CacheSize   int              // LRU entries, default 100000
	MinTTL      time.Duration    // positive answers cached at least this long, default 0
	MaxTTL      time.Duration    // and at most this long, default 24h
	NegativeTTL time.Duration    // upper bound for caching NXDOMAIN/NODATA (RFC 2308: SOA minimum, capped by this), default 5m
	Now         func() time.Time // nil = time.Now; tests pass a fake clock
}

// Stats counts work done by a Resolver since New. Cache hits and misses
// are counted per (name, type) lookup, so one LookupMail may count several.
type Stats struct{ Queries, CacheHits, CacheMisses uint64 } // Queries = DNS messages actually sent

const (
	defaultResolvConf  = "/etc/resolv.conf"
	defaultTimeout     = 2 * time.Second
	defaultAttempts    = 3
	defaultCacheSize   = 100000
	defaultMaxTTL      = 24 * time.Hour
	defaultNegativeTTL = 5 * time.Minute
	// 1232 avoids IP fragmentation on practically every path (DNS flag day 2020).
	ednsUDPSize = 1232
)

// Resolver looks up mail exchangers and host addresses. It is safe for
// concurrent use.
type Resolver struct {
	servers     []string
	attempts    int
	minTTL      time.Duration
	maxTTL      time.Duration
	negativeTTL time.Duration
	now         func() time.Time
	udp         *udpPool
	tcp         *dns.Client

	cache  *lru.Cache[cacheKey, entry]
	flight singleflight.Group

	queries, hits, misses atomic.Uint64
}

// New returns a Resolver with cfg's defaults applied. It fails when no
// usable server is configured or found in ResolvConf.
func New(cfg Config) (*Resolver, error) {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = defaultResolvConf
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = defaultAttempts
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = defaultCacheSize
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = defaultMaxTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = defaultNegativeTTL
	}
	if cfg.MinTTL < 0 || cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("resolve: MinTTL %v must be between 0 and MaxTTL %v", cfg.MinTTL, cfg.MaxTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	servers, err := serverList(cfg.Servers, cfg.ResolvConf)
	if err != nil {
		return nil, err
	}
	cache, err := lru.New[cacheKey, entry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("resolve: cache: %w", err)
	}
	return &Resolver{
		servers:     servers,
		attempts:    cfg.Attempts,
		minTTL:      cfg.MinTTL,
		maxTTL:      cfg.MaxTTL,
		negativeTTL: cfg.NegativeTTL,
		now:         cfg.Now,
		udp:         newUDPPool(&dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsUDPSize}),
		tcp:         &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache:       cache,
	}, nil
}

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	return Stats{Queries: r.queries.Load(), CacheHits: r.hits.Load(), CacheMisses: r.misses.Load()}
}

// LookupMail returns the mail exchangers of domain. Permanent outcomes are
// ErrNXDomain, ErrNullMX and ErrNoMailHost (test with errors.Is); failures
// worth retrying later are *TemporaryError (test with errors.As), and a
// done ctx gives its error wrapped. A "." target published next to real
// exchangers violates RFC 7505 and is ignored in favour of them.
func (r *Resolver) LookupMail(ctx context.Context, domain string) (Mail, error) {
	name, err := normalize(domain)
	if err != nil {
		return Mail{}, err
	}
	a, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return Mail{}, err
	}
	switch a.kind {
	case kindNXDomain:
		return Mail{}, fmt.Errorf("resolve %s: %w", name, ErrNXDomain)
	case kindAnswer:
		if len(a.mx) > 0 {
			return Mail{Domain: name, Hosts: slices.Clone(a.mx)}, nil
		}
		return Mail{}, fmt.Errorf("resolve %s: %w", name, ErrNullMX)
	}
	// NODATA for MX: RFC 5321 §5.1 falls back to the domain's own address.
	res := r.addresses(ctx, name)
	if len(res.v4)+len(res.v6) > 0 {
		return Mail{Domain: name, Hosts: []MX{{Host: name}}, Implicit: true}, nil
	}
	if res.err != nil {
		return Mail{}, res.err
	}
	return Mail{}, fmt.Errorf("resolve %s: %w", name, ErrNoMailHost)
}

// LookupHost returns the A and AAAA addresses of host, IPv4 first. When
// one family fails temporarily but the other has addresses, the addresses
// are returned without error: they are enough to reach the host.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	name, err := normalize(host)
	if err != nil {
		return nil, err
	}
	res := r.addresses(ctx, name)
	if len(res.v4)+len(res.v6) > 0 {
		return slices.Concat(res.v4, res.v6), nil
	}
	if res.err != nil {
		return nil, res.err
	}
	if res.nx {
		return nil, fmt.Errorf("resolve %s: %w: %w", name, ErrNoAddress, ErrNXDomain)
	}
	return nil, fmt.Errorf("resolve %s: %w", name, ErrNoAddress)
}

type addrResult struct {
	v4, v6 []netip.Addr
	nx     bool  // either family said NXDOMAIN
	err    error // first failure of either family
}

// addresses asks A and AAAA in parallel: a name with only one of them
// should not pay two round trips.
func (r *Resolver) addresses(ctx context.Context, name string) addrResult {
	var (
		wg         sync.WaitGroup
		a4, a6     *answer
		err4, err6 error
	)
	wg.Go(func() { a4, err4 = r.query(ctx, name, dns.TypeA) })
	wg.Go(func() { a6, err6 = r.query(ctx, name, dns.TypeAAAA) })
	wg.Wait()

	var res addrResult
	if err := ctx.Err(); err != nil {
		res.err = fmt.Errorf("resolve %s: %w", name, err)
		return res
	}
	res.err = cmp.Or(err4, err6)
	if a4 != nil {
		res.v4 = slices.Clone(a4.addrs)
		res.nx = a4.kind == kindNXDomain
	}
	if a6 != nil {
		res.v6 = slices.Clone(a6.addrs)
		res.nx = res.nx || a6.kind == kindNXDomain
	}
	return res
}

// normalize turns a name as callers write it into the cache and result
// form: lower-case, no trailing dot.
func normalize(name string) (string, error) {
	s := strings.ToLower(strings.TrimSuffix(name, "."))
	if s == "" || strings.HasSuffix(s, ".") {
		return "", fmt.Errorf("resolve: invalid domain name %q", name)
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return "", fmt.Errorf("resolve: invalid domain name %q", name)
	}
	return s, nil
}
