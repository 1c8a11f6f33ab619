package pipeline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/store"
)

// A second run answers from the store the rows it can as it reads them,
// whatever part of the store fits in memory (MemoryRows bounds the
// verdicts held: past it, domains take the grouped path, and past it
// again the partitions): every row once, the unchanged ones as the first
// run wrote them, only the changed addresses asked, and the summary counts
// each distinct address once. OnTotal and OnResult are called from one
// goroutine (the race detector sees the plain counters below), the total
// once.
func TestRecallAnswersRowsAsTheyAreRead(t *testing.T) {
	const hosts, perHost, n = 2, 3, 900
	domains := hosts * perHost
	csvText, distinct := manyRows(n, domains)
	// The second list: the rows of domain d1 at other addresses (which do
	// not exist).
	var second strings.Builder
	changed := map[string]bool{}
	newDistinct := 0
	for i, line := range strings.Split(strings.TrimSuffix(csvText, "\n"), "\n") {
		if i > 0 && strings.Contains(line, "@d1.many.test,") {
			line = "w" + line[1:]
			changed[strings.Split(line, ",")[1]] = true
		}
		second.WriteString(line + "\n")
	}
	for _, addrs := range distinct {
		newDistinct += len(addrs) // d1's addresses are replaced one for one
	}
	// About 140 addresses per domain: with no limit every domain is read
	// as the rows come; 700 holds five of the six, the last grouped in
	// memory; 400 holds two, the rest partitioned; 120 none.
	for _, tt := range []struct {
		memoryRows  int
		partitioned bool
	}{{0, false}, {700, false}, {400, true}, {120, true}} {
		memoryRows := tt.memoryRows
		t.Run(fmt.Sprintf("memory rows %d", memoryRows), func(t *testing.T) {
			clock := newTestClock()
			st := openStore(t, clock, store.Freshness{})
			h := newHarness(t, manyWorld(hosts, perHost, n))
			h.cfg.Store, h.cfg.Now = st, clock.Now
			h.cfg.NoPositiveControl = true
			h.cfg.MemoryRows = memoryRows
			h.cfg.TempDir = t.TempDir()
			first, _ := h.run(csvText)
			checkEveryRowOnce(t, first, n)
			rcpt := h.sim.TotalCommands("RCPT")

			clock.Advance(time.Hour)
			totals, results := 0, 0
			total := -1
			h.cfg.OnTotal = func(rows int) { totals++; total = rows }
			h.cfg.OnResult = func(r output.Result) { results++ }
			rows, sum := h.run(second.String())
			checkEveryRowOnce(t, rows, n)
			if got := sum.Memory.Partitions > 1; got != tt.partitioned {
				t.Errorf("%d partitions", sum.Memory.Partitions)
			}
			if totals != 1 || total != n || results != n {
				t.Errorf("OnTotal called %d times with %d, OnResult %d times; want once with %d, %d times", totals, total, results, n, n)
			}
			var unchanged, firstUnchanged []row
			byRow := map[string]row{}
			for _, r := range first {
				byRow[r["n"]] = r
			}
			stored := 0
			for _, r := range rows {
				switch {
				case changed[r["n"]]:
					if r["source"] != "probed" {
						t.Errorf("row %s (%s) changed, source %q", r["n"], r["email"], r["source"])
					}
				case r["email"] == "not an address":
				default:
					unchanged = append(unchanged, r)
					firstUnchanged = append(firstUnchanged, byRow[r["n"]])
					if r["source"] != "stored" {
						t.Errorf("row %s (%s) unchanged, source %q", r["n"], r["email"], r["source"])
					}
					stored++
				}
			}
			sameExceptSource(t, firstUnchanged, unchanged, false)
			if got, want := h.sim.TotalCommands("RCPT")-rcpt, len(distinct[1]); got != want {
				t.Errorf("the second run sent %d RCPT, want %d: one per changed address (d1's catch-all answer is fresh)", got, want)
			}
			if sum.Stored != stored || sum.Addresses != newDistinct || sum.Domains != domains {
				t.Errorf("summary: %d stored, %d addresses, %d domains; want %d, %d, %d", sum.Stored, sum.Addresses, sum.Domains, stored, newDistinct, domains)
			}
		})
	}
}
