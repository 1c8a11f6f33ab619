package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/bulkverify/bulkverify/egress"
)

// BudgetConfig tunes a cluster Budget. The zero value works; the pushback
// settings mean what egress.BudgetConfig's do.
type BudgetConfig struct {
	PushbackWindow int           // an operator's recent sessions its pushback share is taken over, default 20
	PushbackShare  float64       // share of them pushed back above which it is paused, default 0.5
	MaxPause       time.Duration // bound of the doubling pauses, default 30m
	// Poll is how often a Session waiting for a lease tries again when no
	// release was seen (a lease that expired gives no sign), default
	// LeaseTTL/10, at least 20ms.
	Poll time.Duration
}

// Budget is egress.Budget for a cluster: every worker's Budget on the same
// NATS server shares each operator's limits, so the operator sees no more
// sessions and RCPT per second from all workers together than its Limits
// allow, and a pause one worker's pushback starts holds for all.
//
// Sessions are leases: an operator with Limits.Sessions = K has K slots,
// keys s.OPERATOR.0 ... s.OPERATOR.K-1 of LeasesBucket, each created
// (compare-and-set: only if absent) by the budget that takes it, renewed
// every LeaseTTL/3 while held and deleted when given back. A holder that
// dies stops renewing, and its slot expires with the bucket's TTL. So at
// most K sessions are held at once, unless a holder is cut off from NATS
// for longer than LeaseTTL while its session goes on (counted in
// BudgetStats.LeasesLost).
//
// RCPT rates are token buckets (r.OPERATOR of RatesBucket) updated by
// compare-and-set; pushback outcomes and pauses are one shared record per
// operator (p.OPERATOR), watched by every budget. Waiting sessions are
// served in no particular order across workers.
//
// Budget is safe for concurrent use. Close it when done: its leases are
// given back.
type Budget struct {
	c     *Conn
	cfg   BudgetConfig
	id    string
	renew time.Duration

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	ops    map[string]*leaseOp
	pauses map[string]time.Time // operator -> paused until, from p.OPERATOR
	// quiet are the operators whose shared window, as last seen, is full of
	// sessions that were not pushed back, with no pause: one more such
	// outcome changes nothing, and is not written.
	quiet   map[string]bool
	waiting map[string]map[string]time.Time // operator -> other budgets waiting -> mark time

	lost atomic.Int64
}

// leaseOp is one operator's sessions held and wanted by this budget.
type leaseOp struct {
	lim       egress.Limits
	waiters   []chan lease // FIFO; a granted waiter finds its lease in its channel
	held      map[string]uint64
	acquiring bool // an acquirer goroutine runs for it
}

type lease struct {
	key string
}

// BudgetStats counts what a budget did.
type BudgetStats struct {
	Held       int   // leases held now
	LeasesLost int64 // leases found taken or expired at renewal: a holder cut off longer than LeaseTTL
}

// leaseValue is the value of a lease and of a waiter's mark.
type leaseValue struct {
	Budget string    `json:"budget"`
	At     time.Time `json:"at"`
}

var _ egress.Budget = (*Budget)(nil)

// NewBudget returns the cluster's budget for this process.
func (c *Conn) NewBudget(cfg BudgetConfig) (*Budget, error) {
	if cfg.PushbackWindow <= 0 {
		cfg.PushbackWindow = 20
	}
	if cfg.PushbackShare <= 0 || cfg.PushbackShare > 1 {
		cfg.PushbackShare = 0.5
	}
	if cfg.MaxPause <= 0 {
		cfg.MaxPause = 30 * time.Minute
	}
	ttl := c.cfg.LeaseTTL
	rctx, cancel := c.request(context.Background())
	if st, err := c.leases.Status(rctx); err == nil && st.TTL() > 0 {
		ttl = st.TTL() // the bucket's, which another process may have set
	}
	cancel()
	if cfg.Poll <= 0 {
		cfg.Poll = max(ttl/10, 20*time.Millisecond)
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Budget{
		c: c, cfg: cfg, id: idSafe(nuid.Next()), renew: ttl / 3,
		ctx: ctx, cancel: stop,
		ops: map[string]*leaseOp{}, pauses: map[string]time.Time{}, waiting: map[string]map[string]time.Time{},
		quiet: map[string]bool{},
	}
	pw, err := c.rates.Watch(ctx, "p.>")
	if err != nil {
		stop()
		return nil, errors.Join(ErrUnavailable, err)
	}
	ww, err := c.leases.Watch(ctx, "w.>")
	if err != nil {
		stop()
		return nil, errors.Join(ErrUnavailable, err)
	}
	b.wg.Add(3)
	go func() { defer b.wg.Done(); b.watch(pw, b.pauseChanged) }()
	go func() { defer b.wg.Done(); b.watch(ww, b.waiterChanged) }()
	go func() { defer b.wg.Done(); b.renewLoop() }()
	return b, nil
}

// Close gives back the leases held and stops the budget.
func (b *Budget) Close() error {
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	var keys []string
	for _, o := range b.ops {
		for k := range o.held {
			keys = append(keys, k)
		}
		o.held = map[string]uint64{}
	}
	b.mu.Unlock()
	ctx, cancel := b.c.request(context.Background())
	defer cancel()
	for _, k := range keys {
		_ = b.c.leases.Delete(ctx, k)
	}
	return nil
}

// Stats returns the budget's counters.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := BudgetStats{LeasesLost: b.lost.Load()}
	for _, o := range b.ops {
		st.Held += len(o.held)
	}
	return st
}

func (b *Budget) op(name string, lim egress.Limits) *leaseOp {
	o := b.ops[name]
	if o == nil {
		o = &leaseOp{held: map[string]uint64{}}
		b.ops[name] = o
	}
	o.lim = lim
	return o
}

// Session implements egress.Budget.
func (b *Budget) Session(ctx context.Context, operator string, lim egress.Limits) (func(), error) {
	if err := b.waitPause(ctx, operator); err != nil {
		return nil, err
	}
	ch := make(chan lease, 1)
	b.mu.Lock()
	o := b.op(operator, lim)
	o.waiters = append(o.waiters, ch)
	if !o.acquiring {
		o.acquiring = true
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.acquire(operator) }()
	}
	b.mu.Unlock()
	select {
	case l := <-ch:
		return b.releaser(operator, l), nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, w := range o.waiters {
			if w == ch {
				o.waiters = append(o.waiters[:i], o.waiters[i+1:]...)
				return nil, ctx.Err()
			}
		}
		// Granted meanwhile: give it back.
		l := <-ch
		rev := o.held[l.key]
		delete(o.held, l.key)
		go b.deleteLease(l.key, rev)
		return nil, ctx.Err()
	}
}

func (b *Budget) releaser(operator string, l lease) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			o := b.ops[operator]
			rev, ok := o.held[l.key]
			delete(o.held, l.key)
			b.mu.Unlock()
			if ok {
				b.deleteLease(l.key, rev)
			}
		})
	}
}

// deleteLease gives a slot back, unless someone else holds it now.
func (b *Budget) deleteLease(key string, rev uint64) {
	ctx, cancel := b.c.request(context.Background())
	defer cancel()
	_ = b.c.leases.Delete(ctx, key, jetstream.LastRevision(rev))
}

// acquire takes slots for operator's waiters, one at a time, until none
// wait; between tries it waits for a slot to be given back (a watch) or
// for Poll (a slot that expired gives no sign).
func (b *Budget) acquire(operator string) {
	var watcher jetstream.KeyWatcher
	defer func() {
		if watcher != nil {
			_ = watcher.Stop()
		}
		ctx, cancel := b.c.request(context.Background())
		defer cancel()
		_ = b.c.leases.Delete(ctx, waiterKey(operator, b.id))
	}()
	marked := false
	for {
		b.mu.Lock()
		o := b.ops[operator]
		if len(o.waiters) == 0 || b.ctx.Err() != nil {
			o.acquiring = false
			b.mu.Unlock()
			return
		}
		lim := o.lim
		b.mu.Unlock()
		key, rev, ok := b.tryTake(operator, max(lim.Sessions, 1))
		if ok {
			b.mu.Lock()
			if len(o.waiters) == 0 {
				b.mu.Unlock()
				b.deleteLease(key, rev)
				continue
			}
			o.held[key] = rev
			w := o.waiters[0]
			o.waiters = o.waiters[1:]
			w <- lease{key: key}
			b.mu.Unlock()
			continue
		}
		if !marked {
			b.mark(operator)
			marked = true
		}
		if watcher == nil {
			watcher, _ = b.c.leases.Watch(b.ctx, sessionKeys(operator), jetstream.UpdatesOnly())
		}
		var updates <-chan jetstream.KeyValueEntry
		if watcher != nil {
			updates = watcher.Updates()
		}
		t := time.NewTimer(b.cfg.Poll)
		select {
		case <-updates:
		case <-t.C:
		case <-b.ctx.Done():
		}
		t.Stop()
	}
}

// tryTake tries to create one of operator's k slots, starting at a random
// one so budgets do not all race for slot 0.
func (b *Budget) tryTake(operator string, k int) (string, uint64, bool) {
	val, _ := json.Marshal(leaseValue{Budget: b.id, At: b.c.cfg.Now()})
	start := rand.IntN(k)
	for i := range k {
		key := sessionKey(operator, (start+i)%k)
		ctx, cancel := b.c.request(b.ctx)
		rev, err := b.c.leases.Create(ctx, key, val)
		cancel()
		if err == nil {
			return key, rev, true
		}
		if b.ctx.Err() != nil {
			return "", 0, false
		}
	}
	return "", 0, false
}

// mark tells other budgets that this one waits for operator's sessions.
func (b *Budget) mark(operator string) {
	val, _ := json.Marshal(leaseValue{Budget: b.id, At: b.c.cfg.Now()})
	ctx, cancel := b.c.request(b.ctx)
	defer cancel()
	_, _ = b.c.leases.Put(ctx, waiterKey(operator, b.id), val)
}

// renewLoop renews the leases held and the waiting marks, every LeaseTTL/3.
func (b *Budget) renewLoop() {
	t := time.NewTicker(max(b.renew, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		type heldLease struct {
			op, key string
			rev     uint64
		}
		var held []heldLease
		var waiting []string
		b.mu.Lock()
		for name, o := range b.ops {
			for k, rev := range o.held {
				held = append(held, heldLease{name, k, rev})
			}
			if len(o.waiters) > 0 {
				waiting = append(waiting, name)
			}
		}
		b.mu.Unlock()
		val, _ := json.Marshal(leaseValue{Budget: b.id, At: b.c.cfg.Now()})
		for _, h := range held {
			ctx, cancel := b.c.request(b.ctx)
			rev, err := b.c.leases.Update(ctx, h.key, val, h.rev)
			cancel()
			b.mu.Lock()
			o := b.ops[h.op]
			if cur, still := o.held[h.key]; still && cur == h.rev {
				if err == nil {
					o.held[h.key] = rev
				} else if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
					// Expired and maybe taken: the session goes on, but
					// the slot is no longer ours to give back.
					delete(o.held, h.key)
					b.lost.Add(1)
				}
			}
			b.mu.Unlock()
		}
		for _, name := range waiting {
			b.mark(name)
		}
	}
}

// Contended implements egress.Budget: other sessions of this process, or
// another budget of the cluster, wait for one of operator's sessions.
func (b *Budget) Contended(operator string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.ops[operator]; o != nil && len(o.waiters) > 0 {
		return true
	}
	now := b.c.cfg.Now()
	for id, at := range b.waiting[operator] {
		if id != b.id && now.Sub(at) < 3*b.renew+b.renew/2 {
			return true
		}
	}
	return false
}

// watch hands every change w sees to changed until the budget closes.
func (b *Budget) watch(w jetstream.KeyWatcher, changed func(jetstream.KeyValueEntry)) {
	defer w.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil { // nil: the watcher has caught up
				changed(e)
			}
		}
	}
}

// waiterChanged keeps b.waiting as the bucket's waiter keys say.
func (b *Budget) waiterChanged(e jetstream.KeyValueEntry) {
	op, id, ok := splitWaiterKey(e.Key())
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.waiting[op]
	if m == nil {
		m = map[string]time.Time{}
		b.waiting[op] = m
	}
	var v leaseValue
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &v) != nil {
		delete(m, id)
	} else {
		m[id] = v.At
	}
}

// splitWaiterKey reads w.OPERATOR.BUDGET; OPERATOR is a key token (it may
// hold dots), BUDGET is the last token.
func splitWaiterKey(key string) (op, id string, ok bool) {
	if len(key) < 4 || key[:2] != "w." {
		return "", "", false
	}
	rest := key[2:]
	for i := len(rest) - 1; i > 0; i-- {
		if rest[i] == '.' {
			return tokenName(rest[:i]), rest[i+1:], true
		}
	}
	return "", "", false
}

// Rcpt implements egress.Budget with a token bucket shared by the
// cluster: n tokens are taken at once (at most Burst), going into debt if
// need be, and the caller waits until the debt is paid at RcptPerSecond.
func (b *Budget) Rcpt(ctx context.Context, operator string, lim egress.Limits, n int) error {
	if lim.RcptPerSecond <= 0 || n <= 0 {
		return ctx.Err()
	}
	burst := float64(max(lim.Burst, 1))
	take := min(float64(n), burst)
	var wait time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var st tokenState
		rev, err := b.c.getJSON(ctx, b.c.rates, rcptKey(operator), &st)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			if !sleepCtx(ctx, b.cfg.Poll) {
				return ctx.Err()
			}
			continue
		}
		now := b.c.cfg.Now()
		if rev == 0 {
			st = tokenState{Tokens: burst, At: now}
		}
		tokens := st.tokensAt(now, lim.RcptPerSecond, burst) - take
		if tokens < 0 {
			wait = time.Duration(-tokens / lim.RcptPerSecond * float64(time.Second))
		}
		if b.casTokens(ctx, operator, rev, tokenState{Tokens: tokens, At: now}) {
			break
		}
		wait = 0
	}
	if wait <= 0 {
		return nil
	}
	if sleepCtx(ctx, wait) {
		return nil
	}
	// Not sent after all: the tokens go back, if the bucket lets us.
	for range 3 {
		var st tokenState
		rev, err := b.c.getJSON(context.WithoutCancel(ctx), b.c.rates, rcptKey(operator), &st)
		if err != nil {
			break
		}
		now := b.c.cfg.Now()
		st = tokenState{Tokens: min(st.tokensAt(now, lim.RcptPerSecond, burst)+take, burst), At: now}
		if b.casTokens(context.WithoutCancel(ctx), operator, rev, st) {
			break
		}
	}
	return ctx.Err()
}

// tokenState is an operator's RCPT token bucket: Tokens at time At
// (negative: debt being waited out).
type tokenState struct {
	Tokens float64   `json:"tokens"`
	At     time.Time `json:"at"`
}

func (s tokenState) tokensAt(now time.Time, rate, burst float64) float64 {
	elapsed := now.Sub(s.At).Seconds()
	if elapsed < 0 {
		elapsed = 0 // another machine's clock ahead of ours: no refill yet
	}
	return min(s.Tokens+elapsed*rate, burst)
}

func (b *Budget) casTokens(ctx context.Context, operator string, rev uint64, st tokenState) bool {
	data, _ := json.Marshal(st)
	rctx, cancel := b.c.request(ctx)
	defer cancel()
	var err error
	if rev == 0 {
		_, err = b.c.rates.Create(rctx, rcptKey(operator), data)
	} else {
		_, err = b.c.rates.Update(rctx, rcptKey(operator), data, rev)
	}
	return err == nil
}

// pushbackState is an operator's recent session outcomes and pause,
// shared by the cluster (p.OPERATOR); the rules are egress.LocalBudget's.
type pushbackState struct {
	Outcomes []bool    `json:"outcomes"` // ring of recent sessions: pushed back or not
	Next     int       `json:"next"`
	Pushed   int       `json:"pushed"`
	Pauses   int       `json:"pauses"` // pauses in a row: the next is Backoff << Pauses
	Paused   time.Time `json:"paused"` // sessions wait until then
}

// Outcome implements egress.Budget: the outcome joins the operator's
// shared window, and a pause decided from it holds for every worker.
func (b *Budget) Outcome(operator string, lim egress.Limits, pushedBack bool) {
	if !pushedBack {
		b.mu.Lock()
		quiet := b.quiet[operator]
		b.mu.Unlock()
		if quiet {
			return
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.c.cfg.RequestTimeout)
	defer cancel()
	for ctx.Err() == nil {
		var st pushbackState
		rev, err := b.c.getJSON(ctx, b.c.rates, pushbackKey(operator), &st)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		st = b.applyOutcome(st, lim, pushedBack, b.c.cfg.Now())
		data, _ := json.Marshal(st)
		if rev == 0 {
			_, err = b.c.rates.Create(ctx, pushbackKey(operator), data)
		} else {
			_, err = b.c.rates.Update(ctx, pushbackKey(operator), data, rev)
		}
		if err == nil {
			b.mu.Lock()
			b.pauses[operator] = st.Paused
			b.quiet[operator] = b.isQuiet(st)
			b.mu.Unlock()
			return
		}
	}
}

// isQuiet reports whether st is a full window of sessions none of which
// was pushed back, with no pause.
func (b *Budget) isQuiet(st pushbackState) bool {
	return st.Pushed == 0 && st.Pauses == 0 && len(st.Outcomes) >= b.cfg.PushbackWindow && !b.c.cfg.Now().Before(st.Paused)
}

func (b *Budget) applyOutcome(st pushbackState, lim egress.Limits, pushedBack bool, now time.Time) pushbackState {
	w := b.cfg.PushbackWindow
	if len(st.Outcomes) > w {
		st.Outcomes, st.Next, st.Pushed = st.Outcomes[:0], 0, 0
	}
	if len(st.Outcomes) < w {
		st.Outcomes = append(st.Outcomes, pushedBack)
	} else {
		if st.Outcomes[st.Next%w] {
			st.Pushed--
		}
		st.Outcomes[st.Next%w] = pushedBack
		st.Next = (st.Next + 1) % w
	}
	if pushedBack {
		st.Pushed++
	}
	if len(st.Outcomes)*2 < w || float64(st.Pushed) <= b.cfg.PushbackShare*float64(len(st.Outcomes)) {
		if !pushedBack && !now.Before(st.Paused) {
			st.Pauses = 0
		}
		return st
	}
	if now.Before(st.Paused) {
		return st
	}
	backoff := lim.Backoff
	if backoff <= 0 {
		backoff = time.Minute
	}
	st.Paused = now.Add(min(backoff<<st.Pauses, b.cfg.MaxPause))
	st.Pauses = min(st.Pauses+1, 20)
	st.Outcomes, st.Next, st.Pushed = st.Outcomes[:0], 0, 0
	return st
}

// PausedUntil implements egress.Budget, from the shared record as last
// seen (a watch keeps it current).
func (b *Budget) PausedUntil(operator string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until := b.pauses[operator]; b.c.cfg.Now().Before(until) {
		return until
	}
	return time.Time{}
}

func (b *Budget) waitPause(ctx context.Context, operator string) error {
	for {
		until := b.PausedUntil(operator)
		if until.IsZero() {
			return nil
		}
		d := until.Sub(b.c.cfg.Now())
		// Waken now and then: another worker may have changed the pause.
		if !sleepCtx(ctx, min(d, time.Second)) {
			return ctx.Err()
		}
	}
}

// pauseChanged keeps b.pauses and b.quiet as the bucket's pushback keys say.
func (b *Budget) pauseChanged(e jetstream.KeyValueEntry) {
	if len(e.Key()) < 3 {
		return
	}
	op := tokenName(e.Key()[2:])
	var st pushbackState
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) == nil {
		b.pauses[op] = st.Paused
		b.quiet[op] = b.isQuiet(st)
	} else {
		delete(b.pauses, op)
		delete(b.quiet, op)
	}
}
