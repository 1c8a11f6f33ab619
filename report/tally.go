package report

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// Row is what Tally needs of one output row.
type Row struct {
	Status, Reason string
	Domain         string // "" for rows without one (syntax errors)
	Provider       string // mail provider of the MX host, "" if unknown

	Disposable, Free, Role, TypoKnown, TypoSuggested bool
}

// Tally counts output rows into the parts of Data that come from rows:
// ByStatus, ByReason, TopDomains and Signals. Its zero value is ready. It
// is not safe for concurrent use: the goroutine that writes the rows owns
// it. Memory grows with the number of distinct domains, which the run holds
// anyway.
type Tally struct {
	byStatus map[string]int
	byReason map[[2]string]int
	domains  map[string]*Domain
	signals  Signals
}

// Add counts one row.
func (t *Tally) Add(r Row) {
	if t.byStatus == nil {
		t.byStatus = map[string]int{}
		t.byReason = map[[2]string]int{}
		t.domains = map[string]*Domain{}
		t.signals.ByProvider = map[string]int{}
	}
	t.byStatus[r.Status]++
	t.byReason[[2]string{r.Status, r.Reason}]++
	if r.Domain != "" {
		d := t.domains[r.Domain]
		if d == nil {
			d = &Domain{Domain: r.Domain}
			t.domains[r.Domain] = d
		}
		d.Rows++
		switch r.Status {
		case "undeliverable":
			d.Undeliverable++
		case "unknown":
			d.Unknown++
		}
	}
	s := &t.signals
	s.Disposable += b2i(r.Disposable)
	s.Free += b2i(r.Free)
	s.Role += b2i(r.Role)
	s.TypoKnown += b2i(r.TypoKnown)
	s.TypoSuggested += b2i(r.TypoSuggested)
	if r.Provider != "" {
		s.ByProvider[r.Provider]++
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Fill sets d's ByStatus, ByReason, TopDomains (the topDomains domains with
// the most undeliverable and unknown rows; none without any) and Signals
// from the rows counted so far. The maps and slices are new: d does not
// share them with t.
func (t *Tally) Fill(d *Data, topDomains int) {
	d.ByStatus = map[string]int{}
	for s, n := range t.byStatus {
		d.ByStatus[s] = n
	}
	d.ByReason = nil
	for k, n := range t.byReason {
		d.ByReason = append(d.ByReason, Reason{Status: k[0], Reason: k[1], Rows: n})
	}
	slices.SortFunc(d.ByReason, func(a, b Reason) int {
		return cmp.Or(cmp.Compare(b.Rows, a.Rows), strings.Compare(a.Status, b.Status), strings.Compare(a.Reason, b.Reason))
	})
	d.TopDomains = nil
	for _, dom := range t.domains {
		if dom.Undeliverable+dom.Unknown > 0 {
			d.TopDomains = append(d.TopDomains, *dom)
		}
	}
	slices.SortFunc(d.TopDomains, func(a, b Domain) int {
		return cmp.Or(cmp.Compare(b.Undeliverable+b.Unknown, a.Undeliverable+a.Unknown), cmp.Compare(b.Rows, a.Rows),
			strings.Compare(a.Domain, b.Domain))
	})
	if len(d.TopDomains) > topDomains {
		d.TopDomains = d.TopDomains[:max(topDomains, 0)]
	}
	d.Signals = t.signals
	d.Signals.ByProvider = map[string]int{}
	for p, n := range t.signals.ByProvider {
		d.Signals.ByProvider[p] = n
	}
}

// Latencies is a histogram of reply latencies for the p50/p95 of a host:
// fixed buckets 10% wide from 100 µs to about 2 minutes, so its memory is
// constant however many replies it counts and a quantile is within 10%.
// Its zero value is ready; it is not safe for concurrent use.
type Latencies struct {
	counts [latencyBuckets]int
	n      int
}

const (
	latencyBuckets = 148 // 1.1^147 × 100 µs ≈ 2 min
	latencyMin     = 100 * time.Microsecond
)

// logLatencyStep is ln(1.1), the width of a bucket on a log scale.
const logLatencyStep = 0.09531017980432486

// Observe counts one reply latency.
func (l *Latencies) Observe(d time.Duration) {
	i := 0
	if d > latencyMin {
		i = min(int(math.Log(float64(d)/float64(latencyMin))/logLatencyStep)+1, latencyBuckets-1)
	}
	l.counts[i]++
	l.n++
}

// Count is the number of latencies observed.
func (l *Latencies) Count() int { return l.n }

// Quantile returns the latency below which a fraction q (0..1) of the
// observed ones fall, as the upper bound of its bucket; 0 when nothing was
// observed.
func (l *Latencies) Quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(l.n)))
	rank = min(max(rank, 1), l.n)
	seen := 0
	for i, c := range l.counts {
		seen += c
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(latencyBuckets - 1)
}

// bucketUpper is the largest latency bucket i holds: bucket 0 holds up to
// latencyMin, bucket i up to latencyMin × 1.1^i.
func bucketUpper(i int) time.Duration {
	return time.Duration(float64(latencyMin) * math.Pow(1.1, float64(i)))
}
