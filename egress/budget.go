package egress

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// Limits are one operator's politeness limits (see the operator package's
// table): what all of its hosts together may see from us.
type Limits struct {
	Sessions      int           // SMTP sessions open at once; at least 1
	RcptPerSecond float64       // RCPT TO per second; 0 = no limit
	Burst         int           // RCPT TO that may go out at once (a transaction's); 0 = 1
	Backoff       time.Duration // first pause after it pushed back too often; 0 = 1m
}

// Budget hands out each operator's sessions and RCPT rate, so that however
// many of its hosts, egresses and (in a cluster) workers ask, the operator
// sees no more than its Limits. A run asks it before every session and every
// RCPT batch, and tells it how each session went.
//
// LocalBudget keeps the budget of one process; the cluster package keeps
// one shared by every worker.
type Budget interface {
	// Session blocks until one more session to operator's hosts may open
	// (and any pause of operator is over), and returns the function that
	// gives the session back. It fails only when ctx ends.
	Session(ctx context.Context, operator string, lim Limits) (release func(), err error)
	// Rcpt blocks until n more RCPT TO may be sent to operator's hosts. It
	// fails only when ctx ends; a wait that would outlast ctx's deadline is
	// still waited for, until ctx ends.
	Rcpt(ctx context.Context, operator string, lim Limits, n int) error
	// Contended reports whether others are waiting for a session of
	// operator: an idle session should then give its place up.
	Contended(operator string) bool
	// Outcome records how one session to operator went: pushed back (421, a
	// temporary refusal of MAIL, "slow down") or not. When pushback is more
	// than the budget's share of the recent sessions, every session to
	// operator waits for a pause, which doubles each time it recurs.
	Outcome(operator string, lim Limits, pushedBack bool)
	// PausedUntil reports until when sessions to operator must wait; the
	// zero time when they need not.
	PausedUntil(operator string) time.Time
}

// BudgetConfig configures a LocalBudget. The zero value is usable.
type BudgetConfig struct {
	// PushbackWindow is how many of an operator's most recent sessions its
	// pushback share is taken over, default 20.
	PushbackWindow int
	// PushbackShare is the share of those sessions pushed back (0 < share
	// <= 1) above which the operator is paused, default 0.5. At least half
	// the window must have been seen.
	PushbackShare float64
	// MaxPause bounds the doubling pauses, default 30m.
	MaxPause time.Duration
	// Clock drives pauses; nil = the real clock. RCPT rates use real time.
	Clock clockwork.Clock
}

func (c BudgetConfig) withDefaults() BudgetConfig {
	if c.PushbackWindow <= 0 {
		c.PushbackWindow = 20
	}
	if c.PushbackShare <= 0 || c.PushbackShare > 1 {
		c.PushbackShare = 0.5
	}
	if c.MaxPause <= 0 {
		c.MaxPause = 30 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return c
}

// LocalBudget is the Budget of one process. It is safe for concurrent use.
//
// Invariant: per operator, inUse <= its Sessions whenever a session is
// granted; waiters are granted in the order they came; outcomes holds the
// last PushbackWindow outcomes, pushed counting those pushed back.
type LocalBudget struct {
	cfg BudgetConfig

	mu  sync.Mutex
	ops map[string]*operatorBudget
}

type operatorBudget struct {
	inUse    int
	waiters  []chan struct{} // FIFO; a closed channel has been granted a session
	limiter  *rate.Limiter
	rate     float64
	outcomes []bool // ring of recent sessions: pushed back or not
	next     int
	pushed   int
	pauses   int // pauses in a row: the next one is Backoff << pauses
	paused   time.Time
}

// NewLocalBudget returns an empty budget.
func NewLocalBudget(cfg BudgetConfig) *LocalBudget {
	return &LocalBudget{cfg: cfg.withDefaults(), ops: map[string]*operatorBudget{}}
}

func (b *LocalBudget) op(name string, lim Limits) *operatorBudget {
	o := b.ops[name]
	if o == nil {
		o = &operatorBudget{outcomes: make([]bool, 0, b.cfg.PushbackWindow)}
		b.ops[name] = o
	}
	if lim.RcptPerSecond > 0 && (o.limiter == nil || o.rate != lim.RcptPerSecond) {
		o.limiter = rate.NewLimiter(rate.Limit(lim.RcptPerSecond), max(lim.Burst, 1))
		o.rate = lim.RcptPerSecond
	}
	return o
}

// Session implements Budget.
func (b *LocalBudget) Session(ctx context.Context, operator string, lim Limits) (func(), error) {
	if err := b.waitPause(ctx, operator, lim); err != nil {
		return nil, err
	}
	b.mu.Lock()
	o := b.op(operator, lim)
	if o.inUse < max(lim.Sessions, 1) && len(o.waiters) == 0 {
		o.inUse++
		b.mu.Unlock()
		return b.afterPause(ctx, operator, lim)
	}
	ch := make(chan struct{})
	o.waiters = append(o.waiters, ch)
	b.mu.Unlock()
	select {
	case <-ch:
		return b.afterPause(ctx, operator, lim)
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-ch: // granted meanwhile: hand it on
			b.handOn(o, lim)
		default:
			for i, w := range o.waiters {
				if w == ch {
					o.waiters = append(o.waiters[:i], o.waiters[i+1:]...)
					break
				}
			}
		}
		return nil, ctx.Err()
	}
}

// afterPause hands out a session just taken, once any pause of operator is
// over: a pause that began while the session was waiting in the queue (or
// while another session was being pushed back) holds it too. The session is
// kept meanwhile, so that the queue's order stands; when ctx ends it is
// handed on.
func (b *LocalBudget) afterPause(ctx context.Context, operator string, lim Limits) (func(), error) {
	release := b.releaser(operator, lim)
	if err := b.waitPause(ctx, operator, lim); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

func (b *LocalBudget) releaser(operator string, lim Limits) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.handOn(b.ops[operator], lim)
		})
	}
}

// handOn gives a session that ends to the first waiter, or back to the pool.
func (b *LocalBudget) handOn(o *operatorBudget, lim Limits) {
	if len(o.waiters) > 0 && o.inUse <= max(lim.Sessions, 1) {
		close(o.waiters[0])
		o.waiters = o.waiters[1:]
		return
	}
	o.inUse--
}

// waitPause waits while operator is paused.
func (b *LocalBudget) waitPause(ctx context.Context, operator string, lim Limits) error {
	for {
		until := b.PausedUntil(operator)
		d := until.Sub(b.cfg.Clock.Now())
		if until.IsZero() || d <= 0 {
			return nil
		}
		t := b.cfg.Clock.NewTimer(d)
		select {
		case <-t.Chan():
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// Rcpt implements Budget.
func (b *LocalBudget) Rcpt(ctx context.Context, operator string, lim Limits, n int) error {
	if lim.RcptPerSecond <= 0 || n <= 0 {
		return ctx.Err()
	}
	b.mu.Lock()
	lr := b.op(operator, lim).limiter
	b.mu.Unlock()
	r := lr.ReserveN(time.Now(), min(n, lr.Burst()))
	if !r.OK() {
		return ctx.Err()
	}
	d := r.Delay()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// Contended implements Budget.
func (b *LocalBudget) Contended(operator string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.ops[operator]
	return o != nil && len(o.waiters) > 0
}

// Outcome implements Budget.
func (b *LocalBudget) Outcome(operator string, lim Limits, pushedBack bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.op(operator, lim)
	w := b.cfg.PushbackWindow
	if len(o.outcomes) < w {
		o.outcomes = append(o.outcomes, pushedBack)
	} else {
		if o.outcomes[o.next] {
			o.pushed--
		}
		o.outcomes[o.next] = pushedBack
		o.next = (o.next + 1) % w
	}
	if pushedBack {
		o.pushed++
	}
	now := b.cfg.Clock.Now()
	if len(o.outcomes)*2 < w || float64(o.pushed) <= b.cfg.PushbackShare*float64(len(o.outcomes)) {
		if !pushedBack && !now.Before(o.paused) {
			o.pauses = 0 // it answers again: the next pause starts short
		}
		return
	}
	if now.Before(o.paused) {
		return // already paused
	}
	backoff := lim.Backoff
	if backoff <= 0 {
		backoff = time.Minute
	}
	o.paused = now.Add(min(backoff<<o.pauses, b.cfg.MaxPause))
	o.pauses = min(o.pauses+1, 20)
	// The pause is judged on the sessions after it.
	o.outcomes, o.next, o.pushed = o.outcomes[:0], 0, 0
}

// PausedUntil implements Budget.
func (b *LocalBudget) PausedUntil(operator string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.ops[operator]; o != nil && b.cfg.Clock.Now().Before(o.paused) {
		return o.paused
	}
	return time.Time{}
}
