package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/store"
)

// What the store remembers beyond verdicts, and how long it binds:
//
//   - a domain's catch-all answer: reused while store.Freshness says so
//     (7 days by default): the domain is not asked again;
//   - an MX host's recipient limits (per transaction, per connection):
//     they only make us gentler, so they seed the host's queue for
//     limitsMemory;
//   - a refusal of one of our egresses by an operator: that egress asks the
//     operator nothing for Config.RefusalMemory (default 24 hours) after the
//     refusal, in every run; other egresses are not affected. Blocklist
//     listings behind such refusals usually expire or are lifted within a
//     day or two; after that, one session finds out again, at a cost of
//     one refused greeting;
//   - STARTTLS offered and greylisting seen are written, for the record
//     (bulkverify store export) and later use; they change nothing yet.

// limitsMemory is how long learnt recipient limits seed a host's queue.
const limitsMemory = 7 * 24 * time.Hour

// defaultRefusalMemory is Config.RefusalMemory's default.
const defaultRefusalMemory = 24 * time.Hour

// storeSink writes to the store for one run. A failed write (a full disk, a
// damaged file) is reported once and the run goes on without the store:
// the output file is what the user asked for, and the store only saves
// work later. The store's own error is sticky: every later write fails too.
type storeSink struct {
	st     *store.Store
	ctx    context.Context // never cancelled: what was decided is still remembered
	ns     string          // namespace verdicts are written to
	failed atomic.Bool
	once   sync.Once
	onErr  func(error)
	mu     sync.Mutex
	err    error
}

func newStoreSink(cfg *Config) *storeSink {
	ns := store.DefaultNamespace
	if len(cfg.StoreNamespaces) > 0 {
		ns = cfg.StoreNamespaces[0]
	}
	return &storeSink{st: cfg.Store, ctx: context.Background(), ns: ns, onErr: cfg.OnStoreError}
}

func (s *storeSink) ok() bool { return s != nil && !s.failed.Load() }

// check records err, if any, as the end of writing to the store.
func (s *storeSink) check(err error) {
	if err == nil || errors.Is(err, store.ErrBadKey) {
		return // a key the store cannot hold (an odd address): that one is not remembered
	}
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		s.failed.Store(true)
		if s.onErr != nil {
			s.onErr(err)
		}
	})
}

// flush commits what the run wrote, so that the store holds all of it when
// Run returns (a caller may look it up, or run again, at once).
func (s *storeSink) flush() {
	if s.ok() {
		s.check(s.st.Flush(s.ctx))
	}
}

func (s *storeSink) error() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// knowledge is what the store remembers about domains and MX hosts, as one
// run reads and adds to it.
type knowledge struct {
	cfg  *Config
	sink *storeSink

	mu    sync.Mutex
	hosts map[string]*store.MXInfo // looked up; nil = nothing stored
	noted map[string]*hostNotes    // what this run wrote about each host
}

// hostNotes keeps each fact about a host from being written more than once
// per run.
type hostNotes struct {
	tls, grey bool
}

func newKnowledge(cfg *Config, sink *storeSink) *knowledge {
	return &knowledge{cfg: cfg, sink: sink, hosts: map[string]*store.MXInfo{}, noted: map[string]*hostNotes{}}
}

// loadHosts reads what the store knows of hosts not seen yet in this run,
// before their queues exist (seedHost runs under the router's lock, where
// no file is read), and gives the egress pool the refusals that still bind.
func (k *knowledge) loadHosts(ctx context.Context, mxs []resolve.MX) {
	for _, mx := range mxs {
		k.mu.Lock()
		_, seen := k.hosts[mx.Host]
		if !seen {
			k.hosts[mx.Host] = nil // claimed: looked up once
		}
		k.mu.Unlock()
		if seen {
			continue
		}
		info, err := k.cfg.Store.MX(ctx, mx.Host)
		if err != nil {
			continue // not known, or unreadable: nothing to seed
		}
		k.mu.Lock()
		k.hosts[mx.Host] = &info
		k.mu.Unlock()
		k.seedRefusals(info)
	}
}

// seedRefusals tells the pool which of its egresses an operator refused
// recently enough to still bind.
func (k *knowledge) seedRefusals(info store.MXInfo) {
	pool := k.cfg.Egress
	if pool == nil {
		return
	}
	now := k.cfg.Now()
	for _, r := range info.Refusals {
		if r.At.IsZero() || now.Sub(r.At) >= k.cfg.RefusalMemory {
			continue
		}
		eg := pool.Lookup(r.Egress)
		if eg == nil {
			continue // an egress this run does not have
		}
		reason := "remembered from " + r.At.UTC().Format(time.RFC3339)
		if r.Reply != "" {
			reason += ": " + r.Reply
		}
		if pool.Refused(eg, r.Operator, reason) && k.cfg.OnRefused != nil {
			k.cfg.OnRefused(eg.Name(), r.Operator, reason)
		}
	}
}

// seedHost gives a new host queue the limits learnt in earlier runs. It is
// called with the router's lock held.
func (k *knowledge) seedHost(h *hostQueue) {
	k.mu.Lock()
	info := k.hosts[h.name]
	k.mu.Unlock()
	if info == nil || info.LimitsAt.IsZero() || k.cfg.Now().Sub(info.LimitsAt) >= limitsMemory {
		return
	}
	h.txnLimit, h.connRcpt = info.RcptPerTransaction, info.RcptPerConnection
}

// catchAll returns domain's stored catch-all answer if it is fresh.
func (k *knowledge) catchAll(ctx context.Context, domain string) *store.DomainInfo {
	d, err := k.cfg.Store.Domain(ctx, domain)
	if err != nil || !k.cfg.Store.CatchAllFresh(d) {
		return nil
	}
	return &d
}

func (k *knowledge) putCatchAll(domain string, yes bool, host string, at time.Time) {
	if !k.sink.ok() {
		return
	}
	k.sink.check(k.cfg.Store.PutDomain(k.sink.ctx, store.DomainInfo{
		Domain: domain, CatchAll: store.TriOf(&yes), CatchAllMX: host, CatchAllAt: at,
	}))
}

func (k *knowledge) putMX(m store.MXInfo) {
	if !k.sink.ok() {
		return
	}
	k.sink.check(k.cfg.Store.PutMX(k.sink.ctx, m))
}

// notes returns the notes of host, with mu held by the caller.
func (k *knowledge) notesLocked(host string) *hostNotes {
	n := k.noted[host]
	if n == nil {
		n = &hostNotes{}
		k.noted[host] = n
	}
	return n
}

// sawTLS records, once per run, whether host offered STARTTLS.
func (k *knowledge) sawTLS(host string, offered bool) {
	k.mu.Lock()
	n := k.notesLocked(host)
	first := !n.tls
	n.tls = true
	k.mu.Unlock()
	if first {
		k.putMX(store.MXInfo{Host: host, StartTLS: store.TriOf(&offered), StartTLSAt: k.cfg.Now()})
	}
}

// sawGreylisting records, once per run, that host greylisted us.
func (k *knowledge) sawGreylisting(host string) {
	k.mu.Lock()
	n := k.notesLocked(host)
	first := !n.grey
	n.grey = true
	k.mu.Unlock()
	if first {
		k.putMX(store.MXInfo{Host: host, GreylistedAt: k.cfg.Now()})
	}
}

// learntLimits records the recipient limits learnt about host (0 = none).
func (k *knowledge) learntLimits(host string, perTxn, perConn int) {
	k.putMX(store.MXInfo{Host: host, RcptPerTransaction: perTxn, RcptPerConnection: perConn, LimitsAt: k.cfg.Now()})
}

// refused records that operator, at host, refused egress.
func (k *knowledge) refused(host, egressName, operator, reason string) {
	k.putMX(store.MXInfo{Host: host, Refusals: []store.Refusal{{Egress: egressName, Operator: operator, Reply: reason, At: k.cfg.Now()}}})
}

// put writes a probed verdict.
func (s *storeSink) put(v Verdict) {
	sv := store.Verdict{
		Namespace: s.ns,
		Address:   v.text,
		Domain:    v.Addr.Domain,
		Status:    v.Status,
		Reason:    v.Reason,
		MXHost:    v.MXHost,
		CatchAll:  store.TriOf(v.CatchAll),
		TLS:       store.TriOf(v.TLS),
		Egress:    v.Egress,
		Attempts:  v.Attempts,
		CheckedAt: v.At,
	}
	if sv.Address == "" {
		sv.Address = v.Addr.String()
	}
	if v.Reply != nil {
		sv.SMTPCode, sv.EnhancedCode = v.Reply.Code, v.Reply.Enhanced
		sv.Message = output.CleanMessage(v.Reply.Text())
	}
	s.check(s.st.Put(s.ctx, sv))
}
