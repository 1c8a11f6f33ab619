package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
)

// manyWorld has hosts "mx<h>.many.test" (127.0.0.60+h), each the MX of
// perHost domains "d<k>.many.test"; in every domain the local parts u<even>
// exist, except in the last domain, which accepts everything.
func manyWorld(hosts, perHost, mailboxes int) mailsim.World {
	var w mailsim.World
	for h := range hosts {
		host := fmt.Sprintf("mx%d.many.test", h)
		w.Hosts = append(w.Hosts, mailsim.Host{Name: host, IP: fmt.Sprintf("127.0.0.%d", 60+h)})
		for k := range perHost {
			d := mailsim.Domain{Name: fmt.Sprintf("d%d.many.test", h*perHost+k), MX: []mailsim.MX{{Preference: 10, Host: host}}}
			for u := 0; u < mailboxes; u += 2 {
				d.Mailboxes = append(d.Mailboxes, fmt.Sprintf("u%d", u))
			}
			w.Domains = append(w.Domains, d)
		}
	}
	w.Domains[len(w.Domains)-1].CatchAll = true
	return w
}

// manyRows is n rows "email,n" over the domains of manyWorld, consecutive
// rows at different domains, with every 7th row repeating an earlier
// address and every 97th holding no address.
func manyRows(n, domains int) (csvText string, distinct map[int]map[string]bool) {
	var b strings.Builder
	b.WriteString("email,n\n")
	distinct = map[int]map[string]bool{}
	for j := 1; j <= n; j++ {
		var addr string
		switch {
		case j%97 == 0:
			addr = "not an address"
		case j%7 == 0:
			i := j / 2
			addr = fmt.Sprintf("u%d@d%d.many.test", i/domains, i%domains)
		default:
			addr = fmt.Sprintf("u%d@d%d.many.test", j/domains, j%domains)
		}
		if addr != "not an address" {
			var d int
			fmt.Sscanf(addr[strings.IndexByte(addr, '@')+2:], "%d", &d)
			if distinct[d] == nil {
				distinct[d] = map[string]bool{}
			}
			distinct[d][addr] = true
		}
		fmt.Fprintf(&b, "%s,%d\n", addr, j)
	}
	return b.String(), distinct
}

// memoryLimit is the most addresses a run with MemoryRows m may hold in
// memory (memory.go): m + m/4 from the partitions, and for each host whose
// queue spilled, a transaction's head read back plus a chunk of tail.
func memoryLimit(cfg Config, hosts int) int {
	chunk := spillChunk(cfg.MemoryRows)
	txn := cfg.RcptPerTransaction
	if txn == 0 {
		txn = 50
	}
	return memoryBound(cfg.MemoryRows) + hosts*(txn+2*chunk)
}

// Thousands of rows through a memory limit of 50: every row once, with the
// verdict it gets in memory, no more connections than in memory, one
// catch-all check per domain however its addresses were spread, and never
// more addresses in memory than the limit allows.
func TestManyRowsThroughASmallMemory(t *testing.T) {
	const hosts, perHost, n = 3, 4, 3000
	w := manyWorld(hosts, perHost, n)
	csvText, distinct := manyRows(n, hosts*perHost)

	hu := newHarness(t, w)
	hu.cfg.NoPositiveControl = true
	unboundedRows, unbounded := hu.run(csvText)

	h := newHarness(t, w)
	h.cfg.NoPositiveControl = true // counted: the addresses' own RCPTs
	h.cfg.MemoryRows = 50
	h.cfg.RcptPerTransaction = 10
	h.cfg.TempDir = t.TempDir()
	rows, sum := h.run(csvText)

	checkEveryRowOnce(t, rows, n)
	want := map[string]string{}
	for _, r := range unboundedRows {
		want[r["row"]] = r["status"] + "/" + r["reason"]
	}
	for _, r := range rows {
		if got := r["status"] + "/" + r["reason"]; got != want[r["row"]] {
			t.Errorf("row %s %s: %s, in memory %s", r["row"], r["email"], got, want[r["row"]])
		}
	}
	if sum.Memory.Partitions < 2 {
		t.Errorf("%d partitions: the input did not spill", sum.Memory.Partitions)
	}
	if limit := memoryLimit(h.cfg, hosts); sum.Memory.PeakAddresses > limit {
		t.Errorf("%d addresses in memory at once, want at most %d", sum.Memory.PeakAddresses, limit)
	}
	if got, max := h.sim.TotalConnections(), hu.sim.TotalConnections(); got > max || sum.Connections > unbounded.Connections {
		t.Errorf("%d connections (summary %d), want at most the %d (%d) of the run in memory", got, sum.Connections, max, unbounded.Connections)
	}
	for k := range hosts {
		host := fmt.Sprintf("mx%d.many.test", k)
		want := 0
		for d := k * perHost; d < (k+1)*perHost; d++ {
			want += len(distinct[d]) + 1 // one catch-all check per domain
		}
		if got := h.sim.Commands(host, "RCPT"); got != want {
			t.Errorf("%s saw %d RCPT, want %d: one per distinct address and one catch-all check per domain", host, got, want)
		}
	}
	if sum.Rows != n || sum.Probed != n || sum.Stored != 0 {
		t.Errorf("summary: %d rows, %d probed, %d stored; want %d, %d, 0", sum.Rows, sum.Probed, sum.Stored, n, n)
	}
}

// A slow host does not hold the input back: its queue goes to disk while
// the other hosts are served, so a fast host's addresses are all decided
// while the slow one still has some to ask.
func TestSlowHostBacklogGoesToDisk(t *testing.T) {
	w := manyWorld(2, 2, 2000)
	w.Domains[3].CatchAll = false
	w.Hosts[1].RcptDelay = 20 * time.Millisecond
	var b strings.Builder
	b.WriteString("email\n")
	const fast, slow = 1200, 200
	fastAt := map[string]bool{}
	for i := range fast + slow {
		// Interleaved: every part of the input holds both hosts' addresses.
		var addr string
		if i%7 == 3 {
			addr = fmt.Sprintf("u%d@d%d.many.test", i, 2+(i/7)%2) // mx1: slow
		} else {
			addr = fmt.Sprintf("u%d@d%d.many.test", i, i%2) // mx0: fast
			fastAt[addr] = true
		}
		b.WriteString(addr + "\n")
	}
	h := newHarness(t, w)
	h.cfg.NoPositiveControl = true
	h.cfg.MemoryRows = 80
	h.cfg.RcptPerTransaction = 10
	h.cfg.TempDir = t.TempDir()
	var fastDone atomic.Int64
	slowRCPTWhenFastDone := make(chan int, 1)
	h.cfg.OnResult = func(r output.Result) {
		if fastAt[r.Email] && fastDone.Add(1) == fast {
			slowRCPTWhenFastDone <- h.sim.Commands("mx1.many.test", "RCPT")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	rows, sum, err := h.start(ctx, b.String())()
	if err != nil {
		t.Fatal(err)
	}
	checkEveryRowOnce(t, rows, fast+slow)
	select {
	case got := <-slowRCPTWhenFastDone:
		// The slow host's addresses plus its two domains' catch-all checks.
		if got >= slow+2 {
			t.Errorf("the slow host had answered all %d RCPT when the fast host's addresses were done: nothing waited for it", got)
		}
	default:
		t.Fatal("the fast host's addresses were never all written")
	}
	if sum.Memory.Spilled == 0 {
		t.Error("nothing was spilled to disk: the slow host's queue stayed in memory")
	}
	if limit := memoryLimit(h.cfg, 2); sum.Memory.PeakAddresses > limit {
		t.Errorf("%d addresses in memory at once, want at most %d", sum.Memory.PeakAddresses, limit)
	}
	if got := h.sim.Commands("mx1.many.test", "RCPT"); got != slow+2 {
		t.Errorf("slow host: %d RCPT, want %d (each address once, one check per domain)", got, slow+2)
	}
	for _, r := range rows {
		var u int
		fmt.Sscanf(r["email"], "u%d@", &u)
		want := "undeliverable"
		if u%2 == 0 {
			want = "deliverable"
		}
		if r["status"] != want {
			t.Errorf("%s: %s/%s, want %s", r["email"], r["status"], r["reason"], want)
		}
	}
}
