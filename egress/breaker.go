package egress

import (
	"fmt"
	"sync"
)

// BreakerConfig configures a Breaker. The zero value is usable.
type BreakerConfig struct {
	// MinSample is how many distinct keys must be in the window before the
	// breaker may trip, default 20: a few failures at the start of a list
	// prove nothing.
	MinSample int
	// Threshold is the share of failed keys in the window (0 < Threshold <=
	// 1) at which the breaker trips, default 0.9.
	Threshold float64
	// Window is how many of the most recent distinct keys the share is
	// taken over, default 200 (at least MinSample): a network that breaks
	// in the middle of a long run trips it too, and memory stays bounded.
	Window int
}

const (
	defaultBreakerMinSample = 20
	defaultBreakerThreshold = 0.9
	defaultBreakerWindow    = 200
)

// Breaker trips when an implausible share of distinct keys fail: the
// pipeline feeds it, for instance, each MX host's TCP outcome (port 25
// blocked mid-run) or each domain's NXDOMAIN (a resolver that started
// lying). It counts keys, not attempts: a host retried a hundred times is one
// key, failed until it succeeds once, and succeeded from then on. It does no
// I/O and is safe for concurrent use. Once tripped it stays tripped.
//
// Invariant: index holds exactly the keys in ring[:filled], each with its
// slot; failed counts the slots whose key has not succeeded.
type Breaker struct {
	cfg BreakerConfig

	mu      sync.Mutex
	index   map[string]int
	ring    []breakerSlot
	filled  int
	next    int // slot the next new key takes (the oldest once full)
	failed  int
	tripped bool
}

type breakerSlot struct {
	key    string
	failed bool
}

// NewBreaker returns a Breaker, checking cfg.
func NewBreaker(cfg BreakerConfig) (*Breaker, error) {
	if cfg.MinSample <= 0 {
		cfg.MinSample = defaultBreakerMinSample
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = defaultBreakerThreshold
	}
	if cfg.Threshold < 0 || cfg.Threshold > 1 {
		return nil, fmt.Errorf("egress: breaker threshold %v is not a share between 0 and 1", cfg.Threshold)
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultBreakerWindow
	}
	cfg.Window = max(cfg.Window, cfg.MinSample)
	return &Breaker{cfg: cfg, index: make(map[string]int, cfg.Window), ring: make([]breakerSlot, cfg.Window)}, nil
}

// Record notes whether key succeeded and reports whether the breaker is
// tripped (by this record or an earlier one).
func (b *Breaker) Record(key string, succeeded bool) (tripped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.index[key]; ok {
		if succeeded && b.ring[i].failed {
			b.ring[i].failed = false
			b.failed--
		}
	} else {
		if b.filled == len(b.ring) {
			old := b.ring[b.next]
			delete(b.index, old.key)
			if old.failed {
				b.failed--
			}
		} else {
			b.filled++
		}
		b.ring[b.next] = breakerSlot{key: key, failed: !succeeded}
		b.index[key] = b.next
		b.next = (b.next + 1) % len(b.ring)
		if !succeeded {
			b.failed++
		}
	}
	if !b.tripped && b.filled >= b.cfg.MinSample &&
		float64(b.failed) >= b.cfg.Threshold*float64(b.filled) {
		b.tripped = true
	}
	return b.tripped
}

// BreakerState is a snapshot of a Breaker.
type BreakerState struct {
	Keys, Failed int // distinct keys in the window, and those that have not succeeded
	Tripped      bool
}

// State returns a snapshot.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BreakerState{Keys: b.filled, Failed: b.failed, Tripped: b.tripped}
}
