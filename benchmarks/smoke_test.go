package benchmarks

import (
	"context"
	"testing"
	"time"
)

// smallWorkload is a few hundred addresses with real (if short) latency.
func smallWorkload() Workload {
	return Workload{
		Name: "smoke", Addresses: 200, Domains: 20, Hosts: 5, Skew: 1, CatchAllEvery: 5, Seed: 7,
		RTT:            5 * time.Millisecond,
		MaxConnections: 16, MaxConnectionsPerHost: 2, RcptPerTransaction: 10, RcptPerConnection: 30,
	}
}

// TestStrategiesAgree runs both strategies over the same world: each must
// give every address the verdict the world implies (so they agree with each
// other), the naive one must open a connection per address and ask the DNS
// afresh for each, and bulkverify must not.
func TestStrategiesAgree(t *testing.T) {
	w := smallWorkload()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	results := map[Strategy]Result{}
	for _, s := range []Strategy{Bulk, Naive} {
		res, err := Run(ctx, w, s, RunOptions{Record: true})
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if res.Rows != w.Addresses || res.Wrong != 0 {
			t.Fatalf("%s: %d rows, %d wrong verdicts (want %d, 0): %v", s, res.Rows, res.Wrong, w.Addresses, res.Mismatches)
		}
		if len(res.Verdicts) != w.Addresses {
			t.Fatalf("%s: %d distinct addresses recorded, want %d", s, len(res.Verdicts), w.Addresses)
		}
		if res.ByVerb["DATA"] != 0 || res.ByVerb["BDAT"] != 0 {
			t.Fatalf("%s sent DATA/BDAT: %v", s, res.ByVerb)
		}
		results[s] = res
	}
	bulk, nv := results[Bulk], results[Naive]
	for addr, v := range bulk.Verdicts {
		if nv.Verdicts[addr] != v {
			t.Errorf("%s: bulkverify %s, naive %s", addr, v, nv.Verdicts[addr])
		}
	}

	checks := []struct {
		name      string
		got, want int
		atLeast   bool
	}{
		{"naive connections", nv.Connections, w.Addresses, true},
		{"naive RCPT (catch-all + real per address)", nv.ByVerb["RCPT"], 2 * w.Addresses, false},
		{"naive DNS queries (MX, A, AAAA per address)", nv.DNSQueries, 3 * w.Addresses, false},
		{"bulkverify RCPT (addresses + one catch-all probe per domain, + positive controls)", bulk.ByVerb["RCPT"], w.Addresses + w.Domains, true},
	}
	// At most one positive control (RCPT postmaster@) per transaction.
	if extra := bulk.ByVerb["RCPT"] - w.Addresses - w.Domains; extra > bulk.ByVerb["MAIL"] {
		t.Errorf("bulkverify RCPT = %d: %d more than addresses and catch-all probes, in %d transactions", bulk.ByVerb["RCPT"], extra, bulk.ByVerb["MAIL"])
	}
	for _, c := range checks {
		if (c.atLeast && c.got < c.want) || (!c.atLeast && c.got != c.want) {
			t.Errorf("%s = %d, want %s%d", c.name, c.got, map[bool]string{true: ">= ", false: ""}[c.atLeast], c.want)
		}
	}
	if bulk.Connections*5 > nv.Connections {
		t.Errorf("bulkverify used %d connections, naive %d: expected far fewer", bulk.Connections, nv.Connections)
	}
	if bulk.DNSQueries*5 > nv.DNSQueries {
		t.Errorf("bulkverify sent %d DNS queries, naive %d: expected far fewer", bulk.DNSQueries, nv.DNSQueries)
	}
	if bulk.Wall < bulk.Bound.Time {
		t.Errorf("bulkverify took %v, less than the lower bound %v: the bound is wrong", bulk.Wall, bulk.Bound.Time)
	}
	t.Logf("bulkverify %v (bound %v), naive %v (bound %v)", bulk.Wall, bulk.Bound.Time, nv.Wall, nv.NaiveBound)
}

// Through the SOCKS5 proxy, bulkverify gives the same verdicts, and every
// connection the servers saw came through the proxy.
func TestSOCKSStrategy(t *testing.T) {
	w := smallWorkload()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	direct, err := Run(ctx, w, Bulk, RunOptions{Record: true})
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := Run(ctx, w, BulkSOCKS, RunOptions{Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if proxied.Rows != w.Addresses || proxied.Wrong != 0 {
		t.Fatalf("%d rows, %d wrong verdicts: %v", proxied.Rows, proxied.Wrong, proxied.Mismatches)
	}
	for addr, v := range direct.Verdicts {
		if proxied.Verdicts[addr] != v {
			t.Errorf("%s: %s direct, %s through the proxy", addr, v, proxied.Verdicts[addr])
		}
	}
	if proxied.Connections == 0 || proxied.ProxyConnections != proxied.Connections {
		t.Errorf("the servers saw %d connections, the proxy accepted %d", proxied.Connections, proxied.ProxyConnections)
	}
	if direct.ProxyConnections != 0 {
		t.Errorf("direct run: %d proxy connections", direct.ProxyConnections)
	}
}

// The cluster strategy, its workers in this process, gives every address
// the verdict the world implies; with every host under one operator, the
// servers never see more sessions at once than the operator allows,
// however many workers ask.
func TestClusterStrategy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server and workers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	w := smallWorkload()
	w.UnitSize = 15
	res, err := Run(ctx, w, ClusterStrategy(2), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != w.Addresses || res.Wrong != 0 || res.Workers != 2 {
		t.Fatalf("%d rows, %d wrong verdicts, %d workers (want %d, 0, 2): %v", res.Rows, res.Wrong, res.Workers, w.Addresses, res.Mismatches)
	}
	w.OperatorSessions = 2
	w.Name = "smoke-budget"
	res, err = Run(ctx, w, ClusterStrategy(3), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Wrong != 0 || res.MaxSessions > 2 || res.MaxSessions == 0 {
		t.Fatalf("%d wrong verdicts, %d sessions at once from 3 workers (want 0, 1 to 2)", res.Wrong, res.MaxSessions)
	}
}
