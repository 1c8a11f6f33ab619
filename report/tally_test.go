package report

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestTally(t *testing.T) {
	var tl Tally
	var d Data
	tl.Fill(&d, 10)
	if len(d.ByStatus) != 0 || len(d.ByReason) != 0 || d.TopDomains != nil || d.Signals.Role != 0 {
		t.Fatalf("empty tally filled %+v", d)
	}
	rows := []Row{
		{Status: "deliverable", Reason: "accepted", Domain: "gmail.com", Provider: "Google", Free: true},
		{Status: "deliverable", Reason: "accepted", Domain: "gmail.com", Provider: "Google", Free: true, Role: true},
		{Status: "undeliverable", Reason: "mailbox_unknown", Domain: "acme.test", Provider: "Microsoft 365"},
		{Status: "unknown", Reason: "greylisted", Domain: "acme.test"},
		{Status: "unknown", Reason: "timeout", Domain: "slow.test"},
		{Status: "risky", Reason: "typo_domain", Domain: "gmial.com", TypoKnown: true, TypoSuggested: true, Disposable: true, Free: true},
		{Status: "invalid", Reason: "syntax"},
		{Status: "invalid", Reason: "nxdomain", Domain: "gmail.con", TypoSuggested: true},
	}
	for _, r := range rows {
		tl.Add(r)
	}
	tl.Fill(&d, 1)
	if want := map[string]int{"deliverable": 2, "undeliverable": 1, "unknown": 2, "risky": 1, "invalid": 2}; !reflect.DeepEqual(d.ByStatus, want) {
		t.Errorf("ByStatus %v", d.ByStatus)
	}
	if len(d.ByReason) != 7 || d.ByReason[0] != (Reason{"deliverable", "accepted", 2}) {
		t.Errorf("ByReason %v", d.ByReason)
	}
	if want := []Domain{{Domain: "acme.test", Rows: 2, Undeliverable: 1, Unknown: 1}}; !slices.Equal(d.TopDomains, want) {
		t.Errorf("TopDomains %v", d.TopDomains)
	}
	want := Signals{Disposable: 1, Free: 3, Role: 1, TypoKnown: 1, TypoSuggested: 2, ByProvider: map[string]int{"Google": 2, "Microsoft 365": 1}}
	if !reflect.DeepEqual(d.Signals, want) {
		t.Errorf("Signals %+v, want %+v", d.Signals, want)
	}
	// Filled data does not share the tally's maps.
	d.ByStatus["deliverable"] = 100
	d.Signals.ByProvider["Google"] = 100
	var again Data
	tl.Fill(&again, 5)
	if again.ByStatus["deliverable"] != 2 || again.Signals.ByProvider["Google"] != 2 || len(again.TopDomains) != 2 {
		t.Errorf("second fill %+v", again)
	}
}

func TestLatencies(t *testing.T) {
	var l Latencies
	if l.Quantile(0.5) != 0 || l.Count() != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	// 1..1000 ms in random order: p50 is 500 ms, p95 950 ms, each within
	// the 10% of a bucket (and never below the true value).
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(1000) {
		l.Observe(time.Duration(i+1) * time.Millisecond)
	}
	for q, exact := range map[float64]time.Duration{0.5: 500 * time.Millisecond, 0.95: 950 * time.Millisecond, 1: time.Second, 0: time.Millisecond} {
		got := l.Quantile(q)
		if got < exact || float64(got) > 1.1*float64(exact) {
			t.Errorf("Quantile(%v) = %v, want within 10%% above %v", q, got, exact)
		}
	}
	var edge Latencies
	edge.Observe(0)
	edge.Observe(-time.Second)
	edge.Observe(10 * time.Hour)
	if edge.Count() != 3 || edge.Quantile(0.1) != latencyMin || edge.Quantile(1) < 2*time.Minute {
		t.Errorf("edge quantiles %v %v", edge.Quantile(0.1), edge.Quantile(1))
	}
}
