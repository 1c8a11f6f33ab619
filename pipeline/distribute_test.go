package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/store"
)

// localDist is a Distributor in this process: each unit is probed by a
// UnitProber as soon as it is submitted, as a cluster's workers would. It
// records the units, and can lose chosen units' results (a cut that
// differs from the one a cluster holds).
type localDist struct {
	p    *UnitProber
	drop func(round int, u WorkUnit) bool

	mu     sync.Mutex
	rounds map[int]*localRound
	units  map[int][]WorkUnit
}

type localRound struct {
	results chan keyedVerdict
	wg      sync.WaitGroup
}

type keyedVerdict struct {
	key uint64
	v   Verdict
}

func newLocalDist(p *UnitProber) *localDist {
	return &localDist{p: p, rounds: map[int]*localRound{}, units: map[int][]WorkUnit{}}
}

func (d *localDist) round(n int) *localRound {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.rounds[n]
	if r == nil {
		r = &localRound{results: make(chan keyedVerdict)}
		d.rounds[n] = r
	}
	return r
}

func (d *localDist) Submit(ctx context.Context, round int, units iter.Seq[WorkUnit]) error {
	lr := d.round(round)
	for u := range units {
		d.mu.Lock()
		d.units[round] = append(d.units[round], u)
		d.mu.Unlock()
		if d.drop != nil && d.drop(round, u) {
			continue
		}
		addrs := make([]input.Address, len(u.Addresses))
		for i, a := range u.Addresses {
			addrs[i] = a.Addr
		}
		known := map[string]UnitDomain{}
		for _, m := range u.Domains {
			known[m.Domain] = UnitDomain{Mail: &m}
		}
		lr.wg.Go(func() {
			_ = d.p.Probe(ctx, addrs, known, func(i int, v Verdict) {
				select {
				case lr.results <- keyedVerdict{u.Addresses[i].Key, v}:
				case <-ctx.Done():
				}
			})
		})
	}
	go func() {
		lr.wg.Wait()
		close(lr.results)
	}()
	return nil
}

func (d *localDist) Collect(ctx context.Context, round int, checkpoint func() error, fn func(uint64, Verdict) error) error {
	for kv := range d.round(round).results {
		if err := fn(kv.key, kv.v); err != nil {
			return err
		}
	}
	if err := checkpoint(); err != nil {
		return err
	}
	return ctx.Err()
}

// distribute runs Distribute over csvText through a localDist and returns
// the rows written, the summary and the distributor.
func (h *harness) distribute(csvText string, d Distribution, skip func(int) bool) ([]row, Summary, *localDist) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	p := NewUnitProber(ctx, h.cfg, h.resolver())
	defer p.Close()
	ld := newLocalDist(p)
	if d.Remote != nil {
		ld.drop = d.Remote.(*localDist).drop
	}
	d.Remote = ld
	src, err := input.NewReader(strings.NewReader(csvText), input.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out bytes.Buffer
	sink, err := output.NewCSV(&out, src.Header())
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.cfg
	cfg.Skip = skip
	sum, err := Distribute(ctx, cfg, d, h.resolver(), src, sink)
	if err != nil {
		h.t.Fatalf("Distribute: %v", err)
	}
	return parseRows(h.t, &out), sum, ld
}

// statusesInput is TestStatuses's input with duplicates, more addresses of
// the hosts, and one do-not-probe domain, 40 rows.
func statusesInput() string {
	var b strings.Builder
	b.WriteString("name,email\n")
	for i, e := range []string{
		"alice@acme.test", "nobody@acme.test", "full@acme.test", "blocked@acme.test", "later@acme.test",
		"not-an-address", "someone@nonexistent.test", "someone@nullmx.test", "ivan@implicit.test",
		"eve@failover.test", "someone@down.test", "someone@broken.test", "someone@dangling.test",
		"Bob@ACME.test", "a@[127.0.0.1]", "alice@acme.test", "ann@one.test", "ben@two.test", "cat@three.test",
		"x@one.test", "y@two.test", "z@three.test", "ann@one.test", "bob@acme.test", "q@skip.test",
	} {
		fmt.Fprintf(&b, "r%d,%s\n", i, e)
	}
	for i := range 15 {
		fmt.Fprintf(&b, "s%d,u%d@acme.test\n", i, i)
	}
	return b.String()
}

// byRow indexes rows by their row number.
func byRow(t *testing.T, rows []row) map[string]row {
	t.Helper()
	m := map[string]row{}
	for _, r := range rows {
		if _, dup := m[r["row"]]; dup {
			t.Errorf("row %s twice", r["row"])
		}
		m[r["row"]] = r
	}
	return m
}

// sameRows asserts that got holds want's rows, equal in every column but
// checked_at.
func sameRows(t *testing.T, want, got []row) {
	t.Helper()
	w, g := byRow(t, want), byRow(t, got)
	if len(g) != len(w) {
		t.Errorf("%d rows, want %d", len(g), len(w))
	}
	for n, wr := range w {
		gr, ok := g[n]
		if !ok {
			t.Errorf("row %s (%s) missing", n, wr["email"])
			continue
		}
		for col, v := range wr {
			if col != "checked_at" && gr[col] != v {
				t.Errorf("row %s (%s): %s = %q, want %q", n, wr["email"], col, gr[col], v)
			}
		}
	}
}

// A distributed run writes what a local run writes, row for row, whether
// the input fits in memory or is partitioned on disk, with units small
// enough that a host's addresses are several units.
func TestDistributeWritesWhatRunWrites(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.DoNotProbe = DoNotProbe{Domains: map[string]bool{"skip.test": true}}
	in := statusesInput()
	want, _ := h.run(in)
	checkEveryRowOnce(t, want, 40)
	for _, memRows := range []int{0, 8} {
		t.Run(fmt.Sprintf("memory_rows=%d", memRows), func(t *testing.T) {
			h.t = t
			h.cfg.MemoryRows = memRows
			got, sum, ld := h.distribute(in, Distribution{UnitSize: 4}, nil)
			sameRows(t, want, got)
			if sum.Rows != 40 || sum.Probed != 40 {
				t.Errorf("summary: %+v", sum)
			}
			if memRows > 0 && sum.Memory.Partitions < 2 {
				t.Errorf("%d partitions; the test meant to partition the input", sum.Memory.Partitions)
			}
			hosts := map[string]int{}
			for _, u := range ld.units[0] {
				if len(u.Addresses) > 4 {
					t.Errorf("unit %s has %d addresses, more than 4", u.ID, len(u.Addresses))
				}
				for _, m := range u.Domains {
					if m.Hosts[0].Host != u.Host {
						t.Errorf("unit %s of host %s holds %s, whose primary MX is %s", u.ID, u.Host, m.Domain, m.Hosts[0].Host)
					}
				}
				hosts[u.Host]++
			}
			if hosts["mx1.acme.test"] < 2 {
				t.Errorf("the big host's addresses in %d units, want several", hosts["mx1.acme.test"])
			}
			if len(ld.units) != 1 {
				t.Errorf("%d rounds, want 1", len(ld.units))
			}
		})
	}
}

// The same input cuts into the same units with the same keys, whatever an
// earlier run already wrote (rows Config.Skip names are not written again).
func TestDistributeCutIsDeterministic(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.MemoryRows = 8
	in := statusesInput()
	_, _, first := h.distribute(in, Distribution{UnitSize: 3}, nil)
	skip := func(row int) bool { return row%3 == 0 }
	rows, sum, second := h.distribute(in, Distribution{UnitSize: 3, Begin: func(context.Context) (bool, error) { return true, nil }}, skip)
	if !slices.EqualFunc(first.units[0], second.units[0], func(a, b WorkUnit) bool {
		return a.ID == b.ID && a.Host == b.Host && slices.Equal(a.Addresses, b.Addresses)
	}) {
		t.Errorf("the units differ:\n%v\n%v", first.units[0], second.units[0])
	}
	for _, r := range rows {
		if n := atoi(t, r["row"]); skip(n) {
			t.Errorf("row %d was written again", n)
		}
	}
	if sum.Skipped != 13 || len(rows) != 27 {
		t.Errorf("skipped %d, wrote %d rows; want 13 and 27", sum.Skipped, len(rows))
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// Rows whose unit never comes back (a cluster that holds another cut of the
// input under the same unit id) are found when every unit is done, and
// their addresses go out again in a repair round: every row once.
func TestDistributeRepairRound(t *testing.T) {
	h := newHarness(t, world())
	in := statusesInput()
	want, _ := h.run(in)
	lost := &localDist{drop: func(round int, u WorkUnit) bool { return round == 0 && u.Host == "mx1.acme.test" }}
	got, _, ld := h.distribute(in, Distribution{UnitSize: 5, Remote: lost}, nil)
	sameRows(t, want, got)
	if len(ld.units[1]) == 0 {
		t.Fatal("no repair round")
	}
	for _, u := range ld.units[1] {
		if u.Host != "mx1.acme.test" || !strings.HasPrefix(u.ID, "r1") {
			t.Errorf("repair unit %s of %s", u.ID, u.Host)
		}
	}
}

// A cache answers the addresses it holds fresh (source stored) before any
// unit is cut, and remembers what the run found.
func TestDistributeCache(t *testing.T) {
	h := newHarness(t, world())
	cache := &memCache{}
	in := "email\nalice@acme.test\nnobody@acme.test\nsomeone@nonexistent.test\nann@one.test\n"
	first, _, _ := h.distribute(in, Distribution{Cache: cache}, nil)
	checkEveryRowOnce(t, first, 4)
	if len(cache.got) != 4 {
		t.Fatalf("remembered %d verdicts, want 4", len(cache.got))
	}
	rcpt := h.sim.TotalCommands("RCPT")
	second, sum, ld := h.distribute(in, Distribution{Cache: cache}, nil)
	sameRowsBut(t, first, second, "checked_at", "source")
	if sum.Stored != 4 || len(ld.units[0]) != 0 || h.sim.TotalCommands("RCPT") != rcpt {
		t.Errorf("second run: %d stored, %d units, %d more RCPT; want all from the cache", sum.Stored, len(ld.units[0]), h.sim.TotalCommands("RCPT")-rcpt)
	}
}

func sameRowsBut(t *testing.T, want, got []row, except ...string) {
	t.Helper()
	w, g := byRow(t, want), byRow(t, got)
	for n, wr := range w {
		for col, v := range wr {
			if !slices.Contains(except, col) && g[n][col] != v {
				t.Errorf("row %s: %s = %q, want %q", n, col, g[n][col], v)
			}
		}
	}
}

// memCache is a VerdictCache in memory.
type memCache struct {
	mu  sync.Mutex
	got map[string]store.Verdict
}

func (c *memCache) Lookup(_ context.Context, addrs []string) (map[string]store.Verdict, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]store.Verdict{}
	for _, a := range addrs {
		if v, ok := c.got[a]; ok {
			out[a] = v
		}
	}
	return out, nil
}

func (c *memCache) Remember(_ context.Context, vs []store.Verdict) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]store.Verdict{}
	}
	for _, v := range vs {
		c.got[v.Address] = v
	}
	return nil
}

// The rows file gives back each record at its key, also a record longer
// than one read, and every record in order.
func TestRowsFile(t *testing.T) {
	rf, err := newRowsFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rf.close()
	long := strings.Repeat("x", 2000)
	recs := []struct {
		addr input.Address
		rows rowRefs
	}{
		{input.Address{Local: "a", Domain: "x.test"}, rowRefs{first: rowRef{row: 1, fields: []string{"1", "a@x.test"}}}},
		{input.Address{Local: "bé", Domain: "y.test", NeedsSMTPUTF8: true}, rowRefs{first: rowRef{row: 2, fields: []string{long}},
			more: []rowRef{{row: 9, fields: []string{"9", ""}}}}},
		{input.Address{Local: "c", Domain: "z.test"}, rowRefs{first: rowRef{row: 3, fields: nil}}},
	}
	var keys []uint64
	for _, r := range recs {
		k, err := rf.add(r.addr.String(), r.addr, r.rows)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if _, err := rf.read(keys[1]); err == nil {
		t.Fatal("read a record not yet flushed")
	}
	if err := rf.flush(); err != nil {
		t.Fatal(err)
	}
	check := func(got rowsRecord, i int) {
		t.Helper()
		want := recs[i]
		if got.addr != want.addr || got.text != want.addr.String() || got.rows.first.row != want.rows.first.row ||
			len(got.rows.more) != len(want.rows.more) || strings.Join(got.rows.first.fields, ",") != strings.Join(want.rows.first.fields, ",") {
			t.Errorf("record %d: %+v, want %+v", i, got, want)
		}
	}
	for i, k := range keys {
		got, err := rf.read(k)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		check(got, i)
	}
	i := 0
	for got, err := range rf.all() {
		if err != nil {
			t.Fatal(err)
		}
		if got.key != keys[i] {
			t.Errorf("record %d at %d, want %d", i, got.key, keys[i])
		}
		check(got, i)
		i++
	}
	if i != len(recs) {
		t.Errorf("all gave %d records, want %d", i, len(recs))
	}
	if _, err := rf.read(keys[1] + 1); err == nil {
		t.Error("a key inside a record read as one")
	}
}
