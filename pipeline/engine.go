package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/verdict"
)

// fatal stops the run with err, which Run then returns.
func (e *engine) fatal(err error) { e.stopRun(err) }

// Verdict is what the engine concluded about one distinct address.
type Verdict struct {
	Addr     input.Address
	Status   string
	Reason   string
	Reply    *probe.Reply // the reply the verdict rests on, if any
	MXHost   string
	Provider string // operator of MXHost in the operator table; "" for a host in no entry
	Egress   string // the egress of the session that answered; "" when none did
	CatchAll *bool  // nil when not determined
	TLS      *bool  // nil when no session was established
	Attempts int
	At       time.Time
	Signals  signals.Facts // zero when Config.Signals is nil
}

// DomainGroup is the distinct, syntactically valid addresses of one domain.
type DomainGroup struct {
	Domain    string
	Addresses []input.Address
}

// EngineStats counts what the engine did on the wire.
type EngineStats struct {
	Connections int           // SMTP sessions established
	MXHosts     []string      // hosts at least one session was established to
	Hosts       []HostSummary // what happened at each host
	Err         error         // what stopped the run early (a *TrippedError), if anything did
}

// engine resolves, routes and probes addresses; verify and find are front
// ends that turn input rows into DomainGroups and Verdicts into output rows.
type engine struct {
	cfg    Config
	res    *resolve.Resolver
	router *router
	slots  chan struct{}
	out    chan<- Verdict
	start  time.Time

	// workCtx is the run's context, kept here because the router starts
	// workers (and retry timers fire) where no caller's context is at hand.
	// stopRun ends it with the error that stops the run (fatal).
	workCtx     context.Context
	stopRun     context.CancelCauseFunc
	workers     sync.WaitGroup
	connections atomic.Int64

	mu       sync.Mutex                // guards domainState fields, heldBy and the retry timers
	heldBy   map[*domainState]struct{} // domains with acceptances waiting for their catch-all answer
	timers   map[clockwork.Timer]struct{}
	stopped  bool           // no more retries: the run is over
	timersWG sync.WaitGroup // retry callbacks running or due
}

// domainState is what the engine knows about one domain during a run.
type domainState struct {
	name string
	mail resolve.Mail

	// Catch-all detection: one RCPT for a local part that cannot exist,
	// asked in the same transaction as the domain's real recipients.
	probePending bool
	catchAll     *bool
	checkHost    string    // the MX host that answered the check
	held         []Verdict // acceptances waiting for the catch-all answer

	// refusesAll: an MX host refused the domain's doubtful addresses and
	// postmaster from the first RCPT of a connection (see giveUpDomain).
	refusesAll bool
}

// target is one distinct address on its way through the engine.
type target struct {
	addr     input.Address
	dom      *domainState
	catchAll bool // the synthetic catch-all probe, not a user's address
	mxIdx    int  // index into dom.mail.Hosts of the host it is routed to
	tries    int  // RCPT commands sent for it
	retries  int  // delayed retry rounds used
	// suspect counts the refusals it got in transactions whose positive
	// control (postmaster@) was refused too: such a refusal says nothing
	// about the mailbox.
	suspect      int
	suspectReply *probe.Reply // the refusal that made it suspect
	failed       *hostFailure // why the MX hosts tried so far in this round could not be used
	firstTry     time.Time
	lastTLS      *bool
	lastEgress   string
}

// probeEngine runs the engine over groups and sends exactly one Verdict per
// address to out (which it does not close). It returns when every verdict is
// sent or ctx ends; undecided addresses then get no verdict.
func probeEngine(ctx context.Context, cfg Config, res *resolve.Resolver, groups []DomainGroup, out chan<- Verdict) EngineStats {
	cfg.setDefaults()
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	e := &engine{
		stopRun: stopRun,
		cfg:     cfg,
		res:     res,
		slots:   make(chan struct{}, cfg.MaxConnections),
		out:     out,
		start:   cfg.Clock.Now(),
		workCtx: ctx,
		timers:  map[clockwork.Timer]struct{}{},
		heldBy:  map[*domainState]struct{}{},
	}
	e.router = newRouter(&e.cfg, e.startWorker, e.hostGaveUp)
	total := 0
	for _, g := range groups {
		total += len(g.Addresses)
	}
	e.router.expect(total)
	e.resolveAll(ctx, groups)
	e.router.producerDone()
	select {
	case <-e.router.allDone:
	case <-ctx.Done():
	}
	e.router.stop()
	e.stopRetries()
	e.workers.Wait()
	e.releaseHeld()
	stats := EngineStats{Connections: int(e.connections.Load()), MXHosts: e.router.hostsUsed(), Hosts: e.router.summaries()}
	var tripped *TrippedError
	if err := context.Cause(ctx); errors.As(err, &tripped) {
		stats.Err = err
	}
	return stats
}

// releaseHeld writes the acceptances still waiting for their domain's
// catch-all answer when the run stops before it came: they were decided,
// and a decided row is never dropped. Their catch_all stays empty.
func (e *engine) releaseHeld() {
	e.mu.Lock()
	var release []Verdict
	for dom := range e.heldBy {
		release = append(release, dom.held...)
		dom.held = nil
	}
	clear(e.heldBy)
	e.mu.Unlock()
	for _, v := range release {
		e.out <- e.finish(v)
	}
}

// resolveAll looks up every domain once and routes its addresses.
func (e *engine) resolveAll(ctx context.Context, groups []DomainGroup) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.DNSWorkers)
	for _, grp := range groups {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			dom := &domainState{name: grp.Domain}
			block := make([]target, len(grp.Addresses)) // one allocation per domain, not per address
			targets := make([]*target, 0, len(grp.Addresses)+1)
			for i, a := range grp.Addresses {
				block[i] = target{addr: a, dom: dom}
				targets = append(targets, &block[i])
			}
			e.resolveDomain(gctx, dom, targets, 0)
			return nil
		})
	}
	_ = g.Wait()
}

// resolveDomain looks the domain up and routes its addresses, or gives them
// their DNS verdict. A temporary DNS failure (SERVFAIL, timeouts) is asked
// again on the delayed-retry schedule before it becomes dns_error.
func (e *engine) resolveDomain(ctx context.Context, dom *domainState, targets []*target, round int) {
	if e.cfg.DoNotProbe.domain(dom.name) {
		e.skip(targets)
		return
	}
	mail, err := e.res.LookupMail(ctx, dom.name)
	if err != nil {
		if ctx.Err() != nil {
			return // cancelled: leave the addresses undecided rather than misjudge them
		}
		status, reason := dnsVerdict(err)
		if reason != ReasonDNSError && e.recordDomain(dom, reason != ReasonNXDomain) {
			return // the resolver is not to be trusted: no verdict from it
		}
		if reason == ReasonDNSError && round < e.cfg.RetryRounds && e.cfg.RetryDelay > 0 {
			delay := e.cfg.RetryDelay << round
			if e.cfg.Clock.Since(e.start)+delay <= e.cfg.MaxWait {
				e.later(delay, func() { e.resolveDomain(e.workCtx, dom, targets, round+1) })
				return
			}
		}
		for _, t := range targets {
			e.emit(t, Verdict{Status: status, Reason: reason})
		}
		return
	}
	if e.recordDomain(dom, true) {
		return
	}
	for _, mx := range mail.Hosts {
		if e.cfg.DoNotProbe.Operators[e.cfg.Operators.Lookup(mx.Host).Name] {
			e.skip(targets)
			return
		}
	}
	dom.mail = mail
	if !e.cfg.NoCatchAllCheck {
		// First in the queue, so it is asked before (or with) the real
		// recipients and their acceptances wait little.
		e.mu.Lock()
		dom.probePending = true
		e.mu.Unlock()
		e.router.expect(1)
		targets = append([]*target{{addr: catchAllAddress(dom.name), dom: dom, catchAll: true}}, targets...)
	}
	e.router.add(targets)
}

// skip finishes addresses nothing may be asked of (do-not-probe).
func (e *engine) skip(targets []*target) {
	for _, t := range targets {
		e.emit(t, Verdict{Status: output.StatusUnknown, Reason: verdict.ReasonSkipped})
	}
}

// recordDomain feeds the NXDOMAIN breaker; true when it tripped, and the
// run stops.
func (e *engine) recordDomain(dom *domainState, exists bool) (tripped bool) {
	b := e.cfg.DomainBreaker
	if b == nil || !b.Record(dom.name, exists) {
		return false
	}
	st := b.State()
	e.fatal(&TrippedError{What: "domains", Failed: st.Failed, Seen: st.Keys})
	return true
}

// catchAllAddress makes a local part no real mailbox has.
func catchAllAddress(domain string) input.Address {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return input.Address{Local: "bv-" + string(b), Domain: domain}
}

func dnsVerdict(err error) (status, reason string) {
	switch {
	case errors.Is(err, resolve.ErrNXDomain):
		return output.StatusInvalid, ReasonNXDomain
	case errors.Is(err, resolve.ErrNullMX):
		return output.StatusInvalid, ReasonNullMX
	case errors.Is(err, resolve.ErrNoMailHost):
		return output.StatusInvalid, ReasonNoMailHost
	default:
		return output.StatusUnknown, ReasonDNSError
	}
}

// conclude is where every answer about a target arrives. A temporary answer
// may send the target back for a delayed retry; anything else is final.
func (e *engine) conclude(t *target, status, reason string, reply *probe.Reply, mxHost string) {
	if delay, ok := e.retryDelay(t, status, reason, reply); ok {
		t.retries++
		t.mxIdx, t.failed = 0, nil
		e.retryLater(delay, t)
		return
	}
	e.emit(t, Verdict{Status: status, Reason: reason, Reply: boundReply(reply), MXHost: mxHost, TLS: t.lastTLS, Egress: t.lastEgress})
}

// maxKeptReplyText bounds the reply text a verdict keeps: verdicts can wait
// in memory (for the catch-all answer, or the writer), and a hostile server
// may send up to MaxReplyLines lines of MaxLineLength bytes per reply. The
// output cuts the message shorter still.
const maxKeptReplyText = 1024

// boundReply returns the reply as a verdict keeps it: code, enhanced code,
// and the text on one line, cut to maxKeptReplyText bytes (at a rune
// boundary), in memory of its own.
func boundReply(r *probe.Reply) *probe.Reply {
	if r == nil {
		return nil
	}
	text := r.Text()
	if len(text) > maxKeptReplyText {
		cut := maxKeptReplyText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return &probe.Reply{Code: r.Code, Enhanced: r.Enhanced, Lines: []string{strings.Clone(text)}}
}

// retryLater puts t back in the queue after delay.
func (e *engine) retryLater(delay time.Duration, t *target) {
	e.later(delay, func() { e.router.add([]*target{t}) })
}

// later runs f after delay, unless the run is over by then.
func (e *engine) later(delay time.Duration, f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.timersWG.Add(1)
	var tm clockwork.Timer
	tm = e.cfg.Clock.AfterFunc(delay, func() {
		defer e.timersWG.Done()
		e.mu.Lock()
		delete(e.timers, tm) // tm is set: the callback cannot take e.mu before later lets go
		stopped := e.stopped
		e.mu.Unlock()
		if !stopped {
			f()
		}
	})
	e.timers[tm] = struct{}{}
}

// stopRetries cancels the retries not yet due and waits for those already
// running, which may still be sending a verdict: the output must outlive
// them.
func (e *engine) stopRetries() {
	e.mu.Lock()
	e.stopped = true
	for tm := range e.timers {
		if tm.Stop() {
			e.timersWG.Done() // it will never run
		}
	}
	e.timers = nil
	e.mu.Unlock()
	e.timersWG.Wait()
}

// retryDelay says whether a temporary answer is worth asking again later,
// and after how long: the delay doubles each round, and the total wait of
// one address stays within MaxWait.
func (e *engine) retryDelay(t *target, status, reason string, reply *probe.Reply) (time.Duration, bool) {
	if status != output.StatusUnknown || t.retries >= e.cfg.RetryRounds || e.cfg.RetryDelay <= 0 {
		return 0, false
	}
	temporary := false
	switch {
	case reply != nil:
		temporary = reply.Transient()
	default:
		switch reason {
		case ReasonConnectionFailed, ReasonConnectionLost, ReasonTimeout, ReasonDNSError, ReasonTemporary:
			temporary = true
		}
	}
	if !temporary {
		return 0, false
	}
	delay := e.cfg.RetryDelay << t.retries
	if t.firstTry.IsZero() {
		t.firstTry = e.cfg.Clock.Now()
	}
	if e.cfg.Clock.Since(t.firstTry)+delay > e.cfg.MaxWait {
		return 0, false
	}
	return delay, true
}

// hostGaveUp concludes a target none of whose MX hosts could be used.
func (e *engine) hostGaveUp(t *target, f *hostFailure) {
	e.conclude(t, f.status, f.reason, f.reply, f.host)
}

// emit finishes t: catch-all probes settle their domain, acceptances wait for
// that settlement, everything else goes out at once.
func (e *engine) emit(t *target, v Verdict) {
	v.Addr = t.addr
	v.Attempts = t.tries
	v.At = e.cfg.Now()
	dom := t.dom
	var release []Verdict
	e.mu.Lock()
	switch {
	case t.catchAll:
		dom.probePending = false
		// Only a server's answer to the made-up address settles the
		// question; a verdict from DNS or a failed connection does not.
		switch {
		case v.Reply == nil:
		case v.Status == output.StatusDeliverable:
			dom.catchAll, dom.checkHost = ptr(true), v.MXHost
		case v.Status == output.StatusUndeliverable:
			dom.catchAll, dom.checkHost = ptr(false), v.MXHost
		}
		release, dom.held = dom.held, nil
		delete(e.heldBy, dom)
	case dom.probePending && v.Status == output.StatusDeliverable:
		dom.held = append(dom.held, v)
		e.heldBy[dom] = struct{}{}
		e.mu.Unlock()
		e.router.done()
		return
	default:
		release = []Verdict{v}
	}
	catchAll, checkHost := dom.catchAll, dom.checkHost
	e.mu.Unlock()

	for _, r := range release {
		r.CatchAll = catchAll
		if checkHost != "" && r.MXHost != checkHost {
			// Answered by another MX host (a failover) than the one the
			// check ran on: its answer to the check is not known.
			r.CatchAll = nil
		}
		if r.CatchAll == nil && r.Reason == ReasonMailboxUnknown {
			// A domain that refuses a mailbox does not accept everything.
			r.CatchAll = ptr(false)
		}
		switch {
		case r.Status != output.StatusDeliverable:
		case r.CatchAll != nil && *r.CatchAll:
			r.Status, r.Reason = output.StatusRisky, ReasonAcceptAll
		case r.CatchAll == nil && checkHost != "":
			// Backup MX hosts commonly accept everything and sort it out
			// later; an acceptance that was not checked proves little.
			r.Status, r.Reason = output.StatusRisky, ReasonUncheckedMX
		}
		e.out <- e.finish(r)
	}
	e.router.done()
}

// finish adds to a verdict what is known of its address and host without
// asking anything more: the operator (provider) of the MX host, the
// signals, and what they say about an acceptance. An operator known to
// accept every recipient proves nothing by accepting (unless the domain's
// catch-all check showed it refuses some); a known typo domain is never
// deliverable, whatever its MX says.
func (e *engine) finish(v Verdict) Verdict {
	acceptsAll := false
	if v.MXHost != "" {
		if op := e.cfg.Operators.Lookup(v.MXHost); !op.Own() {
			v.Provider, acceptsAll = op.Name, op.AcceptsAll
		}
	}
	if e.cfg.Signals != nil {
		v.Signals = e.cfg.Signals.Of(v.Addr.Local, v.Addr.Domain, hasMailHost(v.Reason))
	}
	accepted := v.Status == output.StatusDeliverable ||
		(v.Status == output.StatusRisky && (v.Reason == ReasonAcceptAll || v.Reason == ReasonUncheckedMX))
	switch {
	case !accepted:
	case v.Signals.TypoKnown:
		// Named first: typosquatters' domains accept everything, and the
		// typo is what the user must hear about.
		v.Status, v.Reason = output.StatusRisky, verdict.ReasonTypoDomain
	case acceptsAll && v.CatchAll == nil && v.Status == output.StatusDeliverable:
		v.Status, v.Reason = output.StatusRisky, verdict.ReasonProviderAcceptsAll
	}
	e.router.countVerdict(v.MXHost, v.Status)
	return v
}

// hasMailHost reports whether a verdict's reason leaves the domain a mail
// host: the typo signal suggests a correction only for domains without one.
func hasMailHost(reason string) bool {
	switch reason {
	case ReasonNXDomain, ReasonNullMX, ReasonNoMailHost, ReasonMXUnresolvable:
		return false
	}
	return true
}

func ptr[T any](v T) *T { return &v }

// Probe verifies one address with the engine Run uses, catch-all check
// included, and returns its verdict; false when ctx ended before one was
// reached.
func Probe(ctx context.Context, cfg Config, res *resolve.Resolver, addr input.Address) (Verdict, bool) {
	cfg.setDefaults()
	out := make(chan Verdict, 1)
	go func() {
		defer close(out)
		probeEngine(ctx, cfg, res, []DomainGroup{{Domain: addr.Domain, Addresses: []input.Address{addr}}}, out)
	}()
	v, ok := <-out
	for range out { // nothing more is sent; wait for the engine to finish
	}
	return v, ok
}

// Run verifies every row of src and writes one result per row to sink. It
// returns when every row is written, or when ctx is cancelled or a fatal
// error happens; in both of those cases what was decided is still written.
func Run(ctx context.Context, cfg Config, res *resolve.Resolver, src *input.Reader, sink output.Writer) (Summary, error) {
	cfg.setDefaults()
	start := time.Now()
	sum := Summary{ByStatus: map[string]int{}, ByReason: map[string]int{}}

	// Reading is a barrier by nature: grouping by domain needs every row,
	// and a malformed file should fail before anything is probed.
	b, full, err := readAll(src, cfg.Skip, cfg.MemoryRows)
	if err != nil {
		return sum, err
	}
	if !full {
		sum.Rows, sum.Skipped = b.rows, b.skipped
		if cfg.OnTotal != nil {
			cfg.OnTotal(b.rows - b.skipped)
		}
		err = runBatch(ctx, cfg, res, b, sink, &sum)
		sum.Duration = time.Since(start)
		return sum, err
	}

	// Too big to group in memory: spill every row by domain into
	// partition files and verify them one at a time.
	sp, err := newSpiller(cfg.TempDir, cfg.MemoryRows, src.Column(), len(src.Header()))
	if err != nil {
		return sum, err
	}
	defer sp.close()
	sum.Rows, sum.Skipped = b.rows, b.skipped
	if err := spillBatch(sp, b); err != nil {
		return sum, err
	}
	b = batch{} // let it go before reading on
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("reading input: %w", err)
		}
		sum.Rows++
		if cfg.Skip != nil && cfg.Skip(rec.Row) {
			sum.Skipped++
			continue
		}
		if err := sp.add(rec.Row, rec.Fields); err != nil {
			return sum, err
		}
	}
	parts, err := sp.parts()
	if err != nil {
		return sum, err
	}
	if cfg.OnTotal != nil {
		cfg.OnTotal(sum.Rows - sum.Skipped)
	}
	for _, part := range parts {
		pb, _, err := readAll(part, nil, 0)
		if err != nil {
			return sum, err
		}
		if err := runBatch(ctx, cfg, res, pb, sink, &sum); err != nil {
			sum.Duration = time.Since(start)
			return sum, err
		}
	}
	sum.Duration = time.Since(start)
	return sum, nil
}

// runBatch verifies one batch of rows grouped in memory, adding to sum.
func runBatch(ctx context.Context, cfg Config, res *resolve.Resolver, b batch, sink output.Writer, sum *Summary) error {
	sum.Addresses += len(b.byKey)
	sum.Domains += len(b.groups)
	verdicts := make(chan Verdict, 256)
	g, gctx := errgroup.WithContext(ctx)
	// A write error stops the probing at once (the writer still drains,
	// so nothing blocks): there is no point asking what cannot be written.
	gctx, stopProbing := context.WithCancel(gctx)
	defer stopProbing()
	g.Go(func() error { return writeResults(cfg, b, verdicts, sink, sum, stopProbing) })
	var stats EngineStats
	g.Go(func() error {
		defer close(verdicts)
		stats = probeEngine(gctx, cfg, res, b.groups, verdicts)
		return nil
	})
	err := g.Wait()
	sum.Connections += stats.Connections
	sum.addHosts(stats.MXHosts)
	sum.addHostSummaries(stats.Hosts)
	if err == nil {
		err = stats.Err
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// writeResults is the only goroutine that touches sink. After a write error
// it keeps draining so that the engine never blocks, and reports the error.
func writeResults(cfg Config, b batch, verdicts <-chan Verdict, sink output.Writer, sum *Summary, stopProbing func()) error {
	var werr error
	write := func(ref rowRef, res output.Result) {
		if werr != nil {
			return
		}
		res.Row = ref.row
		if err := sink.Write(ref.fields, res); err != nil {
			werr = fmt.Errorf("writing results: %w", err)
			stopProbing()
			return
		}
		sum.ByStatus[res.Status]++
		sum.ByReason[res.Reason]++
		if cfg.OnResult != nil {
			cfg.OnResult(res)
		}
	}
	now := cfg.Now()
	for _, inv := range b.invalid {
		res := output.Result{Email: inv.raw, Status: output.StatusInvalid, Reason: inv.reason, CheckedAt: now}
		invalidSignals(cfg.Signals, inv.raw, &res)
		write(inv.ref, res)
	}
	ticker := time.NewTicker(cfg.FlushInterval)
	defer ticker.Stop()
	for {
		var v Verdict
		var ok bool
		select {
		case v, ok = <-verdicts:
		case <-ticker.C:
			if checkpoint(cfg, sink, &werr); werr != nil {
				stopProbing()
			}
			continue
		}
		if !ok {
			break
		}
		res := output.Result{
			Email:          v.Addr.String(),
			Status:         v.Status,
			Reason:         v.Reason,
			MXHost:         v.MXHost,
			CatchAll:       v.CatchAll,
			TLS:            v.TLS,
			Attempts:       v.Attempts,
			CheckedAt:      v.At,
			Provider:       v.Provider,
			Egress:         v.Egress,
			Disposable:     v.Signals.Disposable,
			Free:           v.Signals.Free,
			Role:           v.Signals.Role,
			TypoSuggestion: v.Signals.Suggestion,
		}
		if v.Reply != nil {
			res.SMTPCode = v.Reply.Code
			res.EnhancedCode = v.Reply.Enhanced
			res.SMTPMessage = v.Reply.Text()
		}
		if refs, ok := b.byKey[res.Email]; ok {
			refs.each(func(ref rowRef) { write(ref, res) })
		}
	}
	checkpoint(cfg, sink, &werr)
	return werr
}

// invalidSignals fills the signals that still apply to a row that holds no
// address we can probe: a disposable domain is disposable even if the
// address around it is broken.
func invalidSignals(set *signals.Set, raw string, res *output.Result) {
	if set == nil {
		return
	}
	at := strings.LastIndexByte(raw, '@')
	if at <= 0 || at == len(raw)-1 {
		return
	}
	local, domain := raw[:at], strings.ToLower(strings.TrimSpace(raw[at+1:]))
	f := set.Of(local, domain, true)
	res.Disposable, res.Free, res.Role = f.Disposable, f.Free, f.Role
}

// checkpoint pushes the rows written so far to the output and makes them
// durable, so that a crash loses at most one interval of work.
func checkpoint[T output.Row[T]](cfg Config, sink output.RowWriter[T], werr *error) {
	if *werr != nil {
		return
	}
	err := sink.Flush()
	if err == nil && cfg.Checkpoint != nil {
		err = cfg.Checkpoint()
	}
	if err != nil {
		*werr = fmt.Errorf("writing results: %w", err)
	}
}
