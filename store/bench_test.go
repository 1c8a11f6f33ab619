package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The benchmarks use the shape of the C1 workload (benchmarks/): addresses
// u<j/D>@d<j%D>.test over D = 10,000 domains, written in input order, so
// consecutive verdicts go to different domains, as they leave the pipeline.
// Run them with one op = one verdict, side by side:
//
//	go test -run '^$' -bench . -benchtime 1000000x ./store/
//
// The engines that store/enginebench compares (a module of its own, so that
// SQLite is not a dependency of bulkverify) include these.

const benchDomains = 10000

// benchWorld holds the strings of n verdicts, made before the clock starts.
type benchWorld struct {
	addrs, domains, hosts []string
	at                    time.Time
}

func newBenchWorld(n int) *benchWorld {
	w := &benchWorld{at: time.Now()}
	for i := range benchDomains {
		w.domains = append(w.domains, "d"+strconv.Itoa(i)+".test")
	}
	for i := range 100 {
		w.hosts = append(w.hosts, "mx"+strconv.Itoa(i)+".test")
	}
	for j := range n {
		w.addrs = append(w.addrs, "u"+strconv.Itoa(j/benchDomains)+"@"+w.domains[j%benchDomains])
	}
	return w
}

func (w *benchWorld) verdict(j int) Verdict {
	v := Verdict{
		Namespace: DefaultNamespace, Address: w.addrs[j], Domain: w.domains[j%benchDomains],
		Status: "deliverable", Reason: "accepted", SMTPCode: 250, EnhancedCode: "2.1.5", Message: "2.1.5 Ok",
		MXHost: w.hosts[j%100], CatchAll: TriNo, TLS: TriYes, Attempts: 1, CheckedAt: w.at,
	}
	if j%2 == 1 {
		v.Status, v.Reason, v.SMTPCode, v.EnhancedCode, v.Message = "undeliverable", "mailbox_unknown", 550, "5.1.1", "5.1.1 Recipient address rejected: User unknown in virtual mailbox table"
	}
	return v
}

// BenchmarkPut: one op is one verdict Put, including its share of the
// commits, compactions and the final Close.
func BenchmarkPut(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "s.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w := newBenchWorld(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	report := cpuMeter(b)
	for j := range b.N {
		if err := s.Put(ctx, w.verdict(j)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	report()
}

// BenchmarkBoltKeyPerVerdict is the obvious use of bbolt, for comparison:
// one B-tree key per verdict (the same key and value bytes), committed in
// batches of DefaultBatchSize.
func BenchmarkBoltKeyPerVerdict(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "b.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w := newBenchWorld(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuMeter(b)()
	for start := 0; start < b.N; start += DefaultBatchSize {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("v"))
			if err != nil {
				return err
			}
			for j := start; j < min(start+DefaultBatchSize, b.N); j++ {
				v := w.verdict(j)
				if err := bk.Put(verdictKey(nil, v.Namespace, v.Domain, v.Address), encodeVerdict(nil, &v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// filledStore returns a store holding n verdicts, and their domains sorted.
func filledStore(b *testing.B, n int) (*Store, []string) {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "s.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w := newBenchWorld(n)
	for j := range n {
		if err := s.Put(ctx, w.verdict(j)); err != nil {
			b.Fatal(err)
		}
	}
	// Close waits for the compactions; the lookups then run alone.
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(s.Path(), Options{}); err != nil {
		b.Fatal(err)
	}
	var domains []string
	for i := range min(n, benchDomains) {
		domains = append(domains, "d"+strconv.Itoa(i)+".test")
	}
	slices.Sort(domains)
	b.Cleanup(func() { s.Close() })
	return s, domains
}

// BenchmarkLookupScan: one op is one stored verdict read by a range scan
// per domain (LookupDomains), in (domain, address) order as a domain-sorted
// run asks. The store holds 1M verdicts (b.N of them are read).
func BenchmarkLookupScan(b *testing.B) {
	s, domains := filledStore(b, 1000000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuMeter(b)()
	read := 0
	for read < b.N {
		n, err := s.LookupDomains(ctx, []string{DefaultNamespace}, domains, func(_ int, v Verdict) bool {
			read++
			return read < b.N
		})
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkLookupGet: one op is one verdict read by Get, in the same order.
func BenchmarkLookupGet(b *testing.B) {
	s, domains := filledStore(b, 1000000)
	ctx := context.Background()
	var addrs []string
	for _, d := range domains {
		for i := range 100 {
			addrs = append(addrs, "u"+strconv.Itoa(i)+"@"+d)
		}
	}
	slices.Sort(addrs)
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuMeter(b)()
	for j := range b.N {
		if _, err := s.Get(ctx, []string{DefaultNamespace}, addrs[j%len(addrs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen: one op is opening and closing a store of 1M verdicts
// (bbolt rebuilds its free list on open instead of writing it at every
// commit).
func BenchmarkOpen(b *testing.B) {
	s, _ := filledStore(b, 1000000)
	path := s.Path()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	defer b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
	defer cpuMeter(b)()
	for range b.N {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
