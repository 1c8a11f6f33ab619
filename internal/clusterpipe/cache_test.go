package clusterpipe

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/internal/natstest"
	"github.com/bulkverify/bulkverify/store"
)

// startNATS starts a real nats-server with JetStream in the test process.
func startNATS(t *testing.T) string { return natstest.Start(t, server.Options{}).URL() }

// The cache reads verdicts as they stood when the job began, judged by
// the run's freshness (its --max-age too), reads the shared namespaces
// after the job's own, and keeps what it writes for its class's lifetime,
// whatever --max-age the writing run had.
func TestCache(t *testing.T) {
	ctx := context.Background()
	conn, err := cluster.Connect(ctx, cluster.Config{URL: startNATS(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	shared, err := NewCache(conn, []string{"team.b"}, store.Freshness{})
	if err != nil {
		t.Fatal(err)
	}
	if err := shared.Remember(ctx, []store.Verdict{
		{Address: "s@x.test", Status: "deliverable", Reason: "accepted", CheckedAt: t0.Add(-time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := NewCache(conn, []string{"team.a", "team.b"}, store.Freshness{MaxAge: 90 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.AsOf = t0
	if err := c.Remember(ctx, []store.Verdict{
		{Address: "old@x.test", Status: "undeliverable", Reason: "mailbox_unknown", SMTPCode: 550, Attempts: 1, CheckedAt: t0.Add(-time.Minute)},
		{Address: "new@x.test", Status: "deliverable", Reason: "accepted", CheckedAt: t0.Add(time.Minute)},
		{Address: "stale@x.test", Status: "deliverable", Reason: "accepted", CheckedAt: t0.Add(-2 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup(ctx, []string{"old@x.test", "new@x.test", "stale@x.test", "s@x.test", "none@x.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["old@x.test"].SMTPCode != 550 || got["s@x.test"].Status != "deliverable" {
		t.Fatalf("as of the job's start, with a max age of 90m: %+v; want old@ (own) and s@ (shared)", got)
	}
	// A run without the max age finds the stale one: it was kept for its
	// class's lifetime (30 days), not the writer's 90 minutes.
	later, _ := NewCache(conn, []string{"team.a"}, store.Freshness{})
	later.AsOf = t0.Add(2 * time.Minute)
	got, _ = later.Lookup(ctx, []string{"old@x.test", "new@x.test", "stale@x.test"})
	if len(got) != 3 {
		t.Fatalf("a later job without max age: %+v; want all three", got)
	}
}
