package pipeline

import (
	"context"
	"slices"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/store"
)

// recall answers rows from the verdict store as they are read, before the
// input is grouped: a row whose address has a fresh stored verdict goes to
// the writer at once, and is never held, grouped or partitioned. Only the
// rows the store cannot answer go on to the grouper (loader.keep).
//
// The first time a domain is met, its fresh verdicts are read from the
// store into a store.VerdictSet (compact, no pointer per verdict), with
// those of the other domains met since the last read, in one pass, on a
// goroutine of its own: the rows of domains being read wait (pending)
// while the loader goes on with the input. Sets are held until the input
// has been read, at most Config.MemoryRows verdicts in all: a domain past
// that is not read here, and its rows take the grouped path, where
// dispatchStored looks them up after the input is read, as before.
//
// A domain read here whole is covered: its rows that the set did not
// answer have no fresh verdict, and are probed without asking the store
// again.
type recall struct {
	l    *loader
	doms map[string]recallDomain
	sets []recallSet
	held int // verdicts in sets
	// Domains met and not read yet (the next read), and the rows waiting
	// for them; the rows waiting for the read under way.
	newDoms     []string
	nextRows    rowQueue
	waitingRows rowQueue
	// reading is the read under way, if any: it sends its result here.
	reading chan recallRead
	off     bool // nothing more is read here: the store failed, or the sets are full

	// What the last stored row was written with: rows in a row often
	// share their host.
	lastHost, lastProvider string
	yes, no                bool // what the rows' *bool columns point to
}

type recallDomain struct {
	state uint8
	set   int32 // index in recall.sets
}

// States of a domain.
const (
	recallNext    uint8 = iota // met, to be read
	recallReading              // being read
	recallLoaded               // read whole: covered
	recallOff                  // not read here (past the limit, or the store failed)
)

type recallSet struct {
	vs   *store.VerdictSet
	seen []bool // by verdict id: its address was met (counted in Summary.Addresses)
}

// recallRead is the outcome of reading some domains.
type recallRead struct {
	names []string
	vs    *store.VerdictSet // nil when there was no room left
	err   error
}

// When the domains met are read: at this many domains, or this many rows
// waiting for them, if no read is under way. Reading many domains at once
// costs less per domain; the rows that wait are held in memory.
const (
	recallDomains = 256
	recallRows    = 8192
)

// maxWaiting bounds the rows held waiting for reads: past it the loader
// waits for the read under way.
func (r *recall) maxWaiting() int {
	if m := r.l.cfg.MemoryRows; m > 0 {
		return max(recallRows, m/2)
	}
	return 1 << 20
}

func newRecall(l *loader) *recall {
	r := &recall{l: l, doms: map[string]recallDomain{}}
	r.yes = true
	return r
}

// take answers p from the store if it can, or holds it until its domain is
// read; false when p is the grouper's (keep's) to handle.
func (r *recall) take(ctx context.Context, p parsedRow, keep func(parsedRow) error) (bool, error) {
	if p.invalid != "" {
		return false, nil
	}
	d, ok := r.doms[p.addr.Domain]
	if !ok {
		if r.off {
			return false, nil
		}
		d = recallDomain{state: recallNext}
		r.doms[p.addr.Domain] = d
		r.newDoms = append(r.newDoms, p.addr.Domain)
	}
	switch d.state {
	case recallNext:
		r.nextRows.push(p)
	case recallReading:
		r.waitingRows.push(p)
	case recallLoaded:
		return r.answer(d, p), nil
	default:
		return false, nil
	}
	if r.waitingRows.len()+r.nextRows.len() >= r.maxWaiting() {
		return true, r.wait(ctx, keep)
	}
	if r.reading == nil && (len(r.newDoms) >= recallDomains || r.nextRows.len() >= recallRows) {
		r.start(ctx)
	}
	return true, nil
}

// poll takes the read under way if it is done, and starts the next one if
// there is none under way and domains wait to be read; the loader calls it
// between batches of input.
func (r *recall) poll(ctx context.Context, keep func(parsedRow) error) error {
	if r.reading != nil {
		select {
		case res := <-r.reading:
			if err := r.settle(ctx, res, keep); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	r.start(ctx)
	return nil
}

// wait waits for the read under way, settles its rows and starts the next.
func (r *recall) wait(ctx context.Context, keep func(parsedRow) error) error {
	if r.reading != nil {
		if err := r.settle(ctx, <-r.reading, keep); err != nil {
			return err
		}
	}
	r.start(ctx)
	return nil
}

// start reads the domains met since the last read, if any, on a goroutine
// of its own.
func (r *recall) start(ctx context.Context) {
	if len(r.newDoms) == 0 || r.reading != nil {
		return
	}
	names := r.newDoms
	r.newDoms = make([]string, 0, recallDomains)
	for _, name := range names {
		r.doms[name] = recallDomain{state: recallReading}
	}
	r.waitingRows, r.nextRows = r.nextRows, rowQueue{}
	// A limit of 0 is none; Config.MemoryRows bounds the verdicts held.
	limit := 0
	if m := r.l.cfg.MemoryRows; m > 0 {
		limit = m - r.held
	}
	done := make(chan recallRead, 1) // never blocks: the loader may be gone
	r.reading = done
	st, namespaces := r.l.cfg.Store, r.l.cfg.StoreNamespaces
	go func() {
		slices.Sort(names) // the store reads sorted domains fastest
		res := recallRead{names: names}
		if limit >= 0 {
			res.vs, res.err = st.LoadFresh(ctx, namespaces, names, limit)
		}
		done <- res
	}()
}

// settle takes the outcome of a read: its domains are loaded or off, and
// the rows that waited for them are answered or kept.
func (r *recall) settle(ctx context.Context, res recallRead, keep func(parsedRow) error) error {
	r.reading = nil
	vs := res.vs
	switch {
	case res.err != nil:
		if ctx.Err() == nil {
			// The store cannot be read: the rest is probed, and nothing
			// more is asked of it.
			r.l.storeErr = true
			r.l.e.sink.check(res.err)
		}
		r.off, vs = true, nil
	case vs == nil:
		r.off = true // no room left
	default:
		r.held += vs.Len()
		r.sets = append(r.sets, recallSet{vs: vs, seen: make([]bool, vs.Len())})
		if !vs.Loaded(len(res.names) - 1) {
			r.off = true // full: the domains met from now on take the grouped path
		}
	}
	for i, name := range res.names {
		d := recallDomain{state: recallOff}
		if vs != nil && vs.Loaded(i) {
			d = recallDomain{state: recallLoaded, set: int32(len(r.sets) - 1)}
		}
		r.doms[name] = d
	}
	if r.off {
		// Domains met and not read yet will not be.
		for _, name := range r.newDoms {
			r.doms[name] = recallDomain{state: recallOff}
		}
		r.newDoms = r.newDoms[:0]
		r.waitingRows.moveFrom(&r.nextRows)
	}
	for _, chunk := range r.waitingRows.takeAll() {
		for _, p := range chunk {
			if d := r.doms[p.addr.Domain]; d.state == recallLoaded && r.answer(d, p) {
				continue
			}
			if err := keep(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish reads what is still to be read, at the end of the input, and lets
// the sets go: no more rows will be looked up in them.
func (r *recall) finish(ctx context.Context, keep func(parsedRow) error) error {
	for r.reading != nil || len(r.newDoms) > 0 {
		if err := r.wait(ctx, keep); err != nil {
			return err
		}
	}
	r.sets = nil
	return nil
}

// answer writes p's stored verdict, if its domain's set holds one.
func (r *recall) answer(d recallDomain, p parsedRow) bool {
	set := &r.sets[d.set]
	ref, ok := set.vs.Lookup(p.key)
	if !ok {
		return false
	}
	v, err := set.vs.Verdict(ref, p.key)
	if err != nil {
		// A damaged entry: the address is probed again, and the store's
		// trouble reported once.
		r.l.e.sink.check(err)
		return false
	}
	if !set.seen[ref.ID()] {
		set.seen[ref.ID()] = true
		r.l.sum.Addresses++
	}
	r.send(&v, p.addr, rowRefs{first: p.ref})
	return true
}

// send writes a stored verdict for its rows, as the run that probed it
// wrote it, with source "stored".
func (r *recall) send(v *store.Verdict, addr input.Address, rows rowRefs) {
	l := r.l
	l.batch = append(l.batch, readyRow{rows: rows})
	res := &l.batch[len(l.batch)-1].res
	*res = output.Result{
		Email:        v.Address,
		Status:       v.Status,
		Reason:       v.Reason,
		SMTPCode:     v.SMTPCode,
		EnhancedCode: v.EnhancedCode,
		SMTPMessage:  v.Message,
		MXHost:       v.MXHost,
		CatchAll:     r.tri(v.CatchAll),
		TLS:          r.tri(v.TLS),
		Attempts:     v.Attempts,
		CheckedAt:    v.CheckedAt,
		Egress:       v.Egress,
		Source:       output.SourceStored,
	}
	if v.MXHost != r.lastHost {
		r.lastHost, r.lastProvider = v.MXHost, l.provider(v.MXHost)
	}
	res.Provider = r.lastProvider
	if l.cfg.Signals != nil {
		f := l.cfg.Signals.Of(addr.Local, addr.Domain, hasMailHost(v.Reason))
		res.Disposable, res.Free, res.Role, res.TypoSuggestion = f.Disposable, f.Free, f.Role, f.Suggestion
	}
	if len(l.batch) >= readyBatch {
		l.flush()
	}
}

// tri is t as a *bool column, pointing at the recall's own values: no
// allocation per row (the writer only reads them).
func (r *recall) tri(t store.Tri) *bool {
	switch t {
	case store.TriYes:
		return &r.yes
	case store.TriNo:
		return &r.no
	}
	return nil
}

// covered reports whether the store was read for every address of domain
// (its rows that were not answered have no fresh verdict).
func (r *recall) covered(domain string) bool {
	return r != nil && r.doms[domain].state == recallLoaded
}
