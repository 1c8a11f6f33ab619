package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
)

// The lookups of a distributed run go on past a chunk that waits for its
// slowest domain: with the first chunk's first domain held by a DNS retry
// (SERVFAIL, retried on the fake clock), the second chunk's domains are
// all looked up before the clock moves; the cut, and every row, are then
// as they would be otherwise.
func TestDistributeLooksUpAheadOfTheCut(t *testing.T) {
	n := cutChunks[0] + 8
	w := mailsim.World{Hosts: []mailsim.Host{{Name: "mx.many.test", IP: "127.0.0.41"}}}
	domain := func(i int) string { return fmt.Sprintf("d%d.many.test", i) }
	for i := range n {
		w.Domains = append(w.Domains, mailsim.Domain{Name: domain(i), MX: []mailsim.MX{{Preference: 10, Host: "mx.many.test"}},
			Mailboxes: []string{"u"}, ServFail: i == 0})
	}
	h, fc := newFakeClockHarness(t, w)
	h.cfg.RetryRounds = 1
	h.cfg.RetryDelay = time.Minute
	h.cfg.MaxWait = time.Hour
	h.cfg.NoCatchAllCheck = true
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := range n {
		fmt.Fprintf(&csv, "u@%s\n", domain(i))
	}

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	p := NewUnitProber(ctx, h.cfg, h.resolver())
	defer p.Close()
	ld := newLocalDist(p)
	src, err := input.NewReader(strings.NewReader(csv.String()), input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sink, err := output.NewCSV(&out, src.Header())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Distribute(ctx, h.cfg, Distribution{Remote: ld}, h.resolver(), src, sink)
		done <- err
	}()

	waitForTimer(t, fc, 1) // d0's retry
	waitFor(t, "the second chunk's lookups", func() bool {
		for i := cutChunks[0]; i < n; i++ {
			if h.sim.DNSQueries(domain(i), dns.TypeMX) == 0 {
				return false
			}
		}
		return true
	})
	ld.mu.Lock()
	early := len(ld.units[0])
	ld.mu.Unlock()
	if early != 0 {
		t.Errorf("%d units out before the first chunk's lookups were over", early)
	}
	fc.Advance(time.Minute)
	if err := <-done; err != nil {
		t.Fatalf("Distribute: %v", err)
	}

	rows := parseRows(t, &out)
	checkEveryRowOnce(t, rows, n)
	for _, r := range rows {
		want := "deliverable"
		if r["email"] == "u@"+domain(0) {
			want = "unknown"
		}
		if r["status"] != want {
			t.Errorf("%s: %s/%s, want %s", r["email"], r["status"], r["reason"], want)
		}
	}
	var ids []string
	for _, u := range ld.units[0] {
		ids = append(ids, u.ID)
	}
	if want := []string{"p0c0-1", "p0c1-1"}; strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("units %v, want %v: one per chunk, in order", ids, want)
	}
}
