package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many workers want a domain's accept-all answer at once: one asks, the
// others get its answer.
func TestCatchAllOncePerDomain(t *testing.T) {
	ts := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var asked atomic.Int64
	gate := make(chan struct{})
	var wg sync.WaitGroup
	answers := make([]*bool, 6)
	for i := range answers {
		share := connect(t, testConfig(ts.URL())).CatchAll()
		wg.Go(func() {
			a, err := checkCatchAllOnce(ctx, share, "accept-all.example", func(context.Context) (*bool, error) {
				asked.Add(1)
				<-gate // the others come while this one asks
				yes := true
				return &yes, nil
			})
			if err != nil {
				t.Error(err)
			}
			answers[i] = a
		})
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if asked.Load() == 0 {
			return context.DeadlineExceeded
		}
		return nil
	})
	close(gate)
	wg.Wait()
	if asked.Load() != 1 {
		t.Errorf("asked %d times, want once", asked.Load())
	}
	for i, a := range answers {
		if a == nil || !*a {
			t.Errorf("worker %d got %v, want true", i, a)
		}
	}
}

// An abandoned claim (no answer found) lets the next worker ask; a claim
// whose worker died goes stale and is taken over.
func TestCatchAllAbandonAndStale(t *testing.T) {
	ts := startJetStream(t)
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return time.Unix(0, now.Load()) }
	a := connect(t, cfg).CatchAll()
	b := connect(t, cfg).CatchAll()

	if _, mine, err := a.Claim(ctx, "d.example"); err != nil || !mine {
		t.Fatalf("first claim: mine %v, %v", mine, err)
	}
	if _, mine, err := b.Claim(ctx, "d.example"); err != nil || mine {
		t.Fatalf("second claim while held: mine %v, %v", mine, err)
	}
	waited := make(chan *bool, 1)
	go func() {
		ans, err := b.Wait(ctx, "d.example")
		if err != nil {
			t.Error(err)
		}
		waited <- ans
	}()
	if err := a.Abandon(ctx, "d.example"); err != nil {
		t.Fatal(err)
	}
	if ans := <-waited; ans != nil {
		t.Fatalf("Wait after Abandon: %v, want nil", *ans)
	}
	if _, mine, err := b.Claim(ctx, "d.example"); err != nil || !mine {
		t.Fatalf("claim after abandon: mine %v, %v", mine, err)
	}
	// b dies holding the claim (its renewals stop); after ClaimTTL a takes
	// it over.
	b.unhold("d.example")
	if _, mine, _ := a.Claim(ctx, "d.example"); mine {
		t.Fatal("claim taken over while fresh")
	}
	now.Add(int64(3 * time.Second))
	if _, mine, err := a.Claim(ctx, "d.example"); err != nil || !mine {
		t.Fatalf("stale claim not taken over: mine %v, %v", mine, err)
	}
	if err := a.Put(ctx, "d.example", false); err != nil {
		t.Fatal(err)
	}
	ans, mine, err := b.Claim(ctx, "d.example")
	if err != nil || mine || ans == nil || *ans {
		t.Fatalf("after Put: answer %v mine %v err %v, want false", ans, mine, err)
	}
	// Names that are not key tokens are encoded, and answered all the same.
	if err := a.Put(ctx, "bücher..example", true); err != nil {
		t.Fatal(err)
	}
	if ans, _, err := b.Claim(ctx, "bücher..example"); err != nil || ans == nil || !*ans {
		t.Fatalf("encoded domain: %v %v", ans, err)
	}
}

// Two callers of one process (one CatchAll) claim the same domain: the
// second waits for the first's answer, as a worker elsewhere would.
func TestCatchAllOnceWithinAProcess(t *testing.T) {
	ts := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	share := connect(t, testConfig(ts.URL())).CatchAll()
	if _, mine, err := share.Claim(ctx, "d.example"); err != nil || !mine {
		t.Fatalf("first claim: mine %v, %v", mine, err)
	}
	if _, mine, err := share.Claim(ctx, "d.example"); err != nil || mine {
		t.Fatalf("second claim of the same process: mine %v, %v; want another's claim", mine, err)
	}
	waited := make(chan *bool, 1)
	go func() {
		ans, err := share.Wait(ctx, "d.example")
		if err != nil {
			t.Error(err)
		}
		waited <- ans
	}()
	if err := share.Put(ctx, "d.example", true); err != nil {
		t.Fatal(err)
	}
	if ans := <-waited; ans == nil || !*ans {
		t.Fatalf("Wait: %v, want true", ans)
	}
	// After an Abandon the next caller of the process claims again.
	if _, mine, _ := share.Claim(ctx, "e.example"); !mine {
		t.Fatal("claim of e.example")
	}
	if err := share.Abandon(ctx, "e.example"); err != nil {
		t.Fatal(err)
	}
	if _, mine, err := share.Claim(ctx, "e.example"); err != nil || !mine {
		t.Fatalf("claim after Abandon: mine %v, %v", mine, err)
	}
}

// A claimant whose check takes longer than ClaimTTL renews its claim: it
// is not taken over while it lives. Close gives its claims up.
func TestCatchAllClaimRenewed(t *testing.T) {
	ts := startJetStream(t)
	ctx := context.Background()
	var now atomic.Int64
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(t0.UnixNano())
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return time.Unix(0, now.Load()) }
	conn := connect(t, cfg)
	a, b := conn.CatchAll(), connect(t, cfg).CatchAll()
	if _, mine, err := a.Claim(ctx, "slow.example"); err != nil || !mine {
		t.Fatalf("claim: %v %v", mine, err)
	}
	mid := t0.Add(cfg.ClaimTTL * 3 / 4)
	now.Store(mid.UnixNano())
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var e catchAllEntry
		if _, err := conn.getJSON(ctx, conn.catchAll, catchAllKey("slow.example"), &e); err != nil {
			return err
		}
		if !e.At.Equal(mid) {
			return fmt.Errorf("claim still dated %v", e.At)
		}
		return nil
	})
	now.Store(t0.Add(cfg.ClaimTTL * 3 / 2).UnixNano()) // stale for a claim not renewed since t0
	if _, mine, err := b.Claim(ctx, "slow.example"); err != nil || mine {
		t.Fatalf("a renewed claim was taken over (mine %v, %v)", mine, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, mine, err := b.Claim(ctx, "slow.example"); err != nil || !mine {
		t.Fatalf("after Close: mine %v, %v", mine, err)
	}
}

// checkCatchAllOnce returns domain's accept-all answer, asking check only
// if no worker of the cluster knows it or is asking: it claims the domain,
// waits for another claimant's answer, or asks and shares the answer.
// check returns nil when it could not tell; that is not shared. It is the
// claim, wait and share loop the engine runs (pipeline's engine.go), over
// the cluster's CatchAll alone.
func checkCatchAllOnce(ctx context.Context, s *CatchAll, domain string, check func(context.Context) (*bool, error)) (*bool, error) {
	for {
		answer, mine, err := s.Claim(ctx, domain)
		if err != nil {
			return nil, err
		}
		if answer != nil {
			return answer, nil
		}
		if mine {
			got, err := check(ctx)
			if err != nil || got == nil {
				_ = s.Abandon(context.WithoutCancel(ctx), domain)
				return nil, err
			}
			if err := s.Put(ctx, domain, *got); err != nil {
				return got, err
			}
			return got, nil
		}
		answer, err = s.Wait(ctx, domain)
		if err != nil || answer != nil {
			return answer, err
		}
	}
}
