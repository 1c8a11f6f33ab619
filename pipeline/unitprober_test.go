package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/internal/natstest"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/resolve"
)

// unitWorld is one provider host serving three domains, one of which
// accepts every local part, and a slow host.
func unitWorld() mailsim.World {
	return mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx.provider.test", IP: "127.0.0.41"},
			{Name: "mx.slow.test", IP: "127.0.0.42", RcptDelay: 300 * time.Millisecond},
		},
		Domains: []mailsim.Domain{
			{Name: "one.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, Mailboxes: []string{"a0", "a2", "a4"}},
			{Name: "two.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, Mailboxes: []string{"a0", "a2", "a4"}},
			{Name: "any.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, CatchAll: true},
			{Name: "slow.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.slow.test"}}, Mailboxes: []string{"a0"}},
		},
	}
}

// addrs makes n addresses a0@domain ... a<n-1>@domain: even ones exist.
func addrs(domain string, n int) []input.Address {
	out := make([]input.Address, n)
	for i := range out {
		out[i] = input.Address{Local: fmt.Sprintf("a%d", i), Domain: domain}
	}
	return out
}

// collected records what a Probe emitted, by index.
type collected struct {
	mu    sync.Mutex
	got   map[int]Verdict
	twice []int
}

func newCollected() *collected { return &collected{got: map[int]Verdict{}} }

func (c *collected) emit(i int, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.got[i]; dup {
		c.twice = append(c.twice, i)
	}
	c.got[i] = v
}

// check asserts one verdict per address, each the one the world implies.
func (c *collected) check(t *testing.T, as []input.Address) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.twice) > 0 {
		t.Errorf("indexes emitted twice: %v", c.twice)
	}
	for i, a := range as {
		v, ok := c.got[i]
		switch {
		case !ok:
			t.Errorf("%v: no verdict", a)
			continue
		case v.Addr != a:
			t.Errorf("index %d: verdict for %v, want %v", i, v.Addr, a)
		}
		want := output.StatusUndeliverable
		switch {
		case a.Domain == "any.test":
			want = output.StatusRisky
		case i%2 == 0:
			want = output.StatusDeliverable
		}
		if v.Status != want {
			t.Errorf("%v: %s/%s, want %s", a, v.Status, v.Reason, want)
		}
	}
	if len(c.got) != len(as) {
		t.Errorf("%d verdicts for %d addresses", len(c.got), len(as))
	}
}

// Batches probed at once share one engine: its per-host cap holds across
// them, and the engine stays up between batches, so that a batch that comes
// later reuses the connection an earlier one opened.
func TestUnitProberSharesOneEngine(t *testing.T) {
	h := newHarness(t, unitWorld())
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.IdleTimeout = 30 * time.Second // the connection waits for the next batch
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	p := NewUnitProber(ctx, h.cfg, h.resolver())

	batches := [][]input.Address{addrs("one.test", 6), addrs("two.test", 6), addrs("any.test", 4)}
	var wg sync.WaitGroup
	for _, as := range batches {
		wg.Go(func() {
			c := newCollected()
			if err := p.Probe(ctx, as, nil, c.emit); err != nil {
				t.Errorf("Probe: %v", err)
			}
			c.check(t, as)
		})
	}
	wg.Wait()
	if got := h.sim.MaxConcurrent("mx.provider.test"); got != 1 {
		t.Errorf("%d connections at once to the host, want 1 across all batches", got)
	}

	later := append(addrs("one.test", 2), addrs("two.test", 2)...)
	c := newCollected()
	if err := p.Probe(ctx, later, nil, c.emit); err != nil {
		t.Fatalf("Probe after the others: %v", err)
	}
	c.mu.Lock()
	for i, a := range later {
		if v := c.got[i]; v.Addr != a || v.Status == "" {
			t.Errorf("later batch, %v: %+v", a, v)
		}
	}
	c.mu.Unlock()
	if got := h.sim.Connections("mx.provider.test"); got != 1 {
		t.Errorf("%d connections in all, want 1: the later batch reuses the open one", got)
	}
	st := p.Close()
	if st.Connections != 1 {
		t.Errorf("EngineStats.Connections = %d, want 1", st.Connections)
	}
	// Without a CatchAllShare, each batch checks its domains itself.
	rcpt := h.sim.Commands("mx.provider.test", "RCPT")
	if want := 6 + 6 + 4 + 2 + 2 + 5; rcpt != want {
		t.Errorf("RCPT = %d, want %d (the addresses and one check per domain per batch)", rcpt, want)
	}
	if err := p.Probe(ctx, addrs("one.test", 1), nil, c.emit); !errors.Is(err, ErrProberClosed) {
		t.Errorf("Probe after Close: %v, want ErrProberClosed", err)
	}
}

// A Probe whose ctx ends returns at once, emits nothing more, and leaves
// the engine serving the other batches.
func TestUnitProberCancelledBatch(t *testing.T) {
	h := newHarness(t, unitWorld())
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	p := NewUnitProber(ctx, h.cfg, h.resolver())
	defer p.Close()

	bctx, stop := context.WithCancel(ctx)
	var emitted, after atomic.Int64
	var returned atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- p.Probe(bctx, addrs("slow.test", 20), nil, func(int, Verdict) {
			emitted.Add(1)
			if returned.Load() {
				after.Add(1)
			}
		})
	}()
	waitFor(t, "the slow host asked", func() bool { return h.sim.Commands("mx.slow.test", "RCPT") > 0 })
	stop()
	err := <-done
	returned.Store(true)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Probe: %v, want context.Canceled", err)
	}
	if emitted.Load() >= 20 {
		t.Fatalf("all 20 verdicts came before the cancellation: the test proves nothing")
	}

	c := newCollected()
	as := addrs("one.test", 4)
	if err := p.Probe(ctx, as, nil, c.emit); err != nil {
		t.Fatalf("Probe after a cancelled one: %v", err)
	}
	c.check(t, as)
	p.Close()
	if n := after.Load(); n != 0 {
		t.Errorf("%d verdicts emitted after the cancelled Probe returned", n)
	}
}

// What the caller knows of a domain is used: its MX hosts are not looked
// up again, and a known accept-all answer is not asked again.
func TestUnitProberKnownDomains(t *testing.T) {
	h := newHarness(t, unitWorld())
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	p := NewUnitProber(ctx, h.cfg, h.resolver())
	yes := true
	known := map[string]UnitDomain{"any.test": {
		Mail:     &resolve.Mail{Domain: "any.test", Hosts: []resolve.MX{{Host: "mx.provider.test", Preference: 10}}},
		CatchAll: &yes,
	}}
	c := newCollected()
	as := addrs("any.test", 3)
	if err := p.Probe(ctx, as, known, c.emit); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.check(t, as)
	if n := h.sim.DNSQueries("any.test", 15 /* MX */); n != 0 {
		t.Errorf("%d MX queries for a domain whose MX was given", n)
	}
	if got := h.sim.Commands("mx.provider.test", "RCPT"); got != 3 {
		t.Errorf("RCPT = %d, want 3: no check of a domain whose answer was given", got)
	}
}

// startNATS starts a real nats-server with JetStream in the test process.
func startNATS(t *testing.T) string { return natstest.Start(t, server.Options{}).URL() }

func connectCluster(t *testing.T, url string) *cluster.Conn {
	t.Helper()
	return connectClusterWith(t, cluster.Config{URL: url, ClaimTTL: time.Minute})
}

func connectClusterWith(t *testing.T, cfg cluster.Config) *cluster.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Engines of different processes that share the cluster's CatchAllShare ask
// each domain's accept-all question once between them: the others wait for
// the answer (holding their acceptances) and judge by it.
func TestCatchAllShareAcrossEngines(t *testing.T) {
	h := newHarness(t, unitWorld())
	h.cfg.NoPositiveControl = true
	url := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	const engines = 3
	var wg sync.WaitGroup
	for range engines {
		cfg := h.cfg
		cfg.CatchAllShare = connectCluster(t, url).CatchAll()
		p := NewUnitProber(ctx, cfg, h.resolver())
		wg.Go(func() {
			defer p.Close()
			for _, dom := range []string{"any.test", "one.test"} {
				c := newCollected()
				as := addrs(dom, 4)
				if err := p.Probe(ctx, as, nil, c.emit); err != nil {
					t.Error(err)
					return
				}
				c.check(t, as)
				c.mu.Lock()
				for _, v := range c.got {
					if v.CatchAll == nil || *v.CatchAll != (dom == "any.test") {
						t.Errorf("%v: catch_all %v", v.Addr, v.CatchAll)
					}
				}
				c.mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got, want := h.sim.Commands("mx.provider.test", "RCPT"), engines*8+2; got != want {
		t.Errorf("RCPT = %d, want %d: the addresses and one check per domain for all engines", got, want)
	}
	ans, _, err := connectCluster(t, url).CatchAll().Claim(ctx, "any.test")
	if err != nil || ans == nil || !*ans {
		t.Errorf("the share holds %v (%v) for any.test, want true", ans, err)
	}
}

// A claim another process abandons without an answer is claimed again, and
// the check asked here; one that another process still holds when the wait
// ends leaves the acceptances with catch_all unknown.
func TestCatchAllShareAbandonedClaim(t *testing.T) {
	h := newHarness(t, unitWorld())
	h.cfg.NoPositiveControl = true
	url := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	other := connectCluster(t, url).CatchAll()
	if _, mine, err := other.Claim(ctx, "one.test"); err != nil || !mine {
		t.Fatalf("claim: %v %v", mine, err)
	}
	cfg := h.cfg
	cfg.CatchAllShare = connectCluster(t, url).CatchAll()
	p := NewUnitProber(ctx, cfg, h.resolver())
	c := newCollected()
	as := addrs("one.test", 4)
	done := make(chan error, 1)
	go func() { done <- p.Probe(ctx, as, nil, c.emit) }()
	// The acceptances wait for the other's answer...
	waitFor(t, "the addresses asked", func() bool { return h.sim.Commands("mx.provider.test", "RCPT") >= 4 })
	select {
	case err := <-done:
		t.Fatalf("Probe returned (%v) while the claim was held elsewhere", err)
	default:
	}
	// ... which never comes: the claim is given up, this engine asks.
	if err := other.Abandon(ctx, "one.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.check(t, as)
	for _, v := range c.got {
		if v.CatchAll == nil || *v.CatchAll {
			t.Errorf("%v: catch_all %v, want false", v.Addr, v.CatchAll)
		}
	}
	if got := h.sim.Commands("mx.provider.test", "RCPT"); got != 5 {
		t.Errorf("RCPT = %d, want 4 and this engine's check", got)
	}

	// A share that never answers: the acceptances go out, catch_all unknown.
	h2 := newHarness(t, unitWorld())
	cfg = h2.cfg
	cfg.NoPositiveControl = true
	cfg.CatchAllShare = silentShare{}
	p = NewUnitProber(ctx, cfg, h2.resolver())
	c = newCollected()
	if err := p.Probe(ctx, as, nil, c.emit); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.check(t, as)
	for _, v := range c.got {
		if v.CatchAll != nil && v.Status == output.StatusDeliverable {
			t.Errorf("%v: catch_all %v, want unknown", v.Addr, *v.CatchAll)
		}
	}
	if got := h2.sim.Commands("mx.provider.test", "RCPT"); got != 4 {
		t.Errorf("RCPT = %d, want 4: no check while another holds the claim", got)
	}
}

// silentShare is a share where another process always holds the claim and
// never answers.
type silentShare struct{}

func (silentShare) Claim(context.Context, string) (*bool, bool, error) { return nil, false, nil }
func (silentShare) Put(context.Context, string, bool) error            { return nil }
func (silentShare) Abandon(context.Context, string) error              { return nil }
func (silentShare) Wait(context.Context, string) (*bool, error)        { return nil, nil }

var _ CatchAllShare = (*cluster.CatchAll)(nil)

// A share lost while the acceptances wait for another process's answer
// (its NATS server gone) is left: the check is asked here, as when the
// share cannot be reached at the claim, and catch_all is known.
func TestCatchAllShareLostWhileWaiting(t *testing.T) {
	h := newHarness(t, unitWorld())
	h.cfg.NoPositiveControl = true
	ns := natstest.Start(t, server.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	// Short waits, so that the waiting engine soon asks the share again
	// and finds it gone; nothing is asserted on these times.
	ccfg := cluster.Config{URL: ns.URL(), ClaimTTL: 2 * time.Second, RequestTimeout: 2 * time.Second}
	other := connectClusterWith(t, ccfg).CatchAll()
	if _, mine, err := other.Claim(ctx, "one.test"); err != nil || !mine {
		t.Fatalf("claim: %v %v", mine, err)
	}
	cfg := h.cfg
	cfg.CatchAllShare = connectClusterWith(t, ccfg).CatchAll()
	p := NewUnitProber(ctx, cfg, h.resolver())
	c := newCollected()
	as := addrs("one.test", 4)
	done := make(chan error, 1)
	go func() { done <- p.Probe(ctx, as, nil, c.emit) }()
	waitFor(t, "the addresses asked", func() bool { return h.sim.Commands("mx.provider.test", "RCPT") >= 4 })
	ns.Shutdown()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.check(t, as)
	for _, v := range c.got {
		if v.CatchAll == nil || *v.CatchAll {
			t.Errorf("%v: catch_all %v, want false", v.Addr, v.CatchAll)
		}
	}
	if got := h.sim.Commands("mx.provider.test", "RCPT"); got != 5 {
		t.Errorf("RCPT = %d, want 4 and this engine's check", got)
	}
}
