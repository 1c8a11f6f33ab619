package pipeline

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/store"
	"github.com/bulkverify/bulkverify/verdict"
)

// A distributed run (Distribute) is verify with the probing done elsewhere:
// by a cluster's workers, each with the engine of a UnitProber. This side
// reads the input as Run does (invalid rows written at once, the input
// partitioned on disk past Config.MemoryRows), decides what needs no mail
// server (a syntax error, a fresh cached verdict, what DNS says, a
// do-not-probe listing), exactly as the engine would, and cuts the rest
// into units: the addresses of domains whose primary MX host is the same,
// at most Distribution.UnitSize each, so that a big host's addresses are
// several units. Units go out through a Distributor while its results come
// back, each written for the rows that asked for its address.
//
// Memory stays bounded: the rows of each distinct address are kept in an
// append-only file of their own, and a unit's address carries only the
// offset of its record there (its key). Keys and units come out the same
// from the same input and options whatever the cluster holds, so that a run
// started again (--resume) finds its units and results where the first
// left them:
//
//   - every row is read, also those an earlier run wrote (Config.Skip
//     says which; they are not written again), so the rows file, and with
//     it every key, is the same;
//   - units are cut per partition, in input order, named by partition and
//     number, and flushed at the end of each partition;
//   - cached verdicts are read as the cache stood when the job began
//     (the VerdictCache's business).
//
// What DNS says may still differ between two starts: a row that, because
// of that, ends up in no unit of the cluster is found when every unit is
// done, and its address goes out again in a repair round (a job of its
// own), up to Distribution.MaxRounds rounds.

// Distributor is the far side of a distributed run: it hands units to the
// workers and gives their verdicts back (cmd/bulkverify adapts the cluster
// package's Coordinator to it). round 0 is the run's units; rounds 1... are
// repair rounds (see above), each a job of its own.
type Distributor interface {
	// Submit hands the round's units to the workers, each unit once across
	// restarts (by ID), and returns once units is exhausted and all are out.
	Submit(ctx context.Context, round int, units iter.Seq[WorkUnit]) error
	// Collect calls fn, from one goroutine, with the verdict of every
	// address of the round's units (by key), each once, and returns nil
	// once all are in. It calls checkpoint before it lets the cluster
	// forget verdicts fn was given: what fn wrote must be durable by then.
	Collect(ctx context.Context, round int, checkpoint func() error, fn func(key uint64, v Verdict) error) error
}

// WorkUnit is one unit of a distributed run.
type WorkUnit struct {
	ID        string
	Host      string // the primary MX host of its domains, which the unit is cut by
	Operator  string // the operator table's name for Host; "" = none
	Domains   []resolve.Mail
	Addresses []WorkAddress
}

// WorkAddress is an address of a unit and its key: what its verdict comes
// back with.
type WorkAddress struct {
	Key  uint64
	Addr input.Address
}

// VerdictCache is the verdict store of a distributed run, shared by the
// machines of a cluster (the cluster package's VerdictCache, adapted).
type VerdictCache interface {
	// Lookup returns the verdicts that may be reused of addresses, by
	// address (local@domain as normalised).
	Lookup(ctx context.Context, addresses []string) (map[string]store.Verdict, error)
	// Remember stores verdicts of this run.
	Remember(ctx context.Context, verdicts []store.Verdict) error
}

// Distribution is what a distributed run needs besides Config.
type Distribution struct {
	Remote Distributor
	// Cache, when set, answers addresses with a fresh verdict without
	// sending them out (source "stored"), and remembers the run's verdicts.
	Cache VerdictCache
	// UnitSize is how many addresses a unit holds at most; 0 = 2000.
	UnitSize int
	// Begin, when set, is called once the whole input is read, before
	// anything is looked up or cut (the Distributor may name its job by the
	// input's content now). resumed tells that the cluster holds an earlier
	// start of this run: then every address goes into the units, also those
	// whose rows an earlier start wrote (the units must come out as that
	// start cut them); otherwise those are left out.
	Begin func(ctx context.Context) (resumed bool, err error)
	// MaxRounds bounds the repair rounds (see above); 0 = 3.
	MaxRounds int
}

// ErrRowsLeft is returned when rows still have no verdict after every
// round: the output lacks them, and the same command with --resume asks
// for them again.
var ErrRowsLeft = errors.New("pipeline: rows left without a verdict")

// Distribute verifies every row of src through d.Remote and writes one
// result per row to sink, as Run does. It returns when every row is
// written, or when ctx ends or a fatal error happens; what was decided is
// written in every case.
func Distribute(ctx context.Context, cfg Config, d Distribution, res *resolve.Resolver, src *input.Reader, sink output.Writer) (Summary, error) {
	cfg.setDefaults()
	if d.UnitSize <= 0 {
		d.UnitSize = 2000
	}
	if d.MaxRounds <= 0 {
		d.MaxRounds = 3
	}
	start := time.Now()
	sum := Summary{ByStatus: map[string]int{}, ByReason: map[string]int{}, Memory: MemoryStats{Limit: cfg.MemoryRows}}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	rf, err := newRowsFile(cfg.TempDir)
	if err != nil {
		return sum, err
	}
	defer rf.close()
	r := &distRun{
		cfg: &cfg, d: d, res: res, sum: &sum, rows: rf, stop: stop,
		l:       &loader{cfg: &cfg, huge: map[string]bool{}, counted: map[string]bool{}, providers: map[string]string{}},
		w:       &distWriter{cfg: &cfg, sink: sink, sum: &sum, cache: d.Cache, mx: map[string]bool{}},
		domains: map[string]bool{},
	}
	r.w.stop = stop
	err = r.run(ctx, src)
	if ferr := r.w.flush(context.WithoutCancel(ctx)); err == nil {
		err = ferr
	}
	sum.MXHosts = len(r.w.mx)
	sum.Distributed = true
	sum.Duration = time.Since(start)
	if r.w.cacheErr != nil {
		sum.StoreError = r.w.cacheErr.Error()
	}
	if cause := context.Cause(ctx); err == nil || errors.Is(err, context.Canceled) {
		var tripped *TrippedError
		if errors.As(cause, &tripped) {
			err = cause
		}
	}
	return sum, err
}

// distRun is one distributed run.
type distRun struct {
	cfg  *Config
	d    Distribution
	res  *resolve.Resolver
	sum  *Summary
	rows *rowsFile
	l    *loader // its partitioning, grouping and providers
	w    *distWriter
	stop context.CancelCauseFunc

	domains map[string]bool // split domains already counted in Summary.Domains
	resumed bool            // see Distribution.Begin
}

// distAddr is a distinct address on its way to a verdict: its key (the
// offset of its record in the rows file) and its rows.
type distAddr struct {
	key  uint64
	addr input.Address
	text string
	rows rowRefs
}

// distGroup is the distinct addresses of one domain.
type distGroup struct {
	domain string
	addrs  []distAddr
}

func (r *distRun) run(ctx context.Context, src *input.Reader) error {
	g, queue, err := r.read(src)
	if err != nil {
		return err
	}
	defer func() {
		for _, pt := range queue {
			pt.f.Close()
		}
	}()
	if r.cfg.OnTotal != nil {
		r.cfg.OnTotal(r.sum.Rows - r.sum.Skipped)
	}
	r.w.left = r.sum.Rows - r.sum.Skipped
	if r.w.left == 0 {
		return nil // an earlier run wrote every row
	}
	if r.d.Begin != nil {
		var err error
		if r.resumed, err = r.d.Begin(ctx); err != nil {
			return err
		}
	}

	stopTicker := r.w.tick(ctx)
	defer stopTicker()
	err = r.round(ctx, 0, func(ctx context.Context, emit func(WorkUnit) error) error {
		if queue == nil {
			r.sum.Memory.Partitions = 1
			return r.part(ctx, "p0", g, emit)
		}
		for n := 0; len(queue) > 0; n++ {
			pt := queue[0]
			queue = queue[1:]
			if pt.rows > r.l.perPart() && pt.depth < maxRepartition {
				subs, err := r.l.repartition(pt, src.Column())
				pt.f.Close()
				if err != nil {
					return err
				}
				queue = append(subs, queue...)
				n--
				continue
			}
			pg, err := r.l.load(pt, src.Column())
			pt.f.Close()
			if err != nil {
				return err
			}
			r.sum.Memory.Partitions++
			if err := r.part(ctx, fmt.Sprintf("p%d", n), pg, emit); err != nil {
				return err
			}
		}
		return nil
	})
	for round := 1; err == nil && r.w.remaining() > 0; round++ {
		if round > r.d.MaxRounds {
			return fmt.Errorf("%w: %d rows after %d repair rounds; run the same command with --resume", ErrRowsLeft, r.w.remaining(), r.d.MaxRounds)
		}
		err = r.round(ctx, round, func(ctx context.Context, emit func(WorkUnit) error) error {
			return r.repair(ctx, round, emit)
		})
	}
	return err
}

// read reads the whole input, grouped in memory when it fits in MemoryRows,
// else partitioned on disk (queue), as the loader does. Every row is read,
// also those Config.Skip leaves out (see above).
func (r *distRun) read(src *input.Reader) (*grouper, []*partition, error) {
	g := newGrouper(nil)
	var parts *partitioner
	batches := make(chan rowBatch, 4)
	stop := make(chan struct{})
	defer close(stop)
	go readRows(src, nil, batches, nil, stop)
	for b := range batches {
		r.sum.Rows += b.read
		if b.err != nil {
			if parts != nil {
				parts.close()
			}
			return nil, nil, fmt.Errorf("reading input: %w", b.err)
		}
		for _, p := range b.rows {
			if r.w.skipped(p.ref.row) {
				r.sum.Skipped++
			}
			if parts != nil {
				if err := parts.add(p); err != nil {
					parts.close()
					return nil, nil, err
				}
				continue
			}
			g.add(p)
			if r.cfg.MemoryRows > 0 && g.rows > r.cfg.MemoryRows {
				var err error
				if parts, err = r.l.spill(g, src.Column()); err != nil {
					return nil, nil, err
				}
				g = nil
			}
		}
	}
	if parts == nil {
		return g, nil, nil
	}
	queue, err := parts.finish()
	if err != nil {
		parts.close()
		return nil, nil, err
	}
	if queue == nil {
		queue = []*partition{}
	}
	return nil, queue, nil
}

// round runs one round: produce cuts units and emits them while they are
// submitted and their verdicts collected.
func (r *distRun) round(ctx context.Context, round int, produce func(context.Context, func(WorkUnit) error) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	units := make(chan WorkUnit, 8)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	fail := func(i int, err error) {
		errs[i] = err
		if err != nil {
			cancel(err)
		}
	}
	wg.Go(func() {
		defer close(units)
		fail(0, produce(ctx, func(u WorkUnit) error {
			select {
			case units <- u:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}))
	})
	wg.Go(func() {
		seq := func(yield func(WorkUnit) bool) {
			for u := range units {
				if !yield(u) {
					return
				}
			}
		}
		err := r.d.Remote.Submit(ctx, round, seq)
		fail(1, err)
		for range units { // a Submit that stopped early: let the producer see ctx end
		}
	})
	wg.Go(func() {
		fail(2, r.d.Remote.Collect(ctx, round, r.w.checkpoint, func(key uint64, v Verdict) error {
			return r.result(key, v)
		}))
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return errors.Join(errs...)
}

// part decides the rows of one part of the input (all of it when it fits in
// memory): rows without an address are written, every distinct address is
// given its record in the rows file, and the addresses go on to decide.
func (r *distRun) part(ctx context.Context, name string, g *grouper, emit func(WorkUnit) error) error {
	for _, inv := range g.invalid {
		res := output.Result{Row: inv.ref.row, Email: inv.raw, Status: output.StatusInvalid, Reason: inv.reason,
			CheckedAt: r.cfg.Now(), Source: output.SourceProbed}
		invalidSignals(r.cfg.Signals, inv.raw, &res)
		if err := r.w.write(rowRefs{first: inv.ref}, res); err != nil {
			return err
		}
	}
	groups := make([]distGroup, 0, len(g.groups))
	for gi := range g.groups {
		g.dedupe(gi)
		grp := &g.groups[gi]
		n := grp.size()
		dg := distGroup{domain: grp.Domain, addrs: make([]distAddr, 0, n)}
		counted := false
		for i := range n {
			a, text, rows := grp.at(i)
			key, err := r.rows.add(text, a, rows)
			if err != nil {
				return err
			}
			dg.addrs = append(dg.addrs, distAddr{key: key, addr: a, text: text, rows: rows})
			if !r.w.allSkipped(rows) {
				r.sum.Addresses++
				counted = true
			}
		}
		if counted && !r.domains[grp.Domain] {
			if grp.split {
				r.domains[grp.Domain] = true
			}
			r.sum.Domains++
		}
		groups = append(groups, dg)
		g.groups[gi] = DomainGroup{}
	}
	if err := r.rows.flush(); err != nil {
		return err
	}
	return r.decide(ctx, name, groups, true, emit)
}

// cutChunks are how many domains are looked up and cut into units at a
// time: the first units go out after the first chunk's lookups, not the
// whole partition's, and probing overlaps the lookups of the rest. The
// first chunks are small, so that the workers start soon; the last size
// repeats. A host's addresses in one chunk make its units there. These are
// constants, not settings, so that the cut stays the same on every start.
var cutChunks = [...]int{32, 64, 128}

// decide answers what it can without a mail server and cuts the rest into
// units, a chunk of domains at a time (named nameC0-1, nameC0-2, ...).
//
// The lookups (the cache, DNS) run ahead of the cutting, chunk after chunk
// in input order, DNSWorkers domains at once across chunks: the lookups of
// the next chunks go on while a chunk waits for its slowest domain, is cut
// and its units go out. A chunk waiting for its slowest lookup before the
// next one's began held the units of every later chunk back, and the
// workers' sessions to big hosts ran dry meanwhile. What a chunk holds does
// not depend on when its lookups end, so the cut stays the same.
func (r *distRun) decide(ctx context.Context, name string, groups []distGroup, useCache bool, emit func(WorkUnit) error) error {
	var chunks []*chunkLookups
	for c := 0; len(groups) > 0; c++ {
		n := min(cutChunks[min(c, len(cutChunks)-1)], len(groups))
		chunks = append(chunks, &chunkLookups{groups: groups[:n], decided: make([][]bool, n), done: make(chan struct{})})
		groups = groups[n:]
	}
	ctx, cancel := context.WithCancelCause(ctx)
	sem := make(chan struct{}, r.cfg.DNSWorkers)
	go func() {
		for _, ch := range chunks {
			r.lookupChunk(ctx, ch, useCache, sem)
		}
	}()
	// Every lookup is over before decide returns: their rows are written
	// by then, never after the run has ended.
	defer func() {
		cancel(nil)
		for _, ch := range chunks {
			<-ch.done
		}
	}()
	for c, ch := range chunks {
		select {
		case <-ch.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if ch.err != nil {
			return ch.err
		}
		if err := r.cutChunk(fmt.Sprintf("%sc%d", name, c), ch, emit); err != nil {
			return err
		}
	}
	return nil
}

// chunkLookups is one chunk's domains and what the cache and DNS said of
// them, ready once done is closed.
type chunkLookups struct {
	groups  []distGroup
	decided [][]bool        // by group and address: answered by the cache
	mails   []*resolve.Mail // by group: its mail exchangers; nil = decided without a mail server
	err     error
	done    chan struct{}
}

// lookupChunk answers what it can of a chunk without a mail server (the
// cache, DNS, do-not-probe). It returns once every lookup of the chunk has
// begun, so that the next chunk's begin as slots of sem free up; ch.done is
// closed once they are all over.
func (r *distRun) lookupChunk(ctx context.Context, ch *chunkLookups, useCache bool, sem chan struct{}) {
	if err := context.Cause(ctx); err != nil {
		ch.err = err
		close(ch.done)
		return
	}
	if useCache && r.d.Cache != nil && !r.cfg.Refresh && !r.w.cacheFailed() {
		if err := r.cached(ctx, ch.groups, ch.decided); err != nil {
			ch.err = err
			close(ch.done)
			return
		}
	}
	wait := r.resolveAll(ctx, ch.groups, ch.decided, sem)
	go func() {
		defer close(ch.done)
		ch.mails, ch.err = wait()
	}()
}

// cutChunk cuts the addresses of a chunk left to a mail server into units
// named name-1, name-2, ...
func (r *distRun) cutChunk(name string, ch *chunkLookups, emit func(WorkUnit) error) error {
	groups, decided, mails := ch.groups, ch.decided, ch.mails
	type bucket struct {
		unit    WorkUnit
		domains map[string]bool
	}
	var order []*bucket
	byHost := map[string]*bucket{}
	n := 0
	flush := func(b *bucket) error {
		if len(b.unit.Addresses) == 0 {
			return nil
		}
		n++
		b.unit.ID = fmt.Sprintf("%s-%d", name, n)
		u := b.unit
		b.unit = WorkUnit{Host: u.Host, Operator: u.Operator}
		b.domains = map[string]bool{}
		return emit(u)
	}
	for gi, grp := range groups {
		mail := mails[gi]
		if mail == nil {
			continue // decided by DNS or do-not-probe
		}
		host := mail.Hosts[0].Host
		b := byHost[host]
		if b == nil {
			op := r.cfg.Operators.Lookup(host)
			b = &bucket{unit: WorkUnit{Host: host}, domains: map[string]bool{}}
			if !op.Own() {
				b.unit.Operator = op.Name
			}
			byHost[host] = b
			order = append(order, b)
		}
		for ai, a := range grp.addrs {
			if decided[gi] != nil && decided[gi][ai] {
				continue
			}
			if !r.resumed && r.w.allSkipped(a.rows) {
				continue // written by an earlier start that left nothing in the cluster
			}
			if !b.domains[grp.domain] {
				b.domains[grp.domain] = true
				b.unit.Domains = append(b.unit.Domains, *mail)
			}
			b.unit.Addresses = append(b.unit.Addresses, WorkAddress{Key: a.key, Addr: a.addr})
			if len(b.unit.Addresses) >= r.d.UnitSize {
				if err := flush(b); err != nil {
					return err
				}
			}
		}
	}
	for _, b := range order {
		if err := flush(b); err != nil {
			return err
		}
	}
	return nil
}

// cacheBatch is how many addresses are looked up in the cache at once.
const cacheBatch = 4096

// cached writes the rows of addresses the cache holds a fresh verdict of,
// marking them decided.
func (r *distRun) cached(ctx context.Context, groups []distGroup, decided [][]bool) error {
	type ref struct{ gi, ai int }
	var refs []ref
	var texts []string
	lookup := func() error {
		if len(texts) == 0 {
			return nil
		}
		got, err := r.d.Cache.Lookup(ctx, texts)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			r.w.cacheFailure(err) // the rest is probed
			return nil
		}
		for i, text := range texts {
			v, ok := got[text]
			if !ok {
				continue
			}
			rf := refs[i]
			a := groups[rf.gi].addrs[rf.ai]
			if decided[rf.gi] == nil {
				decided[rf.gi] = make([]bool, len(groups[rf.gi].addrs))
			}
			decided[rf.gi][rf.ai] = true
			if err := r.w.write(a.rows, r.storedResult(v, a)); err != nil {
				return err
			}
		}
		refs, texts = refs[:0], texts[:0]
		return nil
	}
	for gi, grp := range groups {
		for ai, a := range grp.addrs {
			refs = append(refs, ref{gi, ai})
			texts = append(texts, a.text)
			if len(texts) >= cacheBatch {
				if err := lookup(); err != nil {
					return err
				}
			}
		}
	}
	return lookup()
}

// storedResult is the row of a cached verdict, as the run that probed it
// wrote it, with source "stored" (as the loader's sendStored).
func (r *distRun) storedResult(v store.Verdict, a distAddr) output.Result {
	res := output.Result{
		Email: a.text, Status: v.Status, Reason: v.Reason, SMTPCode: v.SMTPCode, EnhancedCode: v.EnhancedCode,
		SMTPMessage: v.Message, MXHost: v.MXHost, CatchAll: v.CatchAll.Bool(), TLS: v.TLS.Bool(),
		Attempts: v.Attempts, CheckedAt: v.CheckedAt, Provider: r.l.provider(v.MXHost), Egress: v.Egress,
		Source: output.SourceStored,
	}
	if r.cfg.Signals != nil {
		f := r.cfg.Signals.Of(a.addr.Local, a.addr.Domain, hasMailHost(v.Reason))
		res.Disposable, res.Free, res.Role, res.TypoSuggestion = f.Disposable, f.Free, f.Role, f.Suggestion
	}
	return res
}

// resolveAll looks up the domains of groups with addresses left to decide,
// as many at once as sem has room for, and writes the rows DNS or the
// do-not-probe list decide. It returns once every lookup has begun; wait
// returns once they are over, with the others' mail exchangers by group
// (nil = decided).
func (r *distRun) resolveAll(ctx context.Context, groups []distGroup, decided [][]bool, sem chan struct{}) (wait func() ([]*resolve.Mail, error)) {
	mails := make([]*resolve.Mail, len(groups))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	wait = func() ([]*resolve.Mail, error) {
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		return mails, firstErr
	}
	for gi := range groups {
		left := 0
		for ai := range groups[gi].addrs {
			if decided[gi] == nil || !decided[gi][ai] {
				left++
			}
		}
		if left == 0 {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return wait
		}
		wg.Go(func() {
			defer func() { <-sem }()
			mail, status, reason := r.resolveDomain(ctx, groups[gi].domain)
			if ctx.Err() != nil {
				return
			}
			if status == "" {
				mails[gi] = &mail
				return
			}
			for ai, a := range groups[gi].addrs {
				if decided[gi] != nil && decided[gi][ai] {
					continue
				}
				if err := r.localVerdict(a, status, reason); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	return wait
}

func cmpErr(have, next error) error {
	if have != nil {
		return have
	}
	return next
}

// resolveDomain is what the engine's resolveDomain decides of a domain
// before any mail server is asked: its mail exchangers, or the status and
// reason of all its addresses (do-not-probe, a DNS verdict after the
// delayed retries of a temporary failure).
func (r *distRun) resolveDomain(ctx context.Context, domain string) (resolve.Mail, string, string) {
	if r.cfg.DoNotProbe.domain(domain) {
		return resolve.Mail{}, output.StatusUnknown, verdict.ReasonSkipped
	}
	start := r.cfg.Clock.Now()
	for round := 0; ; round++ {
		mail, err := r.res.LookupMail(ctx, domain)
		if err == nil {
			if r.recordDomain(domain, true) {
				return mail, "", ""
			}
			for _, mx := range mail.Hosts {
				if r.cfg.DoNotProbe.Operators[r.cfg.Operators.Lookup(mx.Host).Name] {
					return mail, output.StatusUnknown, verdict.ReasonSkipped
				}
			}
			return mail, "", ""
		}
		if ctx.Err() != nil {
			return mail, "", ""
		}
		status, reason := dnsVerdict(err)
		if reason != ReasonDNSError {
			r.recordDomain(domain, reason != ReasonNXDomain)
			return mail, status, reason
		}
		if round >= r.cfg.RetryRounds || r.cfg.RetryDelay <= 0 {
			return mail, status, reason
		}
		delay := r.cfg.RetryDelay << round
		if r.cfg.Clock.Since(start)+delay > r.cfg.MaxWait {
			return mail, status, reason
		}
		select {
		case <-r.cfg.Clock.After(delay):
		case <-ctx.Done():
			return mail, "", ""
		}
	}
}

// recordDomain feeds the NXDOMAIN breaker, and stops the run when it trips
// (true).
func (r *distRun) recordDomain(domain string, exists bool) bool {
	b := r.cfg.DomainBreaker
	if b == nil || !b.Record(domain, exists) {
		return false
	}
	st := b.State()
	r.stop(&TrippedError{What: "domains", Failed: st.Failed, Seen: st.Keys})
	return true
}

// localVerdict writes a verdict reached without a mail server.
func (r *distRun) localVerdict(a distAddr, status, reason string) error {
	v := Verdict{Addr: a.addr, Status: status, Reason: reason, At: r.cfg.Now()}
	r.signals(&v)
	if err := r.w.write(a.rows, verdictResult(&v, a.text)); err != nil {
		return err
	}
	if reason != verdict.ReasonSkipped {
		r.w.remember(v, a.text)
	}
	return nil
}

// signals adds the facts about the address that need no network, and what
// they say about an acceptance, as the engine's finish does.
func (r *distRun) signals(v *Verdict) {
	if r.cfg.Signals == nil {
		return
	}
	v.Signals = r.cfg.Signals.Of(v.Addr.Local, v.Addr.Domain, hasMailHost(v.Reason))
	if v.Signals.TypoKnown && accepted(v.Status, v.Reason) {
		v.Status, v.Reason = output.StatusRisky, verdict.ReasonTypoDomain
	}
}

// result writes a verdict that came back from the cluster for the rows of
// its key.
func (r *distRun) result(key uint64, v Verdict) error {
	rec, err := r.rows.read(key)
	if err != nil {
		return err
	}
	v.Addr = rec.addr
	r.signals(&v)
	if err := r.w.write(rec.rows, verdictResult(&v, rec.text)); err != nil {
		return err
	}
	if v.Reason != verdict.ReasonSkipped && v.Reason != verdict.ReasonWorkerFailed {
		r.w.remember(v, rec.text)
	}
	return nil
}

// repair cuts the addresses of rows still without a verdict into the
// units of a repair round, a MemoryRows/4 records at a time.
func (r *distRun) repair(ctx context.Context, round int, emit func(WorkUnit) error) error {
	var groups []distGroup
	idx := map[string]int{}
	n, chunk := 0, 0
	send := func() error {
		if len(groups) == 0 {
			return nil
		}
		chunk++
		err := r.decide(ctx, fmt.Sprintf("r%dc%d", round, chunk), groups, false, emit)
		groups, n = nil, 0
		clear(idx)
		return err
	}
	for rec, err := range r.rows.all() {
		if err != nil {
			return err
		}
		if !r.w.anyLeft(rec.rows) {
			continue
		}
		gi, ok := idx[rec.addr.Domain]
		if !ok {
			gi = len(groups)
			idx[rec.addr.Domain] = gi
			groups = append(groups, distGroup{domain: rec.addr.Domain})
		}
		groups[gi].addrs = append(groups[gi].addrs, distAddr{key: rec.key, addr: rec.addr, text: rec.text, rows: rec.rows})
		if n++; n >= r.l.perPart() {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// distWriter writes the output of a distributed run: from the goroutine
// that decides rows locally and from the one that collects verdicts, so
// behind a mutex. A row is written once, however often its verdict comes.
type distWriter struct {
	cfg  *Config
	stop context.CancelCauseFunc

	mu      sync.Mutex
	sink    output.Writer
	sum     *Summary
	written []uint64 // bit per row number: written by this run
	left    int      // rows still to write
	werr    error
	mx      map[string]bool // MX hosts that answered

	cache    VerdictCache
	pending  []store.Verdict // to remember, at the next flush
	cacheErr error
}

func (w *distWriter) skipped(row int) bool { return w.cfg.Skip != nil && w.cfg.Skip(row) }

func (w *distWriter) isWritten(row int) bool {
	i := row / 64
	return i < len(w.written) && w.written[i]&(1<<(row%64)) != 0
}

func (w *distWriter) markWritten(row int) {
	i := row / 64
	for len(w.written) <= i {
		w.written = append(w.written, 0)
	}
	w.written[i] |= 1 << (row % 64)
}

// allSkipped reports whether an earlier run wrote every one of rows.
func (w *distWriter) allSkipped(rows rowRefs) bool {
	all := true
	rows.each(func(ref rowRef) {
		if !w.skipped(ref.row) {
			all = false
		}
	})
	return all
}

// anyLeft reports whether one of rows is written by no run yet.
func (w *distWriter) anyLeft(rows rowRefs) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	left := false
	rows.each(func(ref rowRef) {
		if !w.skipped(ref.row) && !w.isWritten(ref.row) {
			left = true
		}
	})
	return left
}

func (w *distWriter) remaining() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.left
}

// write writes res for each of rows not written yet, by this run or an
// earlier one.
func (w *distWriter) write(rows rowRefs, res output.Result) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.werr != nil {
		return w.werr
	}
	var err error
	rows.each(func(ref rowRef) {
		if err != nil || w.skipped(ref.row) || w.isWritten(ref.row) {
			return
		}
		res.Row = ref.row
		if err = w.sink.Write(ref.fields, res); err != nil {
			err = fmt.Errorf("writing results: %w", err)
			return
		}
		w.markWritten(ref.row)
		w.left--
		w.sum.ByStatus[res.Status]++
		w.sum.ByReason[res.Reason]++
		if res.Source == output.SourceStored {
			w.sum.Stored++
		} else {
			w.sum.Probed++
		}
		if res.SMTPCode != 0 && res.MXHost != "" && res.Source != output.SourceStored {
			w.mx[res.MXHost] = true
		}
		if w.cfg.OnResult != nil {
			w.cfg.OnResult(res)
		}
	})
	if err != nil {
		w.werr = err
		w.stop(err)
	}
	return err
}

// checkpoint makes every row written so far durable.
func (w *distWriter) checkpoint() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.werr != nil {
		return w.werr
	}
	err := w.sink.Flush()
	if err == nil && w.cfg.Checkpoint != nil {
		err = w.cfg.Checkpoint()
	}
	if err != nil {
		w.werr = fmt.Errorf("writing results: %w", err)
		w.stop(w.werr)
	}
	return w.werr
}

// remember queues a verdict for the cache.
func (w *distWriter) remember(v Verdict, text string) {
	if w.cache == nil {
		return
	}
	sv := store.Verdict{
		Address: text, Domain: v.Addr.Domain, Status: v.Status, Reason: v.Reason, MXHost: v.MXHost,
		CatchAll: store.TriOf(v.CatchAll), TLS: store.TriOf(v.TLS), Egress: v.Egress, Attempts: v.Attempts, CheckedAt: v.At,
	}
	if v.Reply != nil {
		sv.SMTPCode, sv.EnhancedCode = v.Reply.Code, v.Reply.Enhanced
		sv.Message = output.CleanMessage(v.Reply.Text())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cacheErr == nil {
		w.pending = append(w.pending, sv)
	}
}

func (w *distWriter) cacheFailed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cacheErr != nil
}

// cacheFailure stops using the cache, once, telling Config.OnStoreError.
func (w *distWriter) cacheFailure(err error) {
	w.mu.Lock()
	first := w.cacheErr == nil
	if first {
		w.cacheErr = err
		w.pending = nil
	}
	w.mu.Unlock()
	if first && w.cfg.OnStoreError != nil {
		w.cfg.OnStoreError(err)
	}
}

// flush checkpoints the output and hands the verdicts queued to the cache.
func (w *distWriter) flush(ctx context.Context) error {
	err := w.checkpoint()
	w.mu.Lock()
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(pending) > 0 && w.cache != nil {
		if cerr := w.cache.Remember(ctx, pending); cerr != nil {
			w.cacheFailure(cerr)
		}
	}
	return err
}

// tick flushes every FlushInterval until the returned func is called.
func (w *distWriter) tick(ctx context.Context) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(w.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = w.flush(ctx)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// rowsFile keeps, for each distinct address of the input, its text and
// its rows, in an unlinked temporary file; an address's key is the offset
// of its record. Records are appended by one goroutine and read by others
// once flushed.
type rowsFile struct {
	f       *os.File
	w       *bufio.Writer
	off     int64        // where the next record starts
	flushed atomic.Int64 // how much of the file is written and readable
	buf     []byte
}

// rowsRecord is one record read back.
type rowsRecord struct {
	key  uint64
	text string
	addr input.Address
	rows rowRefs
}

func newRowsFile(dir string) (*rowsFile, error) {
	f, err := os.CreateTemp(dir, "bulkverify-rows-*")
	if err != nil {
		return nil, fmt.Errorf("keeping the rows on disk: %w", err)
	}
	os.Remove(f.Name()) // unlinked: the space goes back however the run ends
	return &rowsFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (rf *rowsFile) close() { rf.f.Close() }

// Record encoding: uvarint length of the rest, then string text, uvarint
// length of the local part, byte flags (1: SMTPUTF8), uvarint rows, each
// uvarint row number, uvarint fields, each a string.
func (rf *rowsFile) add(text string, a input.Address, rows rowRefs) (uint64, error) {
	b := appendStr(rf.buf[:0], text)
	b = binary.AppendUvarint(b, uint64(len(a.Local)))
	var flags byte
	if a.NeedsSMTPUTF8 {
		flags = 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(1+len(rows.more)))
	rows.each(func(ref rowRef) {
		b = binary.AppendUvarint(b, uint64(ref.row))
		b = binary.AppendUvarint(b, uint64(len(ref.fields)))
		for _, f := range ref.fields {
			b = appendStr(b, f)
		}
	})
	rf.buf = b
	var n [binary.MaxVarintLen64]byte
	hl := binary.PutUvarint(n[:], uint64(len(b)))
	key := uint64(rf.off)
	if _, err := rf.w.Write(n[:hl]); err != nil {
		return 0, fmt.Errorf("keeping the rows on disk: %w", err)
	}
	if _, err := rf.w.Write(b); err != nil {
		return 0, fmt.Errorf("keeping the rows on disk: %w", err)
	}
	rf.off += int64(hl + len(b))
	return key, nil
}

func (rf *rowsFile) flush() error {
	if err := rf.w.Flush(); err != nil {
		return fmt.Errorf("keeping the rows on disk: %w", err)
	}
	rf.flushed.Store(rf.off)
	return nil
}

// errBadKey is a key that names no record: a result of another job, or a
// damaged file.
var errBadKey = errors.New("pipeline: a verdict's key names no record of this run")

// read returns the record at key: one read of the file for most records.
func (rf *rowsFile) read(key uint64) (rowsRecord, error) {
	size := rf.size()
	if key >= uint64(size) {
		return rowsRecord{}, fmt.Errorf("%w: %d", errBadKey, key)
	}
	buf := make([]byte, min(512, size-int64(key)))
	n, err := rf.f.ReadAt(buf, int64(key))
	if err != nil && !errors.Is(err, io.EOF) {
		return rowsRecord{}, fmt.Errorf("reading the rows back: %w", err)
	}
	body, hl := binary.Uvarint(buf[:n])
	if hl <= 0 || body > 1<<30 || int64(key)+int64(hl)+int64(body) > size {
		return rowsRecord{}, fmt.Errorf("%w: %d", errBadKey, key)
	}
	if end := hl + int(body); end <= n {
		return decodeRowsRecord(key, buf[hl:end])
	}
	rest := make([]byte, body)
	if _, err := rf.f.ReadAt(rest, int64(key)+int64(hl)); err != nil {
		return rowsRecord{}, fmt.Errorf("%w: %d: %v", errBadKey, key, err)
	}
	return decodeRowsRecord(key, rest)
}

// size is how much of the file is flushed and readable.
func (rf *rowsFile) size() int64 { return rf.flushed.Load() }

func decodeRowsRecord(key uint64, body []byte) (rowsRecord, error) {
	d := decoder{s: string(body)}
	rec := rowsRecord{key: key, text: d.str()}
	localLen := d.uvarint()
	flags := d.byte()
	nrows := d.uvarint()
	if d.err != nil || localLen >= uint64(len(rec.text)) || nrows == 0 || nrows > uint64(len(body)) {
		return rec, fmt.Errorf("%w: %d", errBadKey, key)
	}
	rec.addr = input.Address{Local: rec.text[:localLen], Domain: rec.text[localLen+1:], NeedsSMTPUTF8: flags&1 != 0}
	for i := range nrows {
		ref := rowRef{row: int(d.uvarint())}
		nf := d.uvarint()
		if d.err != nil || nf > uint64(len(body)) {
			return rec, fmt.Errorf("%w: %d", errBadKey, key)
		}
		ref.fields = make([]string, nf)
		for j := range ref.fields {
			ref.fields[j] = d.str()
		}
		if i == 0 {
			rec.rows.first = ref
		} else {
			rec.rows.more = append(rec.rows.more, ref)
		}
	}
	if d.err != nil {
		return rec, fmt.Errorf("%w: %d", errBadKey, key)
	}
	return rec, nil
}

// all reads every record, in order. The file must be flushed.
func (rf *rowsFile) all() iter.Seq2[rowsRecord, error] {
	return func(yield func(rowsRecord, error) bool) {
		br := bufio.NewReaderSize(io.NewSectionReader(rf.f, 0, rf.size()), 64<<10)
		var off uint64
		for {
			size, err := binary.ReadUvarint(br)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil || size > 1<<30 {
				yield(rowsRecord{}, fmt.Errorf("reading the rows back: %w", cmpErr(err, errBadKey)))
				return
			}
			body := make([]byte, size)
			if _, err := io.ReadFull(br, body); err != nil {
				yield(rowsRecord{}, fmt.Errorf("reading the rows back: %w", err))
				return
			}
			rec, err := decodeRowsRecord(off, body)
			if !yield(rec, err) || err != nil {
				return
			}
			var n [binary.MaxVarintLen64]byte
			off += uint64(binary.PutUvarint(n[:], size)) + size
		}
	}
}
