package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/egress"
)

func newBudget(t *testing.T, c *Conn) *Budget {
	t.Helper()
	b, err := c.NewBudget(BudgetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// With K sessions for an operator and 1, 2 or 4 workers (each its own
// client and Budget on one server), taking and giving back sessions as
// fast as they can, never more than K are held at once: counted by the
// holders, and on the server as the slots that exist in the bucket.
func TestBudgetSessionsClusterWide(t *testing.T) {
	ts := startJetStream(t)
	const k = 3
	lim := egress.Limits{Sessions: k}
	for _, workers := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d-workers", workers), func(t *testing.T) {
			op := fmt.Sprintf("op%d", workers)
			var held, most, taken atomic.Int64
			budgets := make([]*Budget, workers)
			for i := range budgets {
				budgets[i] = newBudget(t, connect(t, testConfig(ts.URL())))
			}
			observer := connect(t, testConfig(ts.URL()))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for _, b := range budgets {
				for range 4 { // each worker wants more sessions than K
					wg.Go(func() {
						for range 5 {
							release, err := b.Session(ctx, op, lim)
							if err != nil {
								t.Error(err)
								return
							}
							n := held.Add(1)
							for {
								m := most.Load()
								if n <= m || most.CompareAndSwap(m, n) {
									break
								}
							}
							// While held, the server has at most K slots.
							keys, err := observer.leases.ListKeysFiltered(ctx, sessionKeys(op))
							if err == nil {
								slots := 0
								for range keys.Keys() {
									slots++
								}
								if slots > k {
									t.Errorf("%d session slots on the server, budget %d", slots, k)
								}
							}
							taken.Add(1)
							held.Add(-1)
							release()
						}
					})
				}
			}
			wg.Wait()
			if most.Load() > k {
				t.Errorf("%d sessions held at once, budget %d", most.Load(), k)
			}
			if want := int64(workers * 4 * 5); taken.Load() != want {
				t.Errorf("%d sessions taken, want %d", taken.Load(), want)
			}
			if workers > 1 && most.Load() < 2 {
				t.Errorf("never more than %d session at once: the budget serialises", most.Load())
			}
		})
	}
}

// A holder that dies (its connection gone, no release) stops renewing its
// lease; the lease expires and a waiter of another worker gets it.
func TestBudgetDeadHolderLeaseExpires(t *testing.T) {
	ts := startJetStream(t)
	lim := egress.Limits{Sessions: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doomedConn := connect(t, testConfig(ts.URL()))
	doomed := newBudget(t, doomedConn)
	if _, err := doomed.Session(ctx, "solo", lim); err != nil {
		t.Fatal(err)
	}
	other := newBudget(t, connect(t, testConfig(ts.URL())))
	got := make(chan error, 1)
	go func() {
		release, err := other.Session(ctx, "solo", lim)
		if err == nil {
			release()
		}
		got <- err
	}()
	// While the holder lives and renews (past several lease TTLs' worth of
	// renewals), the other waits and sees the operator contended from its
	// side too.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !doomed.Contended("solo") {
			return fmt.Errorf("holder does not see the other budget waiting")
		}
		return nil
	})
	select {
	case err := <-got:
		t.Fatalf("second session granted while the first is held: %v", err)
	default:
	}
	doomed.cancel() // stops renewing, as a killed process would
	doomedConn.nc.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the dead holder's lease never expired")
	}
}

// A session wait ends with its context, and a lease granted to nobody is
// given back.
func TestBudgetSessionContext(t *testing.T) {
	ts := startJetStream(t)
	b := newBudget(t, connect(t, testConfig(ts.URL())))
	lim := egress.Limits{Sessions: 1}
	release, err := b.Session(context.Background(), "op", lim)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Session(ctx, "op", lim); err == nil {
		t.Fatal("Session granted past the budget with a cancelled context")
	}
	release()
	release() // twice is harmless
	r2, err := b.Session(context.Background(), "op", lim)
	if err != nil {
		t.Fatal(err)
	}
	r2()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := b.Stats(); st.Held != 0 {
			return fmt.Errorf("%d leases held after release", st.Held)
		}
		return nil
	})
}

// RCPT tokens are shared: with a clock that stands still, two workers
// together get Burst tokens at once and then wait; as the clock moves the
// debt is paid at the rate. The wait is asserted through ctx, not time.
func TestBudgetRcptShared(t *testing.T) {
	ts := startJetStream(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return time.Unix(0, now.Load()) }
	a := newBudget(t, connect(t, cfg))
	b := newBudget(t, connect(t, cfg))
	lim := egress.Limits{RcptPerSecond: 0.001, Burst: 10} // a token every 1000s
	ctx := context.Background()
	if err := a.Rcpt(ctx, "rate", lim, 6); err != nil {
		t.Fatal(err)
	}
	if err := b.Rcpt(ctx, "rate", lim, 4); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty: one more must wait, here until ctx ends.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := b.Rcpt(short, "rate", lim, 1); err == nil {
		t.Fatal("an 11th RCPT went out at once with a burst of 10 between two workers")
	}
	// The cancelled wait gave its token back, and 5000s later 5 are there.
	now.Add(int64(5000 * time.Second))
	if err := a.Rcpt(ctx, "rate", lim, 5); err != nil {
		t.Fatal(err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := a.Rcpt(short2, "rate", lim, 1); err == nil {
		t.Fatal("a 6th RCPT after 5 tokens' worth of time went out at once")
	}
}

// Pushback seen by one worker pauses the operator for every worker.
func TestBudgetPauseShared(t *testing.T) {
	ts := startJetStream(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return time.Unix(0, now.Load()) }
	a := newBudget(t, connect(t, cfg))
	b := newBudget(t, connect(t, cfg))
	lim := egress.Limits{Sessions: 2, Backoff: time.Minute}
	for i := range 20 {
		w := a
		if i%2 == 1 {
			w = b // the window is the cluster's: each sees half
		}
		w.Outcome("pushy", lim, true)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if b.PausedUntil("pushy").IsZero() || a.PausedUntil("pushy").IsZero() {
			return fmt.Errorf("not paused on both: a %v b %v", a.PausedUntil("pushy"), b.PausedUntil("pushy"))
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := b.Session(ctx, "pushy", lim); err == nil {
		t.Fatal("a session opened during the pause")
	}
	now.Add(int64(2 * time.Minute))
	if !b.PausedUntil("pushy").IsZero() {
		t.Fatal("still paused after the pause")
	}
	release, err := b.Session(context.Background(), "pushy", lim)
	if err != nil {
		t.Fatal(err)
	}
	release()
}
