package benchmarks

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Flags registers the workload's sizes and limits on fs, each name prefixed
// (e.g. "l1."), with w's current values as defaults.
func (w *Workload) Flags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&w.Addresses, prefix+"addresses", w.Addresses, "addresses (input rows) of "+w.Name)
	fs.IntVar(&w.Domains, prefix+"domains", w.Domains, "domains of "+w.Name)
	fs.IntVar(&w.Hosts, prefix+"hosts", w.Hosts, "MX hosts of "+w.Name)
	fs.Float64Var(&w.Skew, prefix+"skew", w.Skew, "Zipf exponent of domains per host of "+w.Name+" (0 = even)")
	fs.IntVar(&w.CatchAllEvery, prefix+"catch-all-every", w.CatchAllEvery, "every n-th domain of "+w.Name+" accepts all (0 = none)")
	fs.DurationVar(&w.RTT, prefix+"rtt", w.RTT, "round-trip time injected into every SMTP reply and DNS answer of "+w.Name)
	fs.IntVar(&w.MaxConnections, prefix+"max-connections", w.MaxConnections, "SMTP connections in total (naive: workers) of "+w.Name)
	fs.IntVar(&w.MaxConnectionsPerHost, prefix+"per-host", w.MaxConnectionsPerHost, "SMTP connections per MX host of "+w.Name)
	fs.IntVar(&w.RcptPerTransaction, prefix+"rcpt-per-transaction", w.RcptPerTransaction, "RCPT per transaction of "+w.Name)
	fs.IntVar(&w.RcptPerConnection, prefix+"rcpt-per-connection", w.RcptPerConnection, "RCPT per connection of "+w.Name)
	fs.IntVar(&w.MemoryRows, prefix+"memory-rows", w.MemoryRows, "rows bulkverify groups in memory before it spills to disk in "+w.Name+" (0 = no limit)")
	fs.BoolVar(&w.NoCatchAllCheck, prefix+"no-catch-all-check", w.NoCatchAllCheck, "skip bulkverify's per-domain catch-all check in "+w.Name)
	fs.IntVar(&w.ChangeEvery, prefix+"change-every", w.ChangeEvery, "a rerun of "+w.Name+" changes every n-th row (20 = 5%)")
	fs.IntVar(&w.OperatorSessions, prefix+"operator-sessions", w.OperatorSessions, "when > 0, every host of "+w.Name+" is run by one operator that allows this many sessions at once")
	fs.IntVar(&w.UnitSize, prefix+"unit-size", w.UnitSize, "addresses per cluster unit at most in "+w.Name+" (0 = 2000)")
	fs.IntVar(&w.UnitsPerWorker, prefix+"units-per-worker", w.UnitsPerWorker, "units a cluster worker probes at once in "+w.Name+" (0 = 4 × max-connections)")
}

// Describe is a one-line summary of the workload.
func (w Workload) Describe() string {
	per := w.DomainsPerHost()
	top := 0
	for _, n := range per {
		top = max(top, n)
	}
	rcpt := w.RecipientsPerHost()
	topR := 0
	for _, n := range rcpt {
		topR = max(topR, n)
	}
	d := fmt.Sprintf("%s: %d addresses, %d domains, %d MX hosts (Zipf %.2g: busiest host %d domains, %d RCPT), RTT %v, %d connections (%d per host), %d RCPT/transaction, %d RCPT/connection, catch-all every %d domains, memory rows %d",
		w.Name, w.Addresses, w.Domains, w.Hosts, w.Skew, top, topR, w.RTT, w.MaxConnections, w.MaxConnectionsPerHost,
		w.RcptPerTransaction, w.RcptPerConnection, w.CatchAllEvery, w.MemoryRows)
	if w.OperatorSessions > 0 {
		d += fmt.Sprintf(", every host run by one operator allowing %d sessions at once", w.OperatorSessions)
	}
	switch {
	case w.Rerun:
		d += fmt.Sprintf(", verdict store; run twice, the second time with every %d-th row changed", w.ChangeEvery)
	case w.Store:
		d += ", verdict store (empty at the start)"
	}
	return d
}

// WriteStoreAndMemory writes what issue 12 asks of the store and of
// bounded memory, from the runs present: C1 with the store on against C1
// without it, the rerun's second run against its first, and C2 (partitioned
// on disk) against C1 (in memory), its connections against C1's scaled to
// C2's recipients (an unbounded run's, which opens a connection per 500
// RCPT per host however many rows there are). Nothing when none applies.
func WriteStoreAndMemory(out io.Writer, results []Result) error {
	find := func(name string) *Result {
		for i := range results {
			if results[i].Workload == name && results[i].Strategy == Bulk {
				return &results[i]
			}
		}
		return nil
	}
	c1, store, rerun, c2 := find("C1"), find("C1-store"), find("C1-rerun"), find("C2")
	var b strings.Builder
	rate := func(r *Result) float64 { return float64(r.Rows) / r.Wall.Seconds() }
	if c1 != nil && store != nil {
		fmt.Fprintf(&b, "| C1 store on vs off | addr/s | CPU | peak RSS MiB |\n|---|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| off | %.0f | %s | %.0f |\n| on | %.0f | %s | %.0f |\n| on/off | %.2f | %.2f | %.2f |\n\n",
			rate(c1), fmtDur(c1.CPU), mib(c1.PeakRSS), rate(store), fmtDur(store.CPU), mib(store.PeakRSS),
			rate(store)/rate(c1), store.CPU.Seconds()/c1.CPU.Seconds(), mib(store.PeakRSS)/mib(c1.PeakRSS))
	}
	if rerun != nil {
		fmt.Fprintf(&b, "| C1-rerun | wall | CPU | RCPT | connections | DNS queries | rows stored | unchanged rows that differ |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| first run | %s | %s | %d | %d | %d | 0 | |\n", fmtDur(rerun.FirstWall), fmtDur(rerun.FirstCPU), rerun.FirstRCPT, rerun.FirstConnections, rerun.FirstDNSQueries)
		fmt.Fprintf(&b, "| second run (5%% changed) | %s | %s | %d | %d | %d | %d | %d |\n", fmtDur(rerun.Wall), fmtDur(rerun.CPU),
			rerun.ByVerb["RCPT"], rerun.Connections, rerun.DNSQueries, rerun.Stored, rerun.Differs)
		fmt.Fprintf(&b, "| first/second | %.1f× | %.1f× | %.1f%% of the first | | | | |\n\n",
			rerun.FirstWall.Seconds()/rerun.Wall.Seconds(), rerun.FirstCPU.Seconds()/rerun.CPU.Seconds(),
			100*float64(rerun.ByVerb["RCPT"])/float64(max(1, rerun.FirstRCPT)))
	}
	if c2 != nil {
		fmt.Fprintf(&b, "| C2 | rows | wall | addr/s | peak RSS MiB | connections | partitions | peak addresses in memory | spilled |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		fmt.Fprintf(&b, "| C2 | %d | %s | %.0f | %.0f | %d | %d | %d | %d |\n", c2.Rows, fmtDur(c2.Wall), rate(c2), mib(c2.PeakRSS),
			c2.Connections, c2.Partitions, c2.PeakAddresses, c2.Spilled)
		if c1 != nil && c1.ByVerb["RCPT"] > 0 {
			scaled := float64(c1.Connections) * float64(c2.ByVerb["RCPT"]) / float64(c1.ByVerb["RCPT"])
			fmt.Fprintf(&b, "| C2/C1 | | | %.2f | | %.2f (of C1's %d scaled to C2's RCPT: %.0f) | | | |\n",
				rate(c2)/rate(c1), float64(c2.Connections)/scaled, c1.Connections, scaled)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// WriteTable writes results as a Markdown table, one row per run.
func WriteTable(out io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| workload | strategy | rows | wall | wall min–max (runs) | addr/s | connections | SMTP commands | RCPT | DNS queries | wrong | CPU | CPU/wall | mallocs | alloc MiB | peak RSS MiB | start RSS MiB | peak RSS/row | world CPU | world peak RSS MiB | lower bound | wall/bound |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		bound, ratio := "", ""
		switch {
		case isBulk(r.Strategy) && r.RTT > 0:
			bound = fmtDur(r.Bound.Time)
			ratio = fmt.Sprintf("%.2f", r.Wall.Seconds()/r.Bound.Time.Seconds())
		case r.Strategy == Naive && r.RTT > 0:
			bound = fmtDur(r.NaiveBound)
			ratio = fmt.Sprintf("%.2f", r.Wall.Seconds()/r.NaiveBound.Seconds())
		}
		perRow := ""
		if r.Rows > 0 && r.PeakRSS > 0 {
			perRow = fmt.Sprintf("%d B", r.PeakRSS/uint64(r.Rows))
		}
		worldCPU, worldRSS := "in-process", "in-process"
		if r.WorldPeakRSS > 0 {
			worldCPU, worldRSS = fmtDur(r.WorldCPU), fmt.Sprintf("%.0f", mib(r.WorldPeakRSS))
		}
		spread := ""
		if r.Runs > 1 {
			spread = fmt.Sprintf("%s–%s (%d)", fmtDur(r.WallMin), fmtDur(r.WallMax), r.Runs)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %.0f | %d | %d | %d | %d | %d | %s | %.2f | %d | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s |\n",
			r.Workload, r.Strategy, r.Rows, fmtDur(r.Wall), spread, float64(r.Rows)/r.Wall.Seconds(),
			r.Connections, r.Commands, r.ByVerb["RCPT"], r.DNSQueries, r.Wrong,
			fmtDur(r.CPU), r.CPU.Seconds()/r.Wall.Seconds(), r.Mallocs, mib(r.AllocBytes), mib(r.PeakRSS), mib(r.StartRSS), perRow,
			worldCPU, worldRSS, bound, ratio)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// WriteComparison writes, for every workload run with both strategies at the
// same size, the naive/bulkverify ratios and how close each came to its
// bound; nothing when there is no such pair.
func WriteComparison(out io.Writer, results []Result) error {
	var b strings.Builder
	pairs := 0
	b.WriteString("| workload | rows | wall naive/bulkverify | connections naive/bulkverify | SMTP commands naive/bulkverify | DNS queries naive/bulkverify | bulkverify connections (least possible) | bulkverify wall/bound (pipelined) | bulkverify wall/lock-step bound | best possible speed-up (naive bound / bound) |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, bulk := range results {
		if bulk.Strategy != Bulk {
			continue
		}
		for _, nv := range results {
			if nv.Strategy != Naive || nv.Workload != bulk.Workload || nv.Addresses != bulk.Addresses {
				continue
			}
			pairs++
			fmt.Fprintf(&b, "| %s | %d | %.1f× | %.1f× | %.1f× | %.1f× | %d (%d) | %s | %s | %s |\n",
				bulk.Workload, bulk.Rows,
				nv.Wall.Seconds()/bulk.Wall.Seconds(),
				ratio(nv.Connections, bulk.Connections), ratio(nv.Commands, bulk.Commands), ratio(nv.DNSQueries, bulk.DNSQueries),
				bulk.Connections, bulk.LeastConnections,
				durRatio(bulk.Wall, bulk.Bound.Time), durRatio(bulk.Wall, bulk.Lockstep.Time), durRatio(bulk.NaiveBound, bulk.Bound.Time))
		}
	}
	if pairs == 0 {
		return nil
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// WriteProxyComparison writes, for every workload run by bulkverify both
// directly and through a SOCKS5 proxy at the same size, what the proxy path
// costs: wall time, CPU time (the proxy's relaying included, as it runs in
// the client's process) and allocations, as ratios proxied/direct; nothing
// when there is no such pair.
func WriteProxyComparison(out io.Writer, results []Result) error {
	var b strings.Builder
	pairs := 0
	b.WriteString("| workload | rows | wall direct | wall via SOCKS5 | wall ratio | CPU direct | CPU via SOCKS5 | CPU ratio | mallocs ratio | connections (direct / via the proxy / accepted by the proxy) |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, d := range results {
		if d.Strategy != Bulk {
			continue
		}
		for _, p := range results {
			if p.Strategy != BulkSOCKS || p.Workload != d.Workload || p.Addresses != d.Addresses {
				continue
			}
			pairs++
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %.2f | %d / %d / %d |\n",
				d.Workload, d.Rows, fmtDur(d.Wall), fmtDur(p.Wall), durRatio(p.Wall, d.Wall),
				fmtDur(d.CPU), fmtDur(p.CPU), durRatio(p.CPU, d.CPU),
				float64(p.Mallocs)/float64(max(d.Mallocs, 1)), d.Connections, p.Connections, p.ProxyConnections)
		}
	}
	if pairs == 0 {
		return nil
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func durRatio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a.Seconds()/b.Seconds())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// WriteClusterComparison writes what issue 13 asks of the cluster, from
// the runs present: for each workload run with cluster-N strategies, the
// throughput of each N against one worker's, and the most sessions the
// servers saw open at once; on a workload also run by a local bulkverify,
// how much slower one worker is than the local run. Nothing when there is
// no cluster run.
func WriteClusterComparison(out io.Writer, results []Result) error {
	var b strings.Builder
	rate := func(r Result) float64 { return float64(r.Rows) / r.Wall.Seconds() }
	header := false
	for _, r := range results {
		if r.Workers == 0 {
			continue
		}
		if !header {
			b.WriteString("| workload | strategy | workers | wall | addr/s | throughput / 1 worker's | throughput / local bulkverify's | most sessions open at once (servers' count) | operator's session budget | connections | coordinator + NATS CPU | workers' CPU | wrong |\n")
			b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
			header = true
		}
		vsOne, vsLocal, budget := "", "", ""
		for _, o := range results {
			if o.Workload != r.Workload || o.Addresses != r.Addresses {
				continue
			}
			switch {
			case o.Workers == 1:
				vsOne = fmt.Sprintf("%.2f×", rate(r)/rate(o))
			case o.Strategy == Bulk:
				vsLocal = fmt.Sprintf("%.2f× (wall %+.0f%%)", rate(r)/rate(o), 100*(r.Wall.Seconds()/o.Wall.Seconds()-1))
			}
		}
		if r.OperatorSessions > 0 {
			budget = strconv.Itoa(r.OperatorSessions)
		}
		workersCPU := "in-process"
		if r.WorkersCPU > 0 {
			workersCPU = fmtDur(r.WorkersCPU)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.0f | %s | %s | %d | %s | %d | %s | %s | %d |\n", r.Workload, r.Strategy, r.Workers,
			fmtDur(r.Wall), rate(r), vsOne, vsLocal, r.MaxSessions, budget, r.Connections, fmtDur(r.CPU), workersCPU, r.Wrong)
	}
	if !header {
		return nil
	}
	b.WriteString("\n")
	_, err := io.WriteString(out, b.String())
	return err
}
