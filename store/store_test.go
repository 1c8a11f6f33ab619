package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func sample(ns, addr string, at time.Time) Verdict {
	return Verdict{
		Namespace: ns, Address: addr, Status: "deliverable", Reason: "accepted",
		SMTPCode: 250, EnhancedCode: "2.1.5", Message: "2.1.5 Ok, " + addr, MXHost: "mx1.example.test",
		CatchAll: TriNo, TLS: TriYes, Egress: "eu-1", Attempts: 1, CheckedAt: at,
	}
}

func lookup(t *testing.T, s *Store, namespaces []string, domain string) []Verdict {
	t.Helper()
	var got []Verdict
	if err := s.LookupDomain(ctx(t), namespaces, domain, func(v Verdict) bool {
		got = append(got, v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRoundTripAndReopen(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "sub", "store.db")
	s := openTest(t, path, Options{Now: clk.Now})
	at := clk.Now()
	want := []Verdict{
		sample("default", "a@example.test", at),
		{Namespace: "default", Address: "b@example.test", Domain: "example.test", Status: "undeliverable", Reason: "mailbox_unknown",
			SMTPCode: 550, EnhancedCode: "5.1.1", Message: "no such user", MXHost: "mx1.example.test", Attempts: 2, CheckedAt: at},
		{Namespace: "default", Address: "c@example.test", Domain: "example.test", Status: "unknown", Reason: "greylisted",
			CatchAll: TriYes, CheckedAt: at},
	}
	for _, v := range want {
		if err := s.Put(ctx(t), v); err != nil {
			t.Fatal(err)
		}
	}
	want[0].Domain = "example.test"
	if err := s.Put(ctx(t), sample("default", "x@other.test", at)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, s, []string{"default"}, "example.test"); !reflect.DeepEqual(got, want) {
		t.Fatalf("lookup:\n got %+v\nwant %+v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}

	s = openTest(t, path, Options{Now: clk.Now})
	if got := lookup(t, s, []string{"default"}, "example.test"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening:\n got %+v\nwant %+v", got, want)
	}
	v, err := s.Get(ctx(t), []string{"default"}, "b@example.test")
	if err != nil || !reflect.DeepEqual(v, want[1]) {
		t.Errorf("Get = %+v, %v", v, err)
	}
	if _, err := s.Get(ctx(t), []string{"default"}, "zz@example.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown address: %v", err)
	}
}

func TestLaterPutWins(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, BatchSize: 7})
	// Enough batches to make several segments and compactions.
	for round := range 40 {
		for i := range 50 {
			v := sample("default", fmt.Sprintf("u%02d@d.test", i), clk.Now())
			v.Attempts = round + 1
			if err := s.Put(ctx(t), v); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Second)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	got := lookup(t, s, []string{"default"}, "d.test")
	if len(got) != 50 {
		t.Fatalf("%d verdicts, want 50", len(got))
	}
	for i, v := range got {
		if v.Address != fmt.Sprintf("u%02d@d.test", i) || v.Attempts != 40 {
			t.Errorf("verdict %d: %s attempts %d, want the last Put (40)", i, v.Address, v.Attempts)
		}
	}
	st, err := s.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Segments >= levelFanout*3 {
		t.Errorf("%d segments after 2000 puts in batches of 7: compaction does not keep up", st.Segments)
	}
}

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v := func(status, reason string, age time.Duration) Verdict {
		return Verdict{Status: status, Reason: reason, CheckedAt: now.Add(-age)}
	}
	tests := []struct {
		name string
		f    Freshness
		v    Verdict
		want bool
	}{
		{"deliverable 29 days", Freshness{}, v("deliverable", "accepted", 29*day), true},
		{"deliverable 31 days", Freshness{}, v("deliverable", "accepted", 31*day), false},
		{"undeliverable 10 days", Freshness{}, v("undeliverable", "mailbox_unknown", 10*day), true},
		{"invalid 10 days", Freshness{}, v("invalid", "nxdomain", 10*day), true},
		{"risky 6 days", Freshness{}, v("risky", "accept_all", 6*day), true},
		{"risky 8 days", Freshness{}, v("risky", "accept_all", 8*day), false},
		{"unknown 5 hours", Freshness{}, v("unknown", "policy_block", 5*time.Hour), true},
		{"unknown 7 hours", Freshness{}, v("unknown", "policy_block", 7*time.Hour), false},
		{"greylisted 30 minutes", Freshness{}, v("unknown", "greylisted", 30*time.Minute), true},
		{"greylisted 2 hours", Freshness{}, v("unknown", "greylisted", 2*time.Hour), false},
		{"timeout 2 hours", Freshness{}, v("unknown", "timeout", 2*time.Hour), false},
		{"unlisted status", Freshness{}, v("weird", "x", 5*time.Hour), true},
		{"unlisted status, old", Freshness{}, v("weird", "x", 7*time.Hour), false},
		{"Other set", Freshness{Other: time.Hour}, v("weird", "x", 2*time.Hour), false},
		{"status configured", Freshness{ByStatus: map[string]time.Duration{"deliverable": 60 * day}}, v("deliverable", "accepted", 45*day), true},
		{"status never reused", Freshness{ByStatus: map[string]time.Duration{"risky": 0}}, v("risky", "accept_all", time.Minute), false},
		{"reason configured wins over status", Freshness{ByStatus: map[string]time.Duration{"unknown": 0},
			ByReason: map[string]time.Duration{"policy_block": 2 * day}}, v("unknown", "policy_block", day), true},
		{"default reason wins over configured status", Freshness{ByStatus: map[string]time.Duration{"unknown": 30 * day}}, v("unknown", "greylisted", 2*time.Hour), false},
		{"max age caps", Freshness{MaxAge: day}, v("deliverable", "accepted", 2*day), false},
		{"max age above lifetime", Freshness{MaxAge: 90 * day}, v("risky", "accept_all", 8*day), false},
		{"refresh", Freshness{Refresh: true}, v("deliverable", "accepted", time.Second), false},
		{"from the future", Freshness{}, v("deliverable", "accepted", -time.Hour), false},
		{"just checked", Freshness{}, v("unknown", "greylisted", 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.VerdictFresh(tt.v, now); got != tt.want {
				t.Errorf("VerdictFresh = %v, want %v (lifetime %v)", got, tt.want, tt.f.Lifetime(tt.v.Status, tt.v.Reason))
			}
			if got := tt.f.freshAt(tt.v.CheckedAt.Unix(), tt.v.Status, tt.v.Reason, now); got != tt.want {
				t.Errorf("freshAt (LoadFresh's) = %v, want %v", got, tt.want)
			}
		})
	}
	ca := func(tri Tri, age time.Duration) DomainInfo {
		return DomainInfo{Domain: "d.test", CatchAll: tri, CatchAllAt: now.Add(-age)}
	}
	caTests := []struct {
		name string
		f    Freshness
		d    DomainInfo
		want bool
	}{
		{"yes 6 days", Freshness{}, ca(TriYes, 6*day), true},
		{"no 6 days", Freshness{}, ca(TriNo, 6*day), true},
		{"8 days", Freshness{}, ca(TriYes, 8*day), false},
		{"unknown answer", Freshness{}, ca(TriUnknown, time.Minute), false},
		{"configured", Freshness{CatchAll: time.Hour}, ca(TriYes, 2*time.Hour), false},
		{"max age", Freshness{MaxAge: time.Hour}, ca(TriYes, 2*time.Hour), false},
		{"refresh", Freshness{Refresh: true}, ca(TriYes, time.Minute), false},
	}
	for _, tt := range caTests {
		t.Run("catch-all "+tt.name, func(t *testing.T) {
			if got := tt.f.CatchAllFresh(tt.d, now); got != tt.want {
				t.Errorf("CatchAllFresh = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStoreFreshUsesRetentionAndClock(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, Retention: 10 * day,
		Freshness: Freshness{ByStatus: map[string]time.Duration{"deliverable": 20 * day}}})
	v := sample("default", "a@d.test", clk.Now())
	if !s.Fresh(v) {
		t.Error("a verdict just checked is not fresh")
	}
	clk.Advance(11 * day)
	if s.Fresh(v) {
		t.Error("a verdict past retention is fresh")
	}
}

func TestRetention(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Now: clk.Now, Retention: 10 * day})
	old := sample("default", "old@d.test", clk.Now())
	if err := s.Put(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDomain(ctx(t), DomainInfo{Domain: "d.test", CatchAll: TriNo, CatchAllAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMX(ctx(t), MXInfo{Host: "mx.d.test", StartTLS: TriYes, StartTLSAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * day)
	if err := s.Put(ctx(t), sample("default", "new@d.test", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * day) // old is 11 days old, new 5
	got := lookup(t, s, []string{"default"}, "d.test")
	if len(got) != 1 || got[0].Address != "new@d.test" {
		t.Fatalf("past retention, still served: %+v", got)
	}
	if _, err := s.Get(ctx(t), []string{"default"}, "old@d.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an expired verdict: %v", err)
	}
	if _, err := s.Domain(ctx(t), "d.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Domain past retention: %v", err)
	}
	if _, err := s.MX(ctx(t), "mx.d.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MX past retention: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening more than a day after the last prune deletes them for good:
	// a longer retention afterwards does not bring them back.
	s = openTest(t, path, Options{Now: clk.Now, Retention: 10 * day})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{Now: clk.Now, Retention: 100 * day})
	got = lookup(t, s, []string{"default"}, "d.test")
	if len(got) != 1 || got[0].Address != "new@d.test" {
		t.Fatalf("after the automatic prune: %+v", got)
	}
	if _, err := s.Domain(ctx(t), "d.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("domain not deleted: %v", err)
	}
	st, err := s.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.MXHosts != 0 || st.Domains != 0 || !st.LastPrune.Equal(clk.Now()) || st.Namespaces[0].Verdicts != 1 {
		t.Errorf("stats after prune: %+v", st)
	}
}

func TestPrune(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, BatchSize: 3})
	for day := range 10 {
		for i := range 5 {
			if err := s.Put(ctx(t), sample("default", fmt.Sprintf("u%d-%d@d.test", day, i), clk.Now())); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(24 * time.Hour)
	}
	rm, err := s.Prune(ctx(t), 5*24*time.Hour+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Checked 10, 9, ... 1 days ago: those of 10..6 days ago go.
	if rm.Verdicts != 25 {
		t.Errorf("pruned %d, want 25", rm.Verdicts)
	}
	got := lookup(t, s, []string{"default"}, "d.test")
	if len(got) != 25 {
		t.Fatalf("%d left, want 25", len(got))
	}
	for _, v := range got {
		if clk.Now().Sub(v.CheckedAt) > 5*24*time.Hour {
			t.Errorf("%s checked %v ago survived", v.Address, clk.Now().Sub(v.CheckedAt))
		}
	}
}

func TestNamespaces(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now})
	a := sample("acme", "x@d.test", clk.Now())
	a.Status = "undeliverable"
	if err := s.Put(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	b := sample("globex", "x@d.test", clk.Now())
	if err := s.Put(ctx(t), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx(t), sample("globex", "y@d.test", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	b.Domain = "d.test"
	a.Domain = "d.test"

	if got := lookup(t, s, []string{"acme"}, "d.test"); len(got) != 1 || !reflect.DeepEqual(got[0], a) {
		t.Errorf("acme sees %+v", got)
	}
	if got := lookup(t, s, []string{"initech"}, "d.test"); len(got) != 0 {
		t.Errorf("a namespace with nothing sees %+v", got)
	}
	// Shared explicitly: each address once, the most recent verdict.
	got := lookup(t, s, []string{"acme", "globex"}, "d.test")
	if len(got) != 2 || !reflect.DeepEqual(got[0], b) || got[1].Address != "y@d.test" || got[1].Namespace != "globex" {
		t.Errorf("acme+globex sees %+v", got)
	}
	if _, err := s.Get(ctx(t), []string{"acme"}, "y@d.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get across namespaces: %v", err)
	}
	nss, err := s.Namespaces(ctx(t))
	if err != nil || !reflect.DeepEqual(nss, []string{"acme", "globex"}) {
		t.Errorf("Namespaces = %v, %v", nss, err)
	}
	if err := s.LookupDomain(ctx(t), nil, "d.test", func(Verdict) bool { return true }); !errors.Is(err, ErrBadKey) {
		t.Errorf("lookup in no namespace: %v", err)
	}
	if err := s.Put(ctx(t), sample("bad name", "z@d.test", clk.Now())); !errors.Is(err, ErrBadKey) {
		t.Errorf("Put with a bad namespace: %v", err)
	}
}

func TestForget(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, BatchSize: 4})
	for _, ns := range []string{"a", "b"} {
		for _, addr := range []string{"p@one.test", "q@one.test", "p@two.test", "r@three.test"} {
			if err := s.Put(ctx(t), sample(ns, addr, clk.Now())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.PutDomain(ctx(t), DomainInfo{Domain: "one.test", CatchAll: TriNo, CatchAllAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	// Some of it still buffered: forget covers that too.
	n, err := s.ForgetAddress(ctx(t), nil, "P@one.test") // the local part in another case
	if err != nil || n != 2 {
		t.Fatalf("ForgetAddress = %d, %v; want 2", n, err)
	}
	n, err = s.ForgetAddress(ctx(t), []string{"a"}, "r@three.test")
	if err != nil || n != 1 {
		t.Fatalf("ForgetAddress in a = %d, %v; want 1", n, err)
	}
	rm, err := s.ForgetDomain(ctx(t), []string{"b"}, "two.test")
	if err != nil || rm.Verdicts != 1 || rm.Domains != 0 {
		t.Fatalf("ForgetDomain in b = %+v, %v", rm, err)
	}
	rm, err = s.ForgetDomain(ctx(t), nil, "one.test")
	if err != nil || rm.Verdicts != 2 || rm.Domains != 1 {
		t.Fatalf("ForgetDomain everywhere = %+v, %v", rm, err)
	}
	var left []string
	if err := s.Each(ctx(t), nil, func(v Verdict) error {
		left = append(left, v.Namespace+":"+v.Address)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"a:p@two.test", "b:r@three.test"}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if _, err := s.Domain(ctx(t), "one.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("domain answer not forgotten: %v", err)
	}
}

func TestDomainAndMXKnowledge(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTest(t, path, Options{Now: clk.Now})
	t0 := clk.Now()
	d := DomainInfo{Domain: "d.test", CatchAll: TriYes, CatchAllMX: "mx.d.test", CatchAllAt: t0}
	if err := s.PutDomain(ctx(t), d); err != nil {
		t.Fatal(err)
	}
	m1 := MXInfo{Host: "mx.d.test", RcptPerTransaction: 10, RcptPerConnection: 100, LimitsAt: t0,
		StartTLS: TriYes, StartTLSAt: t0,
		Refusals: []Refusal{{Egress: "eu-1", Operator: "Example", Reply: "554 5.7.1 blocked", At: t0}}}
	if err := s.PutMX(ctx(t), m1); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	t1 := clk.Now()
	// What is learnt later is merged: the limits stay, greylisting is added,
	// a refusal of another egress is kept beside the first, an older
	// catch-all answer does not replace the newer one.
	m2 := MXInfo{Host: "mx.d.test", GreylistedAt: t1,
		Refusals: []Refusal{{Egress: "us-1", Operator: "Example", Reply: "550 5.7.1 no", At: t1}}}
	if err := s.PutMX(ctx(t), m2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDomain(ctx(t), DomainInfo{Domain: "d.test", CatchAll: TriNo, CatchAllAt: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{Now: clk.Now})
	gotD, err := s.Domain(ctx(t), "d.test")
	if err != nil || !reflect.DeepEqual(gotD, d) {
		t.Errorf("Domain = %+v, %v; want %+v", gotD, err, d)
	}
	if !s.CatchAllFresh(gotD) {
		t.Error("catch-all answer an hour old is not fresh")
	}
	want := m1
	want.GreylistedAt = t1
	want.Refusals = append(want.Refusals, m2.Refusals...)
	gotM, err := s.MX(ctx(t), "mx.d.test")
	if err != nil || !reflect.DeepEqual(gotM, want) {
		t.Errorf("MX = %+v, %v\nwant %+v", gotM, err, want)
	}
	if _, err := s.MX(ctx(t), "other.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown host: %v", err)
	}
}

func TestMergeMXKeepsNewestRefusals(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var m MXInfo
	for i := range maxRefusals + 5 {
		m = mergeMX(m, MXInfo{Host: "h", Refusals: []Refusal{{Egress: fmt.Sprint("e", i), At: t0.Add(time.Duration(i) * time.Minute)}}})
	}
	if len(m.Refusals) != maxRefusals {
		t.Fatalf("%d refusals kept", len(m.Refusals))
	}
	for _, r := range m.Refusals {
		if r.At.Before(t0.Add(5 * time.Minute)) {
			t.Errorf("kept the old refusal %+v", r)
		}
	}
	// A newer refusal of the same egress and operator replaces the older.
	m = mergeMX(m, MXInfo{Refusals: []Refusal{{Egress: "e10", Reply: "again", At: t0.Add(time.Hour)}}})
	n := 0
	for _, r := range m.Refusals {
		if r.Egress == "e10" {
			n++
			if r.Reply != "again" {
				t.Errorf("older refusal kept: %+v", r)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d refusals of e10", n)
	}
}

func TestBoundedText(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now})
	v := sample("default", "a@d.test", clk.Now())
	v.Message = strings.Repeat("é", 1000)
	if err := s.Put(ctx(t), v); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx(t), []string{"default"}, "a@d.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Message) > MaxMessageBytes || !utf8.ValidString(got.Message) || len(got.Message) < MaxMessageBytes-1 {
		t.Errorf("message of %d bytes (valid UTF-8: %v)", len(got.Message), utf8.ValidString(got.Message))
	}
	for _, bad := range []Verdict{
		{Address: ""}, {Address: "a\x00b@d.test"}, {Address: "x@" + strings.Repeat("d", 400)},
	} {
		if err := s.Put(ctx(t), bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("Put(%q) = %v, want ErrBadKey", bad.Address, err)
		}
	}
}

func TestReadsSeeCommittedOnly(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, FlushInterval: time.Hour})
	if err := s.Put(ctx(t), sample("default", "a@d.test", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, s, []string{"default"}, "d.test"); len(got) != 0 {
		t.Errorf("buffered verdict visible before Flush: %+v", got)
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, s, []string{"default"}, "d.test"); len(got) != 1 {
		t.Errorf("after Flush: %+v", got)
	}
}

func TestFlushInterval(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, FlushInterval: 10 * time.Millisecond})
	if err := s.Put(ctx(t), sample("default", "a@d.test", clk.Now())); err != nil {
		t.Fatal(err)
	}
	// The timer commits it without Flush: poll until it does.
	waitFor(t, 30*time.Second, func() error {
		if got := lookup(t, s, []string{"default"}, "d.test"); len(got) != 1 {
			return fmt.Errorf("%d verdicts visible", len(got))
		}
		return nil
	})
}

// waitFor polls cond until it returns nil, failing with its last error
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentPutsAndReads(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now, BatchSize: 50})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if err := s.Put(ctx(t), sample("default", fmt.Sprintf("g%d-%03d@d%d.test", g, i, i%7), clk.Now())); err != nil {
					t.Error(err)
					return
				}
				if i%100 == 0 {
					lookup(t, s, []string{"default"}, "d1.test")
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	total := 0
	if err := s.Each(ctx(t), nil, func(Verdict) error { total++; return nil }); err != nil {
		t.Fatal(err)
	}
	if total != 2000 {
		t.Errorf("%d verdicts stored, want 2000", total)
	}
}

func TestClosed(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Put(ctx(t), sample("default", "a@d.test", time.Now())); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
}

// sortBatch orders by key, equal keys in Put order, whatever prefix the
// keys share.
func TestSortBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var b batch
		n := rng.IntN(300)
		for range n {
			k := []byte("default\x00d")
			// Past 16 bytes after the common prefix, sortBatch compares
			// whole keys: up to 30 reaches that path.
			for range rng.IntN(30) {
				k = append(k, "ab\x00c"[rng.IntN(4)])
			}
			off := uint32(len(b.buf))
			b.buf = append(b.buf, k...)
			voff := uint32(len(b.buf))
			b.buf = append(b.buf, byte(len(b.ents)))
			b.ents = append(b.ents, entRef{off, voff, uint32(len(b.buf))})
		}
		want := slices.Clone(b.ents)
		slices.SortStableFunc(want, func(x, y entRef) int { return bytes.Compare(b.buf[x.k:x.v], b.buf[y.k:y.v]) })
		sortBatch(&b)
		if !slices.Equal(b.ents, want) {
			t.Fatalf("round %d: sortBatch differs from a stable sort", round)
		}
	}
}

func TestSamePutTwiceInABatch(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now})
	for i := range 3 {
		v := sample("default", "a@d.test", clk.Now())
		v.Attempts = i + 1
		if err := s.Put(ctx(t), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, s, []string{"default"}, "d.test"); len(got) != 1 || got[0].Attempts != 3 {
		t.Errorf("got %+v, want the last Put only", got)
	}
}

// A domain with more verdicts than one read transaction takes is read in
// several, each address once and in order, across namespaces; fn may write
// to the store meanwhile.
func TestLookupLargeDomain(t *testing.T) {
	clk := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"), Options{Now: clk.Now})
	const n = 3*lookupBatch + 17
	for i := range n {
		ns := "a"
		if i%3 == 0 {
			ns = "b"
		}
		if err := s.Put(ctx(t), sample(ns, fmt.Sprintf("u%06d@big.test", i), clk.Now())); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // also in the other namespace, older
			v := sample("b", fmt.Sprintf("u%06d@big.test", i), clk.Now().Add(-time.Hour))
			if ns == "b" {
				v.Namespace = "a"
			}
			if err := s.Put(ctx(t), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []string{"a.test", "zz.test"} {
		if err := s.Put(ctx(t), sample("a", "x@"+d, clk.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var got []string
	domainsSeen := map[int]int{}
	total, err := s.LookupDomains(ctx(t), []string{"a", "b"}, []string{"a.test", "big.test", "none.test", "zz.test"}, func(i int, v Verdict) bool {
		domainsSeen[i]++
		if i == 1 {
			if !v.CheckedAt.Equal(clk.Now()) {
				t.Errorf("%s: the older of two namespaces' verdicts", v.Address)
			}
			got = append(got, v.Address)
		}
		if len(got) == lookupBatch+1 {
			// Writing from fn is allowed.
			if err := s.Put(ctx(t), sample("c", "late@big.test", clk.Now())); err != nil {
				t.Error(err)
			}
			if err := s.Flush(ctx(t)); err != nil {
				t.Error(err)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != n+2 || len(got) != n || domainsSeen[0] != 1 || domainsSeen[2] != 0 || domainsSeen[3] != 1 {
		t.Fatalf("gave %d (big.test %d), per domain %v", total, len(got), domainsSeen)
	}
	for i, a := range got {
		if want := fmt.Sprintf("u%06d@big.test", i); a != want {
			t.Fatalf("verdict %d is %s, want %s", i, a, want)
		}
	}
	// Stopping early stops.
	k := 0
	total, err = s.LookupDomains(ctx(t), []string{"a"}, []string{"big.test"}, func(int, Verdict) bool { k++; return k < lookupBatch+5 })
	if err != nil || total != lookupBatch+5 {
		t.Errorf("stopped after %d, %v", total, err)
	}
}
