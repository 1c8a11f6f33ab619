package store

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestLoadFresh(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, Retention: 10 * day})
	put := func(v Verdict) {
		t.Helper()
		if err := s.Put(ctx(t), v); err != nil {
			t.Fatal(err)
		}
	}
	now := clk.Now()
	// big.test spans several read transactions.
	const big = 2*lookupBatch + 5
	for i := range big {
		put(sample("a", fmt.Sprintf("u%05d@big.test", i), now))
	}
	put(sample("a", "same@a.test", now.Add(-time.Hour)))
	put(sample("b", "same@a.test", now)) // the newer of two namespaces wins
	put(sample("b", "only-b@a.test", now))
	stale := sample("a", "stale@a.test", now.Add(-7*time.Hour))
	stale.Status, stale.Reason = "unknown", "policy_block" // fresh for 6 hours
	put(stale)
	expired := sample("a", "expired@a.test", now.Add(-11*day)) // past retention
	put(expired)
	put(sample("other", "x@a.test", now)) // a namespace not asked for
	put(sample("a", "z@c.test", now))
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	domains := []string{"a.test", "b.test", "big.test", "c.test"}
	namespaces := []string{"a", "b"}

	vs, err := s.LoadFresh(ctx(t), namespaces, domains, 0)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Len() != 2+big+1 {
		t.Errorf("Len = %d, want %d", vs.Len(), 2+big+1)
	}
	for i := range domains {
		if !vs.Loaded(i) {
			t.Errorf("domain %s not loaded", domains[i])
		}
	}
	// Every verdict LookupDomains gives and that is fresh is in the set,
	// decoded the same; nothing else is.
	type key struct {
		domain int
		addr   string
	}
	want := map[key]Verdict{}
	if _, err := s.LookupDomains(ctx(t), namespaces, domains, func(i int, v Verdict) bool {
		if s.Fresh(v) {
			want[key{i, v.Address}] = v
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) != vs.Len() {
		t.Errorf("LookupDomains gives %d fresh verdicts, the set holds %d", len(want), vs.Len())
	}
	ids := map[int]bool{}
	for k, w := range want {
		i, addr := k.domain, k.addr
		ref, ok := vs.Lookup(addr)
		if !ok {
			t.Errorf("%s (domain %d) not found", addr, i)
			continue
		}
		if ids[ref.ID()] || ref.ID() >= vs.Len() {
			t.Errorf("%s: id %d given twice, or out of range", addr, ref.ID())
		}
		ids[ref.ID()] = true
		for _, given := range []string{addr, ""} {
			got, err := vs.Verdict(ref, given)
			if err != nil || !reflect.DeepEqual(got, w) {
				t.Errorf("Verdict(%v, %q) = %+v, %v; want %+v", ref, given, got, err, w)
			}
		}
	}
	if v, _ := vs.Verdict(mustLookup(t, vs, "same@a.test"), ""); v.Namespace != "b" {
		t.Errorf("same@a.test from namespace %q, want the newer, b", v.Namespace)
	}
	for _, miss := range []string{"stale@a.test", "expired@a.test", "x@a.test", "nobody@a.test", "same@b.test", "u@big.test"} {
		if _, ok := vs.Lookup(miss); ok {
			t.Errorf("Lookup(%s) found a verdict", miss)
		}
	}

	// A limit: the domain that does not fit is left out whole, and the
	// ones after it.
	vs, err = s.LoadFresh(ctx(t), namespaces, domains, big)
	if err != nil {
		t.Fatal(err)
	}
	if !vs.Loaded(0) || !vs.Loaded(1) || vs.Loaded(2) || vs.Loaded(3) || vs.Len() != 2 {
		t.Errorf("with a limit: loaded %v %v %v %v, %d verdicts; want a.test and b.test, 2",
			vs.Loaded(0), vs.Loaded(1), vs.Loaded(2), vs.Loaded(3), vs.Len())
	}
	if _, ok := vs.Lookup("u00001@big.test"); ok {
		t.Error("a domain left out is found")
	}

	// Freshness is judged when the set is loaded, with the store's clock.
	clk.Advance(31 * day)
	vs, err = s.LoadFresh(ctx(t), namespaces, domains, 0)
	if err != nil || vs.Len() != 0 || !vs.Loaded(3) {
		t.Errorf("a month later: %d verdicts, %v", vs.Len(), err)
	}
}

func mustLookup(t *testing.T, vs *VerdictSet, addr string) SetRef {
	t.Helper()
	ref, ok := vs.Lookup(addr)
	if !ok {
		t.Fatalf("%s not found", addr)
	}
	return ref
}

func TestLoadFreshEmpty(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	vs, err := s.LoadFresh(ctx(t), []string{"default"}, []string{"a.test", "bad\x00domain"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if vs.Len() != 0 || !vs.Loaded(0) || !vs.Loaded(1) {
		t.Errorf("Len %d, loaded %v %v", vs.Len(), vs.Loaded(0), vs.Loaded(1))
	}
	if _, ok := vs.Lookup("x@a.test"); ok {
		t.Error("found in an empty set")
	}
	if _, err := s.LoadFresh(ctx(t), nil, []string{"a.test"}, 0); err == nil {
		t.Error("no namespace: no error")
	}
}
