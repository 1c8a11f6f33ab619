package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/store"
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

	text   string  // Addr as text
	rows   rowRefs // the input rows it answers (verify); empty for find and Probe
	stored bool    // reused from the store, not probed in this run
}

// DomainGroup is the distinct, syntactically valid addresses of one domain.
type DomainGroup struct {
	Domain    string
	Addresses []input.Address

	// compact, when set, holds the addresses instead of Addresses, with
	// the input rows that asked for each (verify's grouper, deduped in
	// place: rows.go); the rows of duplicates are in dups, by address. A
	// target carries its rows, so that a decided address frees them. find
	// keeps its own map of rows, and sets Addresses.
	compact []groupedRow
	dups    map[string][]rowRef
	// split: the domain's addresses come in several groups (a domain too
	// big for one partition): they share one domainState, one MX lookup and
	// one catch-all check.
	split bool
	// known is what the caller already knows of the domain (a cluster
	// unit's MX hosts and accept-all answer); nil = nothing.
	known *UnitDomain
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
// One engine serves a whole run: its input may be fed in parts (feed), and
// its connections, host queues, learnt limits and domains' catch-all answers
// carry over from one part to the next.
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

	dnsSlots  chan struct{}  // domains being resolved at once (DNSWorkers)
	resolving sync.WaitGroup // domains fed and not yet routed or judged

	// mem counts the addresses (targets, with their rows) held in memory;
	// see gauge.
	mem *gauge
	// spill holds the host queues' overflow on disk (hostspill.go).
	spill *spillFile
	// sink writes to the store, know is what the store remembers about
	// domains and MX hosts; both nil without a store.
	sink *storeSink
	know *knowledge
	// replies caches the reading of replies (classify).
	replies replyCache

	// sharing counts the goroutines talking to Config.CatchAllShare
	// (catchallshare.go); end waits for them.
	sharing sync.WaitGroup

	mu       sync.Mutex                // guards domainState fields, heldBy, shared and the retry timers
	heldBy   map[*domainState]struct{} // domains with acceptances waiting for their catch-all answer
	shared   map[string]*domainState   // domains fed in several groups (DomainGroup.split), by name
	timers   map[clockwork.Timer]struct{}
	stopped  bool           // no more retries: the run is over
	timersWG sync.WaitGroup // retry callbacks running or due
}

// domainState is what the engine knows about one domain during a run.
type domainState struct {
	name string
	mail resolve.Mail // set once, under engine.mu, before any of its addresses is routed

	resolved   bool // mail is set (a domain fed in parts is looked up by its first part)
	checkAsked bool // its catch-all check is queued or done

	// Catch-all detection: one RCPT for a local part that cannot exist,
	// asked in the same transaction as the domain's real recipients.
	probePending bool
	catchAll     *bool
	checkHost    string    // the MX host that answered the check
	held         []Verdict // acceptances waiting for the catch-all answer
	// claimed: this engine holds the domain's claim of Config.CatchAllShare
	// and shares the answer of its check (or abandons the claim).
	claimed bool
	// known is what the caller knew of the domain before (DomainGroup.known).
	known *UnitDomain

	// refusesAll: an MX host refused the domain's doubtful addresses and
	// postmaster from the first RCPT of a connection (see giveUpDomain).
	refusesAll bool
}

// target is one distinct address on its way through the engine. A run
// holds one per address it has not decided yet, so it is kept small and
// with few pointers (the garbage collector scans each one): the address is
// its text, whose local part is text[:localLen] and domain dom.name.
type target struct {
	text         string // the address as sent in RCPT TO: local@domain
	dom          *domainState
	rows         rowRefs      // the input rows that asked for it; moved to its Verdict
	suspectReply *probe.Reply // the refusal that made it suspect
	failed       *hostFailure // why the MX hosts tried so far in this round could not be used
	lastTLS      *bool
	lastEgress   string
	firstTry     int64 // when its first temporary answer came (Config.Clock, Unix ns); 0 = none yet
	mxIdx        int32 // index into dom.mail.Hosts of the host it is routed to
	localLen     uint16
	tries        int16 // RCPT commands sent for it
	retries      int16 // delayed retry rounds used
	// suspect counts the refusals it got in transactions whose positive
	// control (postmaster@) was refused too: such a refusal says nothing
	// about the mailbox.
	suspect  int16
	utf8     bool // the local part needs SMTPUTF8
	catchAll bool // the synthetic catch-all probe, not a user's address
}

// newTarget makes the target of addr at dom; text is addr as text, or ""
// to make it.
func newTarget(t *target, a input.Address, text string, dom *domainState) {
	if text == "" {
		text = a.Local + "@" + dom.name
	}
	t.text, t.dom, t.localLen, t.utf8 = text, dom, uint16(len(a.Local)), a.NeedsSMTPUTF8
}

// addr is the target's address.
func (t *target) addr() input.Address {
	return input.Address{Local: t.text[:t.localLen], Domain: t.dom.name, NeedsSMTPUTF8: t.utf8}
}

// counted reports whether t is one of the user's addresses, which the
// memory gauge counts (catch-all checks and positive controls are not).
func (t *target) counted() bool { return !t.catchAll && t.rows.first.fields != nil }

// probeEngine runs the engine over groups and sends exactly one Verdict per
// address to out (which it does not close). It returns when every verdict is
// sent or ctx ends; undecided addresses then get no verdict.
func probeEngine(ctx context.Context, cfg Config, res *resolve.Resolver, groups []DomainGroup, out chan<- Verdict) EngineStats {
	cfg.setDefaults()
	e := newEngine(ctx, cfg, res, out)
	e.feed(groups)
	return e.end()
}

// newEngine makes the engine of one run; cfg has its defaults set. It
// starts nothing until fed. end must be called.
func newEngine(ctx context.Context, cfg Config, res *resolve.Resolver, out chan<- Verdict) *engine {
	ctx, stopRun := context.WithCancelCause(ctx)
	e := &engine{
		stopRun:  stopRun,
		cfg:      cfg,
		res:      res,
		slots:    make(chan struct{}, cfg.MaxConnections),
		out:      out,
		start:    cfg.Clock.Now(),
		workCtx:  ctx,
		timers:   map[clockwork.Timer]struct{}{},
		heldBy:   map[*domainState]struct{}{},
		shared:   map[string]*domainState{},
		dnsSlots: make(chan struct{}, cfg.DNSWorkers),
		mem:      newGauge(),
	}
	e.spill = newSpillFile(cfg.TempDir, cfg.MemoryRows)
	if cfg.Store != nil {
		e.sink = newStoreSink(&e.cfg)
		e.know = newKnowledge(&e.cfg, e.sink)
	}
	e.router = newRouter(&e.cfg, e.startWorker, e.hostGaveUp)
	e.router.spill = e.spill
	e.router.mem = e.mem
	e.router.fatal = e.fatal
	if e.know != nil {
		e.router.seedHost = e.know.seedHost
	}
	return e
}

// feed resolves the domains of groups and routes their addresses, with at
// most DNSWorkers lookups at once. It returns once every domain has been
// handed to a lookup (not when they are done), or when the run ends.
func (e *engine) feed(groups []DomainGroup) {
	total, counted := 0, 0
	for _, g := range groups {
		total += g.size()
		if g.compact != nil {
			counted += g.size()
		}
	}
	e.router.expect(total)
	// Counted now, not as each domain's lookup starts: the loader decides
	// from this whether there is room for more.
	e.mem.add(counted)
	for _, grp := range groups {
		select {
		case e.dnsSlots <- struct{}{}:
		case <-e.workCtx.Done():
			return // the rest stay undecided; end sees the run is over
		}
		e.resolving.Add(1)
		go func() {
			defer func() {
				<-e.dnsSlots
				e.resolving.Done()
			}()
			e.feedGroup(grp)
		}()
	}
}

// feedGroup turns a group into targets and resolves its domain.
func (e *engine) feedGroup(grp DomainGroup) {
	var dom *domainState
	if grp.split {
		e.mu.Lock()
		dom = e.shared[grp.Domain]
		if dom == nil {
			dom = &domainState{name: grp.Domain}
			e.shared[grp.Domain] = dom
		}
		e.mu.Unlock()
	} else {
		dom = &domainState{name: grp.Domain}
	}
	if grp.known != nil {
		e.mu.Lock()
		if dom.known == nil {
			dom.known = grp.known
		}
		e.mu.Unlock()
	}
	n := grp.size()
	targets := make([]*target, 0, n+1)
	// Targets are allocated in blocks, not one by one, but small ones: a
	// block stays in memory while any of its targets does.
	const blockSize = 64
	var block []target
	for i := range n {
		if len(block) == 0 {
			block = make([]target, min(blockSize, n-i))
		}
		t := &block[0]
		block = block[1:]
		a, text, rows := grp.at(i)
		newTarget(t, a, text, dom)
		t.rows = rows
		targets = append(targets, t)
	}
	e.resolveDomain(e.workCtx, dom, targets, 0)
}

func countTargets(ts []*target) int {
	n := 0
	for _, t := range ts {
		if t.counted() {
			n++
		}
	}
	return n
}

// end says nothing more will be fed, waits until every address fed is
// decided (or the run is stopped), then stops the engine.
func (e *engine) end() EngineStats {
	defer e.stopRun(nil)
	e.resolving.Wait()
	e.router.producerDone()
	select {
	case <-e.router.allDone:
	case <-e.workCtx.Done():
	}
	e.router.stop()
	e.stopRetries()
	e.workers.Wait()
	e.sharing.Wait()
	e.releaseHeld()
	e.spill.close()
	stats := EngineStats{Connections: int(e.connections.Load()), MXHosts: e.router.hostsUsed(), Hosts: e.router.summaries()}
	var tripped *TrippedError
	if err := context.Cause(e.workCtx); errors.As(err, &tripped) {
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

// resolveDomain looks the domain up and routes its addresses, or gives them
// their DNS verdict. A temporary DNS failure (SERVFAIL, timeouts) is asked
// again on the delayed-retry schedule before it becomes dns_error.
func (e *engine) resolveDomain(ctx context.Context, dom *domainState, targets []*target, round int) {
	if e.cfg.DoNotProbe.domain(dom.name) {
		e.skip(targets)
		return
	}
	mail, err := e.lookupMail(ctx, dom)
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
				n := countTargets(targets)
				e.mem.park(n)
				e.later(delay, func() {
					e.mem.park(-n)
					e.resolveDomain(e.workCtx, dom, targets, round+1)
				})
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
	var stored *store.DomainInfo
	if e.know != nil {
		e.know.loadHosts(ctx, mail.Hosts)
		if !e.cfg.NoCatchAllCheck && !e.cfg.Refresh {
			stored = e.know.catchAll(ctx, dom.name)
		}
	}
	e.mu.Lock()
	if !dom.resolved {
		// A domain fed in parts keeps the answer its first part got.
		dom.mail, dom.resolved = mail, true
	}
	ask, share := false, false
	if !e.cfg.NoCatchAllCheck && !dom.checkAsked {
		dom.checkAsked = true
		switch {
		case stored != nil:
			// Answered in an earlier run, recently enough: not asked again.
			dom.catchAll, dom.checkHost = stored.CatchAll.Bool(), stored.CatchAllMX
		case dom.known != nil && dom.known.CatchAll != nil:
			// Answered elsewhere (the cluster's coordinator knew it).
			dom.catchAll = dom.known.CatchAll
		case e.cfg.CatchAllShare != nil:
			dom.probePending = true
			share = true
		default:
			dom.probePending = true
			ask = true
		}
	}
	e.mu.Unlock()
	if share {
		ask = e.claimCatchAll(ctx, dom)
	}
	if ask {
		// First in the queue, so it is asked before (or with) the real
		// recipients and their acceptances wait little.
		targets = append([]*target{e.catchAllTarget(dom)}, targets...)
	}
	e.router.add(targets)
}

// catchAllTarget makes the domain's catch-all check, counted as one more
// target of the run.
func (e *engine) catchAllTarget(dom *domainState) *target {
	e.router.expect(1)
	ca := &target{catchAll: true}
	newTarget(ca, catchAllAddress(dom.name), "", dom)
	return ca
}

// lookupMail is the domain's mail exchangers: as the caller gave them, or
// looked up.
func (e *engine) lookupMail(ctx context.Context, dom *domainState) (resolve.Mail, error) {
	e.mu.Lock()
	known := dom.known
	e.mu.Unlock()
	if known != nil && known.Mail != nil && len(known.Mail.Hosts) > 0 {
		return *known.Mail, nil
	}
	return e.res.LookupMail(ctx, dom.name)
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
// boundary), in memory of its own (a reply of one short line keeps the
// string the reader made of that line, which holds nothing more).
func boundReply(r *probe.Reply) *probe.Reply {
	if r == nil {
		return nil
	}
	k := new(keptReply) // the reply and its one line in one allocation
	k.r = probe.Reply{Code: r.Code, Enhanced: r.Enhanced, Lines: k.line[:]}
	if len(r.Lines) == 1 && len(r.Lines[0]) <= maxKeptReplyText {
		// A line the reader made a string of its own: keeping it keeps
		// nothing more.
		k.line[0] = r.Lines[0]
		return &k.r
	}
	text := r.Text()
	if len(text) > maxKeptReplyText {
		cut := maxKeptReplyText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	k.line[0] = strings.Clone(text)
	return &k.r
}

type keptReply struct {
	r    probe.Reply
	line [1]string
}

// retryLater puts t back in the queue after delay.
func (e *engine) retryLater(delay time.Duration, t *target) {
	n := countTargets([]*target{t})
	e.mem.park(n)
	e.later(delay, func() {
		e.mem.park(-n)
		e.router.add([]*target{t})
	})
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
	if status != output.StatusUnknown || int(t.retries) >= e.cfg.RetryRounds || e.cfg.RetryDelay <= 0 {
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
	if t.firstTry == 0 {
		t.firstTry = e.cfg.Clock.Now().UnixNano()
	}
	if e.cfg.Clock.Since(time.Unix(0, t.firstTry))+delay > e.cfg.MaxWait {
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
	v.Addr, v.text = t.addr(), t.text
	v.Attempts = int(t.tries)
	v.At = e.cfg.Now()
	v.rows, t.rows = t.rows, rowRefs{} // the verdict carries the rows to the writer
	dom := t.dom
	var release []Verdict
	settled, claimed := false, false
	e.mu.Lock()
	switch {
	case t.catchAll:
		claimed, dom.claimed = dom.claimed, false
		dom.probePending = false
		// Only a server's answer to the made-up address settles the
		// question; a verdict from DNS or a failed connection does not.
		switch {
		case v.Reply == nil:
		case v.Status == output.StatusDeliverable:
			dom.catchAll, dom.checkHost, settled = ptr(true), v.MXHost, true
		case v.Status == output.StatusUndeliverable:
			dom.catchAll, dom.checkHost, settled = ptr(false), v.MXHost, true
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
	if settled && e.know != nil {
		e.know.putCatchAll(dom.name, *catchAll, checkHost, v.At)
	}
	if claimed {
		e.shareAnswer(dom.name, catchAll, settled)
	}
	e.release(release, catchAll, checkHost)
	e.router.done()
}

// release sends verdicts whose domain's catch-all question is settled (or
// will not be) on, judged by its answer: an acceptance by a domain that
// accepts everything proves nothing.
func (e *engine) release(release []Verdict, catchAll *bool, checkHost string) {
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
}

// finish adds to a verdict what is known of its address and host without
// asking anything more: the operator (provider) of the MX host, the
// signals, and what they say about an acceptance. An operator known to
// accept every recipient proves nothing by accepting (unless the domain's
// catch-all check showed it refuses some); a known typo domain is never
// deliverable, whatever its MX says.
func (e *engine) finish(v Verdict) Verdict {
	acceptsAll := false
	var h *hostQueue
	if v.MXHost != "" {
		h = e.router.host(v.MXHost)
		op := (*operator.Operator)(nil)
		if h != nil {
			op = h.op
		} else {
			op = e.cfg.Operators.Lookup(v.MXHost)
		}
		if !op.Own() {
			v.Provider, acceptsAll = op.Name, op.AcceptsAll
		}
	}
	if e.cfg.Signals != nil {
		v.Signals = e.cfg.Signals.Of(v.Addr.Local, v.Addr.Domain, hasMailHost(v.Reason))
	}
	switch {
	case !accepted(v.Status, v.Reason):
	case v.Signals.TypoKnown:
		// Named first: typosquatters' domains accept everything, and the
		// typo is what the user must hear about.
		v.Status, v.Reason = output.StatusRisky, verdict.ReasonTypoDomain
	case acceptsAll && v.CatchAll == nil && v.Status == output.StatusDeliverable:
		v.Status, v.Reason = output.StatusRisky, verdict.ReasonProviderAcceptsAll
	}
	if h != nil {
		h.countVerdict(v.Status)
	}
	return v
}

// accepted reports whether a verdict is an acceptance by the server, which
// what is known of the domain may still make doubtful.
func accepted(status, reason string) bool {
	return status == output.StatusDeliverable ||
		(status == output.StatusRisky && (reason == ReasonAcceptAll || reason == ReasonUncheckedMX))
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
