package pipeline

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/store"
	"github.com/bulkverify/bulkverify/verdict"
)

// A row the run holds keeps only its own text in memory, not the text of
// the rows read about it that the run let go: the rows --resume leaves out
// (Config.Skip), and the rows the store answers as they are read (recall),
// can be most of a big list, and what is left is held until it is
// decided, up to MemoryRows rows. The rows held here are rows without an
// address (held until the input has been read, then written in one
// batch), one in 512; the rows let go carry 2 KiB each. When the first
// held row is written the others are all still in memory, and the heap
// must have grown by about their size (and the rows of a batch the writer
// may still hold), not by the size of the whole list.
func TestHeldRowsDoNotKeepRowsLetGoInMemory(t *testing.T) {
	const rows, every, noteSize = 16384, 512, 2048
	note := strings.Repeat("n", noteSize)
	isHeld := func(row int) bool { return row%every == 1 }
	var b strings.Builder
	b.WriteString("email,note\n")
	for i := 1; i <= rows; i++ {
		if isHeld(i) {
			fmt.Fprintf(&b, "not an address %d,kept\n", i)
		} else {
			fmt.Fprintf(&b, "u%d@gone.test,%s\n", i, note)
		}
	}
	csvText := b.String()
	held := rows / every

	for _, how := range []string{"skipped", "stored"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t, mailsim.World{})
			wantStored := 0
			switch how {
			case "skipped":
				h.cfg.Skip = func(row int) bool { return !isHeld(row) }
			case "stored":
				clock := newTestClock()
				st := openStore(t, clock, store.Freshness{})
				ctx := context.Background()
				for i := 1; i <= rows; i++ {
					if isHeld(i) {
						continue
					}
					v := store.Verdict{Address: fmt.Sprintf("u%d@gone.test", i), Status: output.StatusUndeliverable,
						Reason: verdict.ReasonMailboxUnknown, SMTPCode: 550, CheckedAt: clock.Now().Add(-time.Minute)}
					if err := st.Put(ctx, v); err != nil {
						t.Fatal(err)
					}
				}
				if err := st.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				h.cfg.Store, h.cfg.Now = st, clock.Now
				wantStored = rows - held
			}
			var before, atFirst runtime.MemStats
			measured, written := false, 0
			h.cfg.OnResult = func(r output.Result) {
				written++
				if !measured && r.Status == output.StatusInvalid {
					measured = true
					runtime.GC()
					runtime.ReadMemStats(&atFirst)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&before)
			// The rows are written to nowhere: the output is not what is
			// measured.
			src, err := input.NewReader(strings.NewReader(csvText), input.Options{})
			if err != nil {
				t.Fatal(err)
			}
			sink, err := output.NewCSV(io.Discard, src.Header())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			sum, err := Run(ctx, h.cfg, h.resolver(), src, sink)
			if err != nil {
				t.Fatal(err)
			}
			runtime.KeepAlive(csvText) // counted in "before": not to be freed during the run
			if written != rows-sum.Skipped || sum.Stored != wantStored || !measured {
				t.Fatalf("%d rows written, %d skipped, %d stored; want %d stored", written, sum.Skipped, sum.Stored, wantStored)
			}
			grown := int64(atFirst.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("the heap grew by %d KiB", grown>>10)
			// The rows let go are 32 MiB; the held ones a few KiB, a batch
			// of stored rows the writer may hold 2 MiB, the store's sets
			// about 4 MiB. 16 MiB leaves room for everything else a run
			// allocates.
			if limit := int64(16 << 20); grown > limit {
				t.Errorf("holding %d rows of %d, the heap grew by %d MiB when the first was written (limit %d MiB): the rows let go are still in memory",
					held, rows, grown>>20, limit>>20)
			}
		})
	}
}
