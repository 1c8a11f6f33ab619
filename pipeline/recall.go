package pipeline

import (
	"context"
	"slices"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/store"
)

// recall answers rows from the verdict store as they are read, before the
// input is grouped: a row whose address has a fresh stored verdict goes to
// the writer at once, and is never held, grouped or partitioned. Only the
// rows the store cannot answer go on to the grouper (loader.keep).
//
// The first time a domain is met, its fresh verdicts are read from the
// store into a store.VerdictSet (compact, no pointer per verdict), with
// those of the other domains met about then: the domains met are read in
// chunks of recallDomains, one after another, by a goroutine of its own
// (recallReader), while the loader goes on with the input; the rows of a
// chunk's domains wait (held in memory) until it has been read. An input
// that interleaves its domains meets them all in its first rows: the
// chunks make the first sets ready early, and rows are answered while the
// rest is read. Sets are held until the input has been read, at most
// Config.MemoryRows verdicts in all: a domain past that is not read here,
// and its rows take the grouped path, where dispatchStored looks them up
// after the input is read, as before.
//
// A domain read here whole is covered: its rows that the set did not
// answer have no fresh verdict, and are probed without asking the store
// again.
type recall struct {
	l    *loader
	doms map[string]recallDomain
	sets []recallSet
	// Domains met and not sent to be read yet, and the rows waiting for
	// them.
	newDoms  []string
	nextRows rowQueue
	// The chunks sent to be read and not settled yet, oldest first (the
	// reader answers in that order), with the rows waiting for each;
	// first is the sequence number of reads[0].
	reads   []*recallChunk
	first   int32
	waiting int // rows in reads
	reader  *recallReader
	off     bool // nothing more is read here: the store failed, or the sets are full

	// What the last stored row was written with: rows in a row often
	// share their host.
	lastHost, lastProvider string
	yes, no                bool // what the rows' *bool columns point to
}

type recallDomain struct {
	state uint8
	set   int32 // recallLoaded: index in recall.sets; recallReading: sequence number of its chunk
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

// recallChunk is domains sent to be read, and the rows waiting for them.
type recallChunk struct {
	names []string
	rows  rowQueue
}

// recallRead is the outcome of reading a chunk.
type recallRead struct {
	vs  *store.VerdictSet // nil when there was no room left
	err error
}

// A chunk is sent to be read at this many domains, or this many rows
// waiting for them. Reading many domains at once costs less per domain;
// the rows that wait are held in memory.
const (
	recallDomains = 256
	recallRows    = 8192
)

// maxWaiting bounds the rows held waiting for reads: past it the loader
// waits for the oldest read.
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
		if len(r.newDoms) >= recallDomains || r.nextRows.len() >= recallRows {
			if err := r.send(ctx, keep); err != nil {
				return true, err
			}
		}
	case recallReading:
		r.reads[d.set-r.first].rows.push(p)
		r.waiting++
	case recallLoaded:
		return r.answer(d, p), nil
	default:
		return false, nil
	}
	if r.waiting+r.nextRows.len() >= r.maxWaiting() {
		return true, r.wait(ctx, keep)
	}
	return true, nil
}

// maxReads bounds the chunks sent and not settled: past it, the oldest is
// waited for first.
const maxReads = 64

// send sends the domains met since the last chunk to be read.
func (r *recall) send(ctx context.Context, keep func(parsedRow) error) error {
	if len(r.newDoms) == 0 {
		return nil
	}
	if len(r.reads) >= maxReads {
		if err := r.settle(ctx, <-r.reader.done, keep); err != nil {
			return err
		}
		if len(r.newDoms) == 0 { // the store failed, or the sets are full
			return nil
		}
	}
	if r.reader == nil {
		r.reader = newRecallReader(ctx, r.l.cfg)
	}
	c := &recallChunk{names: r.newDoms, rows: r.nextRows}
	seq := r.first + int32(len(r.reads))
	for _, name := range c.names {
		r.doms[name] = recallDomain{state: recallReading, set: seq}
	}
	r.waiting += c.rows.len()
	r.reads = append(r.reads, c)
	r.newDoms, r.nextRows = make([]string, 0, recallDomains), rowQueue{}
	r.reader.read(c.names)
	return nil
}

// poll settles the reads that are done, and sends what was met to be read
// if the reader is idle; the loader calls it between batches of input.
func (r *recall) poll(ctx context.Context, keep func(parsedRow) error) error {
	for len(r.reads) > 0 {
		select {
		case res := <-r.reader.done:
			if err := r.settle(ctx, res, keep); err != nil {
				return err
			}
			continue
		default:
		}
		break
	}
	if len(r.reads) == 0 {
		return r.send(ctx, keep)
	}
	return nil
}

// wait waits for the oldest read (sending what was met, if nothing is
// being read) and settles it.
func (r *recall) wait(ctx context.Context, keep func(parsedRow) error) error {
	if len(r.reads) == 0 {
		if err := r.send(ctx, keep); err != nil || len(r.reads) == 0 {
			return err
		}
	}
	return r.settle(ctx, <-r.reader.done, keep)
}

// settle takes the outcome of the oldest read: its domains are loaded or
// off, and the rows that waited for them are answered or kept.
func (r *recall) settle(ctx context.Context, res recallRead, keep func(parsedRow) error) error {
	c := r.reads[0]
	r.reads[0] = nil
	r.reads = r.reads[1:]
	r.first++
	r.waiting -= c.rows.len()
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
		r.sets = append(r.sets, recallSet{vs: vs, seen: make([]bool, vs.Len())})
		if !vs.Loaded(len(c.names) - 1) {
			r.off = true // full: the domains met from now on take the grouped path
		}
	}
	for i, name := range c.names {
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
		c.rows.moveFrom(&r.nextRows)
	}
	for _, chunk := range c.rows.takeAll() {
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
	if err := r.send(ctx, keep); err != nil {
		return err
	}
	for len(r.reads) > 0 {
		if err := r.settle(ctx, <-r.reader.done, keep); err != nil {
			return err
		}
	}
	r.close()
	r.sets = nil
	r.l.sum.Domains += len(r.doms) // the loader counts the domains the recall never met
	return nil
}

// met reports whether the recall met domain: its rows went through the
// recall, which counts it in Summary.Domains.
func (r *recall) met(domain string) bool {
	if r == nil {
		return false
	}
	_, ok := r.doms[domain]
	return ok
}

// close stops the reader; the loader calls it however it ends.
func (r *recall) close() {
	if r != nil && r.reader != nil {
		r.reader.close()
		r.reader = nil
	}
}

// recallReader reads chunks of domains from the store, one after another,
// in the order asked, on a goroutine of its own. It keeps the count of
// verdicts held against Config.MemoryRows: once a set had no room for all
// its domains, every later read gives none.
type recallReader struct {
	reqs chan []string
	done chan recallRead
	stop chan struct{}
}

func newRecallReader(ctx context.Context, cfg *Config) *recallReader {
	rr := &recallReader{reqs: make(chan []string, maxReads), done: make(chan recallRead, maxReads), stop: make(chan struct{})}
	st, namespaces, memoryRows := cfg.Store, cfg.StoreNamespaces, cfg.MemoryRows
	go func() {
		held, full := 0, false
		for names := range rr.reqs {
			var res recallRead
			slices.Sort(names) // the store reads sorted domains fastest
			limit := 0         // none
			if memoryRows > 0 {
				limit = memoryRows - held
			}
			if !full && (memoryRows == 0 || limit > 0) {
				res.vs, res.err = st.LoadFresh(ctx, namespaces, names, limit)
			}
			if res.vs != nil {
				held += res.vs.Len()
				full = !res.vs.Loaded(len(names) - 1)
			} else {
				full = true
			}
			select {
			case rr.done <- res:
			case <-rr.stop:
				return
			}
		}
	}()
	return rr
}

// read asks for names to be read; the answer comes on done, after those
// of the reads asked before.
func (rr *recallReader) read(names []string) { rr.reqs <- names }

func (rr *recallReader) close() {
	close(rr.reqs)
	close(rr.stop)
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
	r.write(&v, p.addr, rowRefs{first: p.ref})
	return true
}

// write writes a stored verdict for its rows, as the run that probed it
// wrote it, with source "stored".
func (r *recall) write(v *store.Verdict, addr input.Address, rows rowRefs) {
	l := r.l
	l.batch = append(l.batch, readyRow{rows: rows})
	if v.MXHost != r.lastHost {
		r.lastHost, r.lastProvider = v.MXHost, l.provider(v.MXHost)
	}
	storedResult(&l.batch[len(l.batch)-1].res, v, addr, r.lastProvider, r.tri(v.CatchAll), r.tri(v.TLS), l.cfg.Signals)
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
