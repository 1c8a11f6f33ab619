package egress

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// However many ask at once, no more than Sessions hold a session of one
// operator, other operators are not held up, and waiters are served in the
// order they came.
func TestBudgetSessions(t *testing.T) {
	b := NewLocalBudget(BudgetConfig{})
	lim := Limits{Sessions: 3}
	var open, peak atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := b.Session(context.Background(), "big", lim)
			if err != nil {
				t.Error(err)
				return
			}
			n := open.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			// Another operator is not held up by this one.
			other, err := b.Session(context.Background(), "small", Limits{Sessions: 100})
			if err != nil {
				t.Error(err)
			}
			other()
			open.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 1 {
		t.Errorf("peak %d sessions, want at most 3", p)
	}

	// FIFO: with the only session taken, waiters get it in order.
	hold, _ := b.Session(context.Background(), "fifo", Limits{Sessions: 1})
	got := make(chan int, 3)
	for i := range 3 {
		started := make(chan struct{})
		go func() {
			close(started)
			release, err := b.Session(context.Background(), "fifo", Limits{Sessions: 1})
			if err != nil {
				t.Error(err)
				return
			}
			got <- i
			release()
		}()
		<-started
		waitFor(t, func() bool { return b.waiting("fifo") == i+1 })
	}
	if !b.Contended("fifo") || b.Contended("big") {
		t.Error("Contended")
	}
	hold()
	for i := range 3 {
		if g := <-got; g != i {
			t.Errorf("waiter %d served %d-th", g, i)
		}
	}
}

// A waiter whose context ends leaves the queue, and a session granted to
// it at that moment is handed on, not lost.
func TestBudgetSessionCancelled(t *testing.T) {
	b := NewLocalBudget(BudgetConfig{})
	lim := Limits{Sessions: 1}
	hold, _ := b.Session(context.Background(), "op", lim)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := b.Session(ctx, "op", lim)
		done <- err
	}()
	waitFor(t, func() bool { return b.waiting("op") == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	hold()
	// The session is free again.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	release, err := b.Session(ctx2, "op", lim)
	if err != nil {
		t.Fatalf("the session was lost: %v", err)
	}
	release()
	release() // twice is harmless
}

// Pushback above the share pauses every session of the operator, for a time
// that doubles when it recurs and starts short again once it answers.
func TestBudgetPushbackPauses(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := NewLocalBudget(BudgetConfig{PushbackWindow: 4, PushbackShare: 0.5, MaxPause: 10 * time.Minute, Clock: clock})
	lim := Limits{Sessions: 2, Backoff: time.Minute}
	b.Outcome("op", lim, true)
	b.Outcome("op", lim, false)
	if !b.PausedUntil("op").IsZero() {
		t.Fatal("paused at half")
	}
	b.Outcome("op", lim, true) // 2 of 3 pushed back
	if got := b.PausedUntil("op").Sub(clock.Now()); got != time.Minute {
		t.Fatalf("paused for %v, want 1m", got)
	}
	if !b.PausedUntil("other").IsZero() {
		t.Error("another operator is paused")
	}

	// A session waits for the pause to end.
	granted := make(chan struct{})
	go func() {
		release, err := b.Session(context.Background(), "op", lim)
		if err == nil {
			release()
		}
		close(granted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-granted:
		t.Fatal("a session was granted during the pause")
	default:
	}
	clock.Advance(time.Minute)
	<-granted

	// Pushed back again: twice as long.
	for range 2 {
		b.Outcome("op", lim, true)
	}
	if got := b.PausedUntil("op").Sub(clock.Now()); got != 2*time.Minute {
		t.Errorf("second pause %v, want 2m", got)
	}
	clock.Advance(2 * time.Minute)
	b.Outcome("op", lim, false) // it answers: the next pause starts short
	for range 3 {
		b.Outcome("op", lim, true)
	}
	if got := b.PausedUntil("op").Sub(clock.Now()); got != time.Minute {
		t.Errorf("pause after recovery %v, want 1m", got)
	}
}

// RCPT tokens come at the operator's rate; a wait that outlasts the context
// is waited until the context ends, not refused at once (which made workers
// reconnect in a loop).
func TestBudgetRcpt(t *testing.T) {
	b := NewLocalBudget(BudgetConfig{})
	lim := Limits{RcptPerSecond: 1, Burst: 5}
	if err := b.Rcpt(context.Background(), "op", lim, 5); err != nil {
		t.Fatal(err) // the burst is free
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := b.Rcpt(ctx, "op", lim, 5) // 5 s away
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if time.Now().Before(deadline) {
		t.Error("gave up before the deadline")
	}
	if err := b.Rcpt(context.Background(), "free", Limits{}, 1000); err != nil {
		t.Errorf("no rate limit: %v", err)
	}
}

func (b *LocalBudget) waiting(operator string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.ops[operator]; o != nil {
		return len(o.waiters)
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A session handed to a waiter after its operator was paused waits for the
// pause to end before it is granted: the waiter queued before the pause,
// but the pause is about every session that opens after it began.
func TestBudgetPauseHoldsQueuedSessions(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := NewLocalBudget(BudgetConfig{PushbackWindow: 2, Clock: clock})
	lim := Limits{Sessions: 1, Backoff: time.Minute}
	hold, err := b.Session(context.Background(), "op", lim)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan func(), 1)
	go func() {
		release, err := b.Session(context.Background(), "op", lim)
		if err != nil {
			t.Error(err)
			return
		}
		granted <- release
	}()
	waitFor(t, func() bool { return b.waiting("op") == 1 })
	b.Outcome("op", lim, true) // the held session was pushed back: paused
	if b.PausedUntil("op").IsZero() {
		t.Fatal("not paused")
	}
	hold() // hands the session to the waiter, during the pause

	waiting := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { waiting <- clock.BlockUntilContext(ctx, 1) }()
	select {
	case release := <-granted:
		release()
		t.Fatal("a session queued before the pause was granted during it")
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the waiter neither got the session nor waits for the pause: %v", err)
		}
	}
	clock.Advance(time.Minute - time.Millisecond)
	clock.BlockUntilContext(ctx, 1)
	select {
	case <-granted:
		t.Fatal("granted before the pause ended")
	default:
	}
	clock.Advance(time.Millisecond)
	select {
	case release := <-granted:
		release()
	case <-ctx.Done():
		t.Fatal("not granted after the pause")
	}
	// The session went round exactly once: one is free now.
	if release, err := b.Session(ctx, "op", lim); err != nil {
		t.Fatalf("the session was lost: %v", err)
	} else {
		release()
	}
}

// A waiter whose context ends while it waits out a pause after being
// handed a session gives that session back.
func TestBudgetPausedWaiterCancelled(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := NewLocalBudget(BudgetConfig{PushbackWindow: 2, Clock: clock})
	lim := Limits{Sessions: 1, Backoff: time.Minute}
	hold, _ := b.Session(context.Background(), "op", lim)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Session(ctx, "op", lim)
		done <- err
	}()
	waitFor(t, func() bool { return b.waiting("op") == 1 })
	b.Outcome("op", lim, true)
	hold()
	bctx, bcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer bcancel()
	if err := clock.BlockUntilContext(bctx, 1); err != nil {
		t.Fatalf("the waiter does not wait for the pause: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	clock.Advance(time.Minute)
	release, err := b.Session(bctx, "op", lim)
	if err != nil {
		t.Fatalf("the session was lost: %v", err)
	}
	release()
}
