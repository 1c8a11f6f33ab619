package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/egress"
)

// sessionCounter is a LocalBudget that counts the sessions it is asked for,
// by operator.
type sessionCounter struct {
	egress.Budget
	mu    sync.Mutex
	asked map[string]int
}

func (c *sessionCounter) Session(ctx context.Context, operator string, lim egress.Limits) (func(), error) {
	c.mu.Lock()
	c.asked[operator]++
	c.mu.Unlock()
	return c.Budget.Session(ctx, operator, lim)
}

func (c *sessionCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.asked {
		n += k
	}
	return n
}

// A host whose sessions end at the per-connection RCPT cap with addresses
// left is served by consecutive sessions on the same operator's session and
// connection slot: the worker asks the budget once, and another host
// waiting for the run's only slot gets it when the first host is done, not
// between two of its sessions.
func TestConsecutiveSessionsKeepTheirSlot(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.NoPositiveControl = true
	h.cfg.NoCatchAllCheck = true
	h.cfg.MaxConnections = 1
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.RcptPerTransaction = 50
	h.cfg.RcptPerConnection = 50
	// acme.test's domain is looked up first: its worker holds the slot
	// while one.test's waits for it.
	h.cfg.DNSWorkers = 1
	budget := &sessionCounter{Budget: egress.NewLocalBudget(egress.BudgetConfig{}), asked: map[string]int{}}
	h.cfg.Budget = budget
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 120 {
		fmt.Fprintf(&b, "user%d@acme.test\n", i)
	}
	b.WriteString("ann@one.test\n")
	rows, _ := h.run(b.String())
	checkEveryRowOnce(t, rows, 121)

	const big, small = "mx1.acme.test", "mx.provider.test"
	if got := h.sim.Connections(big); got != 3 {
		t.Fatalf("%s: %d connections, want 3 (120 RCPT, 50 per connection)", big, got)
	}
	if got := h.sim.Connections(small); got != 1 {
		t.Fatalf("%s: %d connections, want 1", small, got)
	}
	if got := budget.total(); got != 2 {
		t.Errorf("budget asked for %d sessions (%v), want 2: one per host", got, budget.asked)
	}
	// The small host's session is not between two of the big host's.
	bigEHLO := h.sim.CommandTimes(big, "EHLO")
	bigQUIT := h.sim.CommandTimes(big, "QUIT")
	smallEHLO := h.sim.CommandTimes(small, "EHLO")
	if len(bigEHLO) != 3 || len(bigQUIT) != 3 || len(smallEHLO) != 1 {
		t.Fatalf("EHLO/QUIT times: %d/%d of %s, %d EHLO of %s", len(bigEHLO), len(bigQUIT), big, len(smallEHLO), small)
	}
	first, last := slices.MinFunc(bigEHLO, time.Time.Compare), slices.MaxFunc(bigQUIT, time.Time.Compare)
	if at := smallEHLO[0]; at.After(first) && at.Before(last) {
		t.Errorf("%s's session began at %v, between %s's first EHLO (%v) and last QUIT (%v)", small, at, big, first, last)
	}
}
