package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/store"
)

// loader reads the input and hands it to the engine: all at once when it
// fits in Config.MemoryRows, else a partition at a time as room is made
// (see memory.go). Rows whose verdict the store holds, fresh, go straight to
// the writer (dispatchStored); rows with no address too.
type loader struct {
	cfg   *Config
	e     *engine
	ready chan<- []readyRow
	sum   *Summary

	huge    map[string]bool // domains fed in several parts
	counted map[string]bool // of those, the ones counted in Summary.Domains

	batch     []readyRow // rows for the writer, sent a batch at a time
	idle      int        // polls of waitRoom that found connection slots idle, since the last eviction
	providers map[string]string
	storeErr  bool       // reading the store failed: the rest is probed
	total     chan<- int // rows to write, once read (buffered: never blocks)
	// free are batches the writer is done with, to fill again: a batch
	// is a few hundred KB, and a million stored rows would allocate a
	// thousand of them.
	free   <-chan []readyRow
	recall *recall
}

func newLoader(cfg *Config, e *engine, ready chan<- []readyRow, sum *Summary) *loader {
	return &loader{cfg: cfg, e: e, ready: ready, sum: sum, huge: map[string]bool{}, counted: map[string]bool{}, providers: map[string]string{}}
}

// Sizes derived from MemoryRows (M): a partition holds at most M/4 rows, and
// the next one is loaded when fewer than M/2 addresses are active in memory
// and fewer than M are held in all: at most about 1.25 × M addresses are in
// memory at once, plus a chunk per host whose queue is being read back.
func (l *loader) perPart() int  { return max(1, l.cfg.MemoryRows/4) }
func (l *loader) lowWater() int { return max(1, l.cfg.MemoryRows/2) }

// run reads all of src, then feeds it to the engine. Nothing is probed
// before the whole input has been read: a malformed file fails first. Rows
// the store answers are written as they are read (recall).
func (l *loader) run(ctx context.Context, src *input.Reader) error {
	g := newGrouper(nil)
	var parts *partitioner
	fail := func(err error) error {
		if parts != nil {
			parts.close()
		}
		return err
	}
	// Rows let go (left out, or answered by the store) while others are
	// held: a row held gets fields of its own, or it would keep in memory
	// the text of the rows read about it (input.Record.Fields), past
	// MemoryRows. Only the rows held are copied: in a rerun, few.
	own := l.cfg.Skip != nil || (l.cfg.Store != nil && !l.cfg.Refresh)
	// keep holds a row for the engine: grouped in memory, or partitioned
	// on disk once the input is bigger than MemoryRows.
	keep := func(p parsedRow) error {
		if parts != nil {
			return parts.add(p)
		}
		if own {
			p.ref.fields = slices.Clone(p.ref.fields)
		}
		g.add(p)
		if l.cfg.MemoryRows > 0 && g.rows > l.cfg.MemoryRows {
			var err error
			if parts, err = l.spill(g, src.Column()); err != nil {
				return err
			}
			g = nil
		}
		return nil
	}
	if l.cfg.Store != nil && !l.cfg.Refresh {
		l.recall = newRecall(l)
		defer l.recall.close()
	}
	// Reading and parsing on one core, grouping on the other.
	batches := make(chan rowBatch, 4)
	done := make(chan []parsedRow, cap(batches)+1) // batches handled, for readRows to fill again
	stop := make(chan struct{})
	defer close(stop)
	go readRows(src, l.cfg.Skip, batches, done, stop)
	for b := range batches {
		l.sum.Rows += b.read
		l.sum.Skipped += b.skipped
		if b.err != nil {
			return fail(fmt.Errorf("reading input: %w", b.err))
		}
		for _, p := range b.rows {
			if l.recall != nil {
				taken, err := l.recall.take(ctx, p, keep)
				if err != nil {
					return fail(err)
				}
				if taken {
					continue
				}
			}
			if err := keep(p); err != nil {
				return fail(err)
			}
		}
		if l.recall != nil {
			if err := l.recall.poll(ctx, keep); err != nil {
				return fail(err)
			}
		}
		clear(b.rows) // copied where they went
		select {
		case done <- b.rows[:0]:
		default:
		}
	}
	if l.recall != nil {
		if err := l.recall.finish(ctx, keep); err != nil {
			return fail(err)
		}
	}
	l.total <- l.sum.Rows - l.sum.Skipped // to the writer, which calls OnTotal
	if parts == nil {
		l.sum.Memory.Partitions = 1
		l.dispatch(ctx, g)
		l.flush()
		return nil
	}
	defer parts.close()
	queue, err := parts.finish()
	if err != nil {
		return err
	}
	for len(queue) > 0 && ctx.Err() == nil {
		pt := queue[0]
		queue = queue[1:]
		if pt.rows > l.perPart() && pt.depth < maxRepartition {
			subs, err := l.repartition(pt, src.Column())
			pt.f.Close()
			if err != nil {
				return err
			}
			queue = append(subs, queue...)
			continue
		}
		if !l.waitRoom(ctx) {
			pt.f.Close()
			break
		}
		g, err := l.load(pt, src.Column())
		pt.f.Close()
		if err != nil {
			return err
		}
		l.sum.Memory.Partitions++
		l.dispatch(ctx, g)
		l.flush()
	}
	for _, pt := range queue {
		pt.f.Close()
	}
	return nil
}

// rowBatch is rows read and parsed, handed from readRows to the loader.
type rowBatch struct {
	rows          []parsedRow
	read, skipped int   // rows read, and of those left out (Config.Skip)
	err           error // why reading stopped early; the last batch
}

// readRowsBatch is how many rows go to the loader at once.
const readRowsBatch = 512

// readRows reads src to its end, parsing each row's address, and sends the
// rows to out in batches, which it closes at the end, after a batch with
// the error if reading failed. It fills again the batches it gets back on
// done. It stops early when stop is closed. Its rows' fields share the
// reader's blocks (input.Record.Fields): a caller that holds some rows
// while letting the rows read about them go copies the ones it holds.
func readRows(src *input.Reader, skip func(int) bool, out chan<- rowBatch, done <-chan []parsedRow, stop <-chan struct{}) {
	defer close(out)
	b := rowBatch{rows: make([]parsedRow, 0, readRowsBatch)}
	send := func() bool {
		select {
		case out <- b:
			select {
			case rows := <-done:
				b = rowBatch{rows: rows}
			default:
				b = rowBatch{rows: make([]parsedRow, 0, readRowsBatch)}
			}
			return true
		case <-stop:
			return false
		}
	}
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			send()
			return
		}
		if err != nil {
			b.err = err
			send()
			return
		}
		b.read++
		if skip != nil && skip(rec.Row) {
			b.skipped++
			continue
		}
		b.rows = append(b.rows, parseRow(rec))
		if len(b.rows) == readRowsBatch && !send() {
			return
		}
	}
}

// spill moves the rows grouped so far to partition files: the input is
// bigger than MemoryRows. Domains that already hold more than half a
// partition's share are spread by address.
func (l *loader) spill(g *grouper, col int) (*partitioner, error) {
	for gi, grp := range g.groups {
		if g.held(gi) > l.perPart()/2 {
			l.huge[grp.Domain] = true
		}
	}
	parts, err := newPartitioner(l.cfg.TempDir, partitionFiles, col, l.perPart(), 0, 0, l.huge)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*partitioner, error) {
		parts.close()
		return nil, err
	}
	for _, inv := range g.invalid {
		if err := parts.add(parsedRow{ref: inv.ref, raw: inv.raw, invalid: inv.reason}); err != nil {
			return fail(err)
		}
	}
	for gi := range g.groups {
		if err := g.each(gi, parts.add); err != nil {
			return fail(err)
		}
		g.release(gi) // written: let it go
	}
	return parts, nil
}

// repartition splits a partition too big to load at once, by another hash.
// A domain that alone holds more than half a partition's share is spread by
// address from now on.
func (l *loader) repartition(pt *partition, col int) ([]*partition, error) {
	counts := map[string]int{}
	pr := newPartReader(pt, col)
	for {
		r, err := pr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if r.invalid == "" {
			counts[r.addr.Domain]++
		}
	}
	for d, n := range counts {
		if n > l.perPart()/2 {
			l.huge[d] = true
		}
	}
	if _, err := pt.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("partitioning the input on disk: %w", err)
	}
	n := min(partitionFiles, 2*(pt.rows/l.perPart()+1))
	parts, err := newPartitioner(l.cfg.TempDir, n, col, l.perPart(), uint64(pt.depth+1)*0x9e3779b97f4a7c15, pt.depth+1, l.huge)
	if err != nil {
		return nil, err
	}
	pr = newPartReader(pt, col)
	for {
		r, err := pr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = parts.add(r)
		}
		if err != nil {
			parts.close()
			return nil, err
		}
	}
	return parts.finish()
}

// load reads a partition into memory, grouped.
func (l *loader) load(pt *partition, col int) (*grouper, error) {
	g := newGrouper(l.huge)
	pr := newPartReader(pt, col)
	for {
		r, err := pr.next()
		if errors.Is(err, io.EOF) {
			return g, nil
		}
		if err != nil {
			return nil, err
		}
		g.add(r)
	}
}

// waitRoom waits until the engine has room for another partition (see
// perPart). While it waits with connection slots standing idle, the run is
// not short of connections: the hosts that hold the memory are behind the
// rest (rate-limited, slow, capped per host or per operator), and the tails
// of their queues go to disk (router.evict), so that they do not hold the
// rest of the input back. Waiting with every slot busy is the run going at
// full speed: nothing is evicted then.
func (l *loader) waitRoom(ctx context.Context) bool {
	const poll = 5 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if l.e.mem.active() < l.lowWater() && l.e.mem.load() < l.cfg.MemoryRows {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-l.e.workCtx.Done():
			return false
		case <-t.C:
		}
		if len(l.e.slots) < cap(l.e.slots) {
			l.idle++
		} else {
			l.idle = 0
		}
		if l.idle >= idleBeforeEvict {
			l.e.router.evict(l.lowWater() / 2)
			l.idle = 0
		}
	}
}

// idleBeforeEvict is how many polls of waitRoom, in all, must find idle
// slots before queues are evicted: 50 ms, so that a slot freed for a moment
// between two sessions does not count.
const idleBeforeEvict = 10

// dispatch sends a loaded batch on: rows without an address and rows the
// store answers to the writer, the rest to the engine.
func (l *loader) dispatch(ctx context.Context, g *grouper) {
	for _, inv := range g.invalid {
		res := output.Result{Row: inv.ref.row, Email: inv.raw, Status: output.StatusInvalid, Reason: inv.reason,
			CheckedAt: l.cfg.Now(), Source: output.SourceProbed}
		invalidSignals(l.cfg.Signals, inv.raw, &res)
		l.send(readyRow{rows: rowRefs{first: inv.ref}, res: res})
	}
	for _, grp := range g.groups {
		switch {
		case l.recall.met(grp.Domain):
			// Counted by the recall.
		case !grp.split:
			l.sum.Domains++
		case !l.counted[grp.Domain]:
			l.counted[grp.Domain] = true
			l.sum.Domains++
		}
	}
	if l.cfg.Store == nil || l.storeErr || l.cfg.Refresh {
		l.sum.Addresses += g.dedupeAll()
		l.e.feed(g.groups)
		// Each group's addresses and rows are its targets' now: let the
		// group's arrays go as soon as its targets are made, not when the
		// whole input has been fed (a tenth of a run's heap, for the
		// garbage collector to mark again and again).
		clear(g.groups)
		return
	}
	l.dispatchStored(ctx, g)
}

// send queues a row for the writer.
func (l *loader) send(r readyRow) {
	l.batch = append(l.batch, r)
	if len(l.batch) >= readyBatch {
		l.flush()
	}
}

// readyBatch is how many rows go to the writer at once.
const readyBatch = 1024

func (l *loader) flush() {
	if len(l.batch) == 0 {
		return
	}
	l.ready <- l.batch
	select {
	case l.batch = <-l.free:
	default:
		l.batch = make([]readyRow, 0, readyBatch)
	}
}

// dispatchStored looks the batch's domains up in the store, in domain
// order, and writes every address whose stored verdict is fresh without
// probing it; each domain's other addresses go to the engine as soon as the
// scan is past the domain, so probing starts while the scan goes on.
func (l *loader) dispatchStored(ctx context.Context, g *grouper) {
	order := make([]int32, 0, len(g.groups))
	var feed []DomainGroup
	for i := range g.groups {
		if !l.recall.covered(g.groups[i].Domain) {
			order = append(order, int32(i))
			continue
		}
		// Looked up as it was read: what is left is to be probed.
		g.dedupe(i)
		l.sum.Addresses += g.groups[i].size()
		feed = append(feed, g.groups[i])
		g.release(i)
	}
	if len(feed) > 0 {
		l.e.feed(feed)
		feed = nil
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(g.groups[a].Domain, g.groups[b].Domain) })
	names := make([]string, len(order))
	for i, gi := range order {
		names[i] = g.groups[gi].Domain
	}
	// Each domain is deduped as the scan reaches it (its index is then at
	// hand for the scan's lookups), or when the scan passes it by.
	stored := make([][]bool, len(g.groups)) // by group, by address: answered by the store
	next := 0                               // index in order of the next domain to finish
	cur, curIdx := int32(-1), (*addrIndex)(nil)
	finish := func(gi int32) {
		if gi != cur {
			g.dedupe(int(gi))
		}
		l.sum.Addresses += g.groups[gi].size()
		if grp := probeLeft(g.groups[gi], stored[gi]); grp.size() > 0 {
			feed = append(feed, grp)
		}
		g.release(int(gi)) // handed on: let it go
	}
	finishUpTo := func(upto int) {
		for ; next < upto; next++ {
			finish(order[next])
		}
		if len(feed) >= 64 {
			l.e.feed(feed)
			feed = nil
		}
	}
	st := l.cfg.Store
	_, err := st.LookupDomains(ctx, l.cfg.StoreNamespaces, names, func(i int, v store.Verdict) bool {
		finishUpTo(i)
		gi := order[i]
		if gi != cur {
			cur, curIdx = gi, g.dedupe(int(gi))
		}
		ai, ok := curIdx.lookup(v.Address)
		if !ok || !st.Fresh(v) {
			return true
		}
		if stored[gi] == nil {
			stored[gi] = make([]bool, g.groups[gi].size())
		}
		stored[gi][ai] = true
		addr, _, rows := g.groups[gi].at(ai)
		l.sendStored(v, addr, rows)
		return true
	})
	if err != nil && ctx.Err() == nil {
		// The store cannot be read: probe the rest, and do not try again.
		l.storeErr = true
		l.e.sink.check(err)
	}
	finishUpTo(len(order))
	if len(feed) > 0 {
		l.e.feed(feed)
	}
}

// probeLeft is grp without the addresses the store answered (its rows
// filtered in place: grp is handed on).
func probeLeft(grp DomainGroup, stored []bool) DomainGroup {
	if stored == nil {
		return grp
	}
	if grp.compact == nil { // find's
		out := DomainGroup{Domain: grp.Domain, split: grp.split}
		for i, a := range grp.Addresses {
			if !stored[i] {
				out.Addresses = append(out.Addresses, a)
			}
		}
		return out
	}
	kept := grp.compact[:0]
	for i, r := range grp.compact {
		if !stored[i] {
			kept = append(kept, r)
		}
	}
	clear(grp.compact[len(kept):])
	grp.compact = kept
	return grp
}

// sendStored writes a stored verdict for its rows, as the run that probed
// it wrote it, with source "stored".
func (l *loader) sendStored(v store.Verdict, addr input.Address, rows rowRefs) {
	var res output.Result
	storedResult(&res, &v, addr, l.provider(v.MXHost), v.CatchAll.Bool(), v.TLS.Bool(), l.cfg.Signals)
	l.send(readyRow{rows: rows, res: res})
}

// storedResult makes *res the output row of a stored verdict about addr,
// as the run that probed it wrote it, with source "stored": provider is
// the operator of its MX host now, catchAll and tls its answers as columns.
func storedResult(res *output.Result, v *store.Verdict, addr input.Address, provider string, catchAll, tls *bool, sig *signals.Set) {
	*res = output.Result{
		Email:        v.Address,
		Status:       v.Status,
		Reason:       v.Reason,
		SMTPCode:     v.SMTPCode,
		EnhancedCode: v.EnhancedCode,
		SMTPMessage:  v.Message,
		MXHost:       v.MXHost,
		CatchAll:     catchAll,
		TLS:          tls,
		Attempts:     v.Attempts,
		CheckedAt:    v.CheckedAt,
		Provider:     provider,
		Egress:       v.Egress,
		Source:       output.SourceStored,
	}
	if sig != nil {
		f := sig.Of(addr.Local, addr.Domain, hasMailHost(v.Reason))
		res.Disposable, res.Free, res.Role, res.TypoSuggestion = f.Disposable, f.Free, f.Role, f.Suggestion
	}
}

// provider is the operator name the provider column gives host.
func (l *loader) provider(host string) string {
	if host == "" {
		return ""
	}
	p, ok := l.providers[host]
	if !ok {
		var op *operator.Operator = l.cfg.Operators.Lookup(host)
		if !op.Own() {
			p = op.Name
		}
		l.providers[host] = p
	}
	return p
}
