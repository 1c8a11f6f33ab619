package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/resolve"
)

// UnitDomain is what the caller already knows of a domain it hands to a
// UnitProber (a cluster unit carries what its coordinator resolved).
type UnitDomain struct {
	// Mail is the domain's mail exchangers; nil = looked up by the engine.
	Mail *resolve.Mail
	// CatchAll is the domain's accept-all answer; nil = checked (or asked
	// of Config.CatchAllShare).
	CatchAll *bool
}

// UnitProber is one engine kept up for many batches of addresses, probed
// at once or one after another: what a cluster worker probes its units
// with. The batches share the engine's connections and their limits (per
// host, per operator through Config.Budget, in total), what it learns of
// hosts, and the retry schedule, exactly as the parts of one local run do.
// Between batches the engine stays up: its idle connections wait
// Config.IdleTimeout for more work, as they do for the next part of a run.
//
// Safe for concurrent use. Close it when done.
type UnitProber struct {
	e       *engine
	out     chan Verdict
	drained chan struct{}

	mu      sync.Mutex
	batches map[uint32]*unitBatch
	next    uint32
	closed  bool
	feeding sync.WaitGroup // Probes handing addresses to the engine

	closeOnce sync.Once
	stats     EngineStats
}

// unitBatch is one Probe call's addresses on their way through the engine.
type unitBatch struct {
	mu   sync.Mutex
	emit func(i int, v Verdict)
	left int
	gone bool // Probe returned: emit must not be called any more
	done chan struct{}
}

// unitFields marks a target as one of the user's addresses (counted by the
// memory gauge, as a row of verify is); the tag is in its row number.
var unitFields = []string{}

// ErrProberClosed is returned by Probe after Close.
var ErrProberClosed = errors.New("pipeline: unit prober closed")

// maxBatch bounds the addresses of one Probe call: its index shares a row
// number with the batch's id (tag).
const maxBatch = 1 << 31

// NewUnitProber starts the engine of a unit prober. ctx bounds the engine's
// whole life: once it ends, sessions stop and Probe calls return.
func NewUnitProber(ctx context.Context, cfg Config, res *resolve.Resolver) *UnitProber {
	cfg.setDefaults()
	p := &UnitProber{
		out:     make(chan Verdict, 256),
		drained: make(chan struct{}),
		batches: map[uint32]*unitBatch{},
	}
	p.e = newEngine(ctx, cfg, res, p.out)
	go p.dispatch()
	return p
}

// tag numbers address i of batch id; it rides through the engine as the
// target's row number (64-bit int), so nothing in the engine knows of
// batches.
func tag(id uint32, i int) int { return int(uint64(id)<<32 | uint64(uint32(i))) }

func untag(row int) (id uint32, i int) { return uint32(uint64(row) >> 32), int(uint32(row)) }

// Probe verifies addrs (syntactically valid, normalised addresses) with the
// prober's engine and calls emit once for each, with its index in addrs,
// from one goroutine, as each verdict is reached. known says what is known
// of their domains (nil or absent = nothing). It returns nil when every
// address has its verdict; ctx.Err() when ctx ended first, after which emit
// is not called again (the engine still finishes those addresses, unseen);
// or the error that stopped the engine (a tripped breaker: see Err).
func (p *UnitProber) Probe(ctx context.Context, addrs []input.Address, known map[string]UnitDomain, emit func(i int, v Verdict)) error {
	if len(addrs) == 0 {
		return nil
	}
	if len(addrs) >= maxBatch {
		return fmt.Errorf("pipeline: %d addresses in one batch, more than %d", len(addrs), maxBatch-1)
	}
	b := &unitBatch{emit: emit, left: len(addrs), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrProberClosed
	}
	if err := p.e.workCtx.Err(); err != nil {
		p.mu.Unlock()
		return p.stopErr()
	}
	id := p.next
	for p.batches[id] != nil {
		id++
	}
	p.next = id + 1
	p.batches[id] = b
	p.feeding.Add(1)
	p.mu.Unlock()

	p.e.feed(unitGroups(id, addrs, known))
	p.feeding.Done()

	select {
	case <-b.done:
	case <-ctx.Done():
	case <-p.e.workCtx.Done():
	}
	b.mu.Lock()
	b.gone = true
	finished := b.left == 0
	b.mu.Unlock()
	p.mu.Lock()
	delete(p.batches, id)
	p.mu.Unlock()
	switch {
	case finished:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return p.stopErr()
}

// unitGroups groups a batch's addresses by domain, in the order domains
// first appear, each address tagged with its batch and index.
func unitGroups(id uint32, addrs []input.Address, known map[string]UnitDomain) []DomainGroup {
	idx := map[string]int{}
	var groups []DomainGroup
	for i, a := range addrs {
		gi, ok := idx[a.Domain]
		if !ok {
			gi = len(groups)
			idx[a.Domain] = gi
			g := DomainGroup{Domain: a.Domain}
			if k, ok := known[a.Domain]; ok {
				g.known = &k
			}
			groups = append(groups, g)
		}
		g := &groups[gi]
		g.compact = append(g.compact, groupedRow{
			ref:      rowRef{row: tag(id, i), fields: unitFields},
			key:      a.String(),
			localLen: int32(len(a.Local)),
			utf8:     a.NeedsSMTPUTF8,
		})
	}
	return groups
}

// dispatch hands each verdict to the batch it belongs to.
func (p *UnitProber) dispatch() {
	defer close(p.drained)
	for v := range p.out {
		if v.rows.count() == 0 {
			continue
		}
		p.e.mem.add(-1)
		id, i := untag(v.rows.first.row)
		v.rows = rowRefs{}
		p.mu.Lock()
		b := p.batches[id]
		p.mu.Unlock()
		if b == nil {
			continue // its Probe gave up on it
		}
		b.mu.Lock()
		if !b.gone && b.left > 0 {
			b.emit(i, v)
			b.left--
			if b.left == 0 {
				close(b.done)
			}
		}
		b.mu.Unlock()
	}
}

// Err returns what stopped the engine before Close, if anything did: a
// tripped circuit breaker (*TrippedError: every MX host failing at TCP, port
// 25 blocked), after which no batch can be probed.
func (p *UnitProber) Err() error {
	var tripped *TrippedError
	if err := context.Cause(p.e.workCtx); errors.As(err, &tripped) {
		return err
	}
	return nil
}

func (p *UnitProber) stopErr() error {
	if err := p.Err(); err != nil {
		return err
	}
	return ErrProberClosed
}

// Close waits for the batches still in the engine (or, once the ctx given
// to NewUnitProber has ended, for the engine to stop), stops the engine and
// returns what it did on the wire.
func (p *UnitProber) Close() EngineStats {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.feeding.Wait()
		p.stats = p.e.end()
		close(p.out)
		<-p.drained
	})
	return p.stats
}
