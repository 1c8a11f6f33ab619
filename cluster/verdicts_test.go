package cluster

import (
	"context"
	"testing"
	"time"
)

// Verdicts put by one client are read by another, expire by their own
// retention, stay within their namespace, and can be forgotten by address
// and by domain, also after a server restart.
func TestVerdictCache(t *testing.T) {
	ts := startJetStream(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return now }
	w, err := connect(t, cfg).Verdicts("acme")
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	if err := w.PutBatch(ctx, map[string]Verdict{
		"a@x.example":  {Status: "deliverable", Reason: "accepted", SMTPCode: 250, CheckedAt: now, Expires: now.Add(time.Hour)},
		"b@x.example":  {Status: "unknown", Reason: "timeout", CheckedAt: now, Expires: now.Add(-time.Second)},
		"c@y.example":  {Status: "risky", Reason: "accept_all", CatchAll: &yes, CheckedAt: now, Expires: now.Add(time.Hour)},
		"d@bü.example": {Status: "undeliverable", Reason: "mailbox_unknown", CheckedAt: now, Expires: now.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	ts.Restart()
	r, err := connect(t, cfg).Verdicts("acme")
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"a@x.example", "b@x.example", "c@y.example", "d@bü.example", "nobody@x.example", "not-an-address"}
	got, err := r.GetBatch(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["a@x.example"].SMTPCode != 250 || got["c@y.example"].CatchAll == nil || got["d@bü.example"].Status != "undeliverable" {
		t.Fatalf("GetBatch: %+v", got)
	}
	other, _ := connect(t, cfg).Verdicts("other")
	if got, _ := other.GetBatch(ctx, all); len(got) != 0 {
		t.Fatalf("another namespace sees %v", got)
	}
	if err := r.ForgetDomain(ctx, "x.example"); err != nil {
		t.Fatal(err)
	}
	if err := r.ForgetAddress(ctx, "d@bü.example"); err != nil {
		t.Fatal(err)
	}
	got, _ = r.GetBatch(ctx, all)
	if len(got) != 1 || got["c@y.example"].Status != "risky" {
		t.Fatalf("after forgetting x.example and d@: %+v", got)
	}
}

// GetBatchAsOf reads the cache as it stood at a moment: verdicts put later
// are not there, and expiry is judged at that moment.
func TestVerdictCacheAsOf(t *testing.T) {
	ts := startJetStream(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vc, err := connect(t, testConfig(ts.URL())).Verdicts("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := vc.PutBatch(ctx, map[string]Verdict{
		"old@x.example":   {Status: "deliverable", Reason: "accepted", Attempts: 2, Egress: "127.0.0.5", CheckedAt: t0.Add(-time.Hour), Expires: t0.Add(time.Hour)},
		"later@x.example": {Status: "deliverable", Reason: "accepted", CheckedAt: t0.Add(time.Minute), Expires: t0.Add(time.Hour)},
		"gone@x.example":  {Status: "unknown", Reason: "timeout", CheckedAt: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Minute)},
	}); err != nil {
		t.Fatal(err)
	}
	all := []string{"old@x.example", "later@x.example", "gone@x.example"}
	got, err := vc.GetBatchAsOf(ctx, all, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["old@x.example"].Attempts != 2 || got["old@x.example"].Egress != "127.0.0.5" {
		t.Fatalf("as of t0: %+v; want old@ alone, with its attempts and egress", got)
	}
	got, _ = vc.GetBatchAsOf(ctx, all, t0.Add(2*time.Minute))
	if len(got) != 2 {
		t.Fatalf("as of t0+2m: %+v; want old@ and later@", got)
	}
}
