package egress

import (
	"fmt"
	"sync"
	"testing"
)

// rec is one Record call: key, and whether it succeeded.
type rec struct {
	key string
	ok  bool
}

func fails(prefix string, n int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{fmt.Sprintf("%s%d", prefix, i), false}
	}
	return out
}

func oks(prefix string, n int) []rec {
	out := fails(prefix, n)
	for i := range out {
		out[i].ok = true
	}
	return out
}

func TestBreaker(t *testing.T) {
	tests := []struct {
		name      string
		cfg       BreakerConfig
		records   []rec
		tripAt    int // index of the record that trips it, -1 = never
		wantState BreakerState
	}{
		{
			name:      "below the minimum sample nothing trips",
			cfg:       BreakerConfig{MinSample: 10, Threshold: 0.9},
			records:   fails("h", 9),
			tripAt:    -1,
			wantState: BreakerState{Keys: 9, Failed: 9},
		},
		{
			name:      "all fail: trips at the minimum sample",
			cfg:       BreakerConfig{MinSample: 10, Threshold: 0.9},
			records:   fails("h", 12),
			tripAt:    9,
			wantState: BreakerState{Keys: 12, Failed: 12, Tripped: true},
		},
		{
			name:      "a healthy share of failures does not trip",
			cfg:       BreakerConfig{MinSample: 10, Threshold: 0.9},
			records:   append(oks("a", 2), fails("h", 17)...), // 17/19 < 0.9
			tripAt:    -1,
			wantState: BreakerState{Keys: 19, Failed: 17},
		},
		{
			name:      "the threshold is reached, not only exceeded",
			cfg:       BreakerConfig{MinSample: 10, Threshold: 0.9},
			records:   append(oks("a", 1), fails("h", 9)...), // 9/10
			tripAt:    9,
			wantState: BreakerState{Keys: 10, Failed: 9, Tripped: true},
		},
		{
			name: "retries of one key count once",
			cfg:  BreakerConfig{MinSample: 3, Threshold: 0.5},
			records: []rec{
				{"a", true}, {"b", false}, {"b", false}, {"b", false}, {"b", false}, {"c", true},
			},
			tripAt:    -1,
			wantState: BreakerState{Keys: 3, Failed: 1},
		},
		{
			name:      "a key that succeeds after failing counts as succeeded",
			cfg:       BreakerConfig{MinSample: 3, Threshold: 0.6},
			records:   []rec{{"a", false}, {"b", false}, {"a", true}, {"c", true}},
			tripAt:    -1,
			wantState: BreakerState{Keys: 3, Failed: 1},
		},
		{
			name:      "a key that failed after succeeding stays succeeded",
			cfg:       BreakerConfig{MinSample: 2, Threshold: 0.5},
			records:   []rec{{"a", true}, {"a", false}, {"b", true}},
			tripAt:    -1,
			wantState: BreakerState{Keys: 2, Failed: 0},
		},
		{
			name:      "the window forgets old successes: a network that breaks mid-run",
			cfg:       BreakerConfig{MinSample: 5, Threshold: 1, Window: 10},
			records:   append(oks("a", 30), fails("h", 10)...),
			tripAt:    39,
			wantState: BreakerState{Keys: 10, Failed: 10, Tripped: true},
		},
		{
			name:      "once tripped it stays tripped",
			cfg:       BreakerConfig{MinSample: 2, Threshold: 1, Window: 2},
			records:   append(fails("h", 2), oks("a", 5)...),
			tripAt:    1,
			wantState: BreakerState{Keys: 2, Failed: 0, Tripped: true},
		},
		{
			name:      "defaults: 20 keys at 90%",
			records:   append(oks("a", 2), fails("h", 18)...),
			tripAt:    19,
			wantState: BreakerState{Keys: 20, Failed: 18, Tripped: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBreaker(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := -1
			for i, r := range tc.records {
				if b.Record(r.key, r.ok) && got < 0 {
					got = i
				}
			}
			if got != tc.tripAt {
				t.Errorf("tripped at record %d, want %d", got, tc.tripAt)
			}
			if s := b.State(); s != tc.wantState {
				t.Errorf("state %+v, want %+v", s, tc.wantState)
			}
		})
	}
}

func TestBreakerConfig(t *testing.T) {
	for _, th := range []float64{-0.1, 1.5} {
		if _, err := NewBreaker(BreakerConfig{Threshold: th}); err == nil {
			t.Errorf("threshold %v accepted", th)
		}
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{MinSample: 50, Threshold: 0.5, Window: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				b.Record(fmt.Sprintf("k%d", i), g%2 == 0)
			}
		})
	}
	wg.Wait()
	// Every key got at least one success; whether it tripped on the way
	// depends on the interleaving.
	if s := b.State(); s.Keys != 100 || s.Failed != 0 {
		t.Errorf("state %+v", s)
	}
}
