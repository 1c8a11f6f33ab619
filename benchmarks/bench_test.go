package benchmarks

import (
	"context"
	"flag"
	"testing"
	"time"
)

// The testing.B workloads, sized by flags after -args, e.g.
//
//	go test -run '^$' -bench L1 ./benchmarks -args -l1.addresses 5000
//
// Flags of a test binary are necessarily package-level; nothing else reads
// these variables.
var (
	benchL1 = L1()
	benchC1 = C1()
	benchL3 = L3()
	benchB1 = B1()
)

func init() {
	benchL1.Flags(flag.CommandLine, "l1.")
	benchC1.Flags(flag.CommandLine, "c1.")
	benchL3.Flags(flag.CommandLine, "l3.")
	benchB1.Flags(flag.CommandLine, "b1.")
}

// BenchmarkL1 compares bulkverify with the naive strategy on the
// latency-bound workload. Each iteration is a whole run; besides ns/op it
// reports the servers' counts and the wall time over the lower bound.
func BenchmarkL1(b *testing.B) {
	for _, s := range []Strategy{Bulk, Naive} {
		b.Run(string(s), func(b *testing.B) { benchRun(b, benchL1, s) })
	}
}

// BenchmarkL1SOCKS compares bulkverify on L1 directly and through a SOCKS5
// proxy in the same process: the proxy path's cost in wall and CPU time.
func BenchmarkL1SOCKS(b *testing.B) {
	for _, s := range []Strategy{Bulk, BulkSOCKS} {
		b.Run(string(s), func(b *testing.B) { benchRun(b, benchL1, s) })
	}
}

// BenchmarkL1Cluster compares a local run on L1 with a cluster of one
// worker. The workers of the testing.B suite run in the test process (the
// command in cmd/bench gives each its own).
func BenchmarkL1Cluster(b *testing.B) {
	for _, s := range []Strategy{Bulk, ClusterStrategy(1)} {
		b.Run(string(s), func(b *testing.B) { benchRun(b, benchL1, s) })
	}
}

// BenchmarkL3 runs the cluster's latency-bound workload with 1, 2 and 4
// workers (in the test process; see BenchmarkL1Cluster).
func BenchmarkL3(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(string(ClusterStrategy(n)), func(b *testing.B) { benchRun(b, benchL3, ClusterStrategy(n)) })
	}
}

// BenchmarkB1 runs the budget test with 1, 2 and 4 workers; it reports
// the most sessions the servers saw at once.
func BenchmarkB1(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(string(ClusterStrategy(n)), func(b *testing.B) { benchRun(b, benchB1, ClusterStrategy(n)) })
	}
}

// BenchmarkC1 finds the pipeline's ceiling on the CPU-bound workload.
func BenchmarkC1(b *testing.B) {
	benchRun(b, benchC1, Bulk)
}

func benchRun(b *testing.B, w Workload, s Strategy) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var last Result
	for b.Loop() {
		res, err := Run(ctx, w, s, RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Wrong > 0 {
			b.Fatalf("%d wrong verdicts, e.g. %v", res.Wrong, res.Mismatches)
		}
		last = res
	}
	b.ReportMetric(float64(last.Rows)/last.Wall.Seconds(), "addr/s")
	b.ReportMetric(float64(last.Connections), "conns")
	b.ReportMetric(float64(last.Commands), "smtp-cmds")
	b.ReportMetric(float64(last.DNSQueries), "dns-queries")
	b.ReportMetric(last.CPU.Seconds(), "cpu-s")
	b.ReportMetric(float64(last.PeakRSS)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(last.MaxSessions), "max-sessions")
	switch {
	case w.RTT > 0 && isBulk(s):
		b.ReportMetric(last.Wall.Seconds()/last.Bound.Time.Seconds(), "wall/bound")
	case w.RTT > 0 && s == Naive:
		b.ReportMetric(last.Wall.Seconds()/last.NaiveBound.Seconds(), "wall/bound")
	}
}
