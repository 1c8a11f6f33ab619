package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// runWorker runs a worker until the test ends or stop is called.
func runWorker(t *testing.T, c *Conn, cfg WorkerConfig) (stop func()) {
	t.Helper()
	w, err := c.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", w.ID(), err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// collected gathers what Collect gives, failing on a key given twice.
type collected struct {
	mu   sync.Mutex
	got  map[uint64]Result
	dups []uint64
}

func (c *collected) add(r Result) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[uint64]Result{}
	}
	if _, ok := c.got[r.Key]; ok {
		c.dups = append(c.dups, r.Key)
	}
	c.got[r.Key] = r
	return nil
}

func collect(t *testing.T, co *Coordinator, job string, opts CollectOptions, into *collected) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := co.Collect(ctx, job, opts, into.add); err != nil {
		t.Fatalf("Collect: %v", err)
	}
}

func checkAll(t *testing.T, units []Unit, got *collected) {
	t.Helper()
	if len(got.dups) > 0 {
		t.Errorf("keys given twice: %v", got.dups)
	}
	want := 0
	for _, u := range units {
		for _, a := range u.Addresses {
			want++
			r, ok := got.got[a.Key]
			if !ok {
				t.Errorf("no result for key %d (%s)", a.Key, a)
				continue
			}
			status := "deliverable"
			if a.Local[:2] == "no" {
				status = "undeliverable"
			}
			if r.Status != status || r.Unit != u.ID || r.Job != u.Job {
				t.Errorf("key %d: got %+v, want status %s unit %s", a.Key, r, status, u.ID)
			}
		}
	}
	if len(got.got) != want {
		t.Errorf("got %d results, want %d", len(got.got), want)
	}
}

func TestSubmitCollect(t *testing.T) {
	ts := startJetStream(t)
	c := connect(t, testConfig(ts.URL()))
	units := makeUnits("job1", 20, 7, func(k uint64) string {
		if k%3 == 0 {
			return fmt.Sprintf("nobody%d", k)
		}
		return plainLocal(k)
	})
	co := c.Coordinator()
	ctx := context.Background()
	st, err := co.Submit(ctx, "job1", slices.Values(units))
	if err != nil {
		t.Fatal(err)
	}
	if st.Published != 20 || st.Units != 20 || st.Addresses != 140 {
		t.Fatalf("Submit: %+v", st)
	}
	// Submitting again publishes nothing: every unit is queued.
	st, err = co.Submit(ctx, "job1", slices.Values(units))
	if err != nil || st.Published != 0 || st.Skipped != 20 {
		t.Fatalf("second Submit: %+v, %v", st, err)
	}
	p := newLocalPartProber()
	for i := range 2 {
		runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: fmt.Sprintf("w%d", i), Prober: p, Units: 3, PollWait: 200 * time.Millisecond})
	}
	var got collected
	checkpoints := 0
	collect(t, co, "job1", CollectOptions{FlushInterval: 50 * time.Millisecond, Checkpoint: func() error { checkpoints++; return nil }}, &got)
	checkAll(t, units, &got)
	if checkpoints == 0 {
		t.Error("Checkpoint never called")
	}
	for k, n := range p.timesAsked() {
		if n != 1 {
			t.Errorf("key %d asked %d times", k, n)
		}
	}
	prog, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog.Jobs) != 1 || !prog.Jobs[0].Progress.Finished || prog.Jobs[0].Progress.DoneAddresses != 140 {
		t.Errorf("status: %+v", prog.Jobs)
	}
	if err := co.Cleanup(ctx, "job1"); err != nil {
		t.Fatal(err)
	}
	prog, err = c.Status(ctx)
	if err != nil || len(prog.Jobs) != 0 {
		t.Errorf("status after cleanup: %+v, %v", prog.Jobs, err)
	}
	// The job is gone: Collect says so.
	if err := co.Collect(ctx, "job1", CollectOptions{}, got.add); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Collect after Cleanup: %v, want ErrJobNotFound", err)
	}
}

// Open creates a job's record once: a second Open (a coordinator that
// starts again) finds it, with the time the job began; a Submit whose
// units stop because its ctx ended does not mark the job submitted.
func TestOpenAndInterruptedSubmit(t *testing.T) {
	ts := startJetStream(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig(ts.URL())
	cfg.Now = func() time.Time { return now }
	co := connect(t, cfg).Coordinator()
	rec, existed, err := co.Open(ctx, "job-1")
	if err != nil || existed || !rec.Created.Equal(now) {
		t.Fatalf("first Open: %+v existed=%v %v", rec, existed, err)
	}
	now = now.Add(time.Hour)
	rec, existed, err = co.Open(ctx, "job-1")
	if err != nil || !existed || !rec.Created.Equal(now.Add(-time.Hour)) {
		t.Fatalf("second Open: %+v existed=%v %v", rec, existed, err)
	}

	units := makeUnits("job-1", 3, 2, plainLocal)
	sctx, cancel := context.WithCancel(ctx)
	seq := func(yield func(Unit) bool) {
		for i, u := range units {
			if i == 1 {
				cancel() // the coordinator is stopped while cutting
				return
			}
			if !yield(u) {
				return
			}
		}
	}
	if _, err := co.Submit(sctx, "job-1", seq); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Submit: %v, want context.Canceled", err)
	}
	rec, _, err = co.Open(ctx, "job-1")
	if err != nil || rec.Submitted {
		t.Fatalf("after an interrupted Submit the job is %+v (%v); want not submitted", rec, err)
	}
	st, err := co.Submit(ctx, "job-1", slices.Values(units))
	if err != nil || st.Published != 2 || st.Skipped != 1 {
		t.Fatalf("Submit again: %+v %v; want the 2 units not yet out published", st, err)
	}
}

// TestSetupUpdatesOnlyWhatDiffers: a process that connects with the
// settings the streams and buckets already have changes nothing (an update
// would rewrite them, racing consumers being created: see ensureStream);
// one with other settings updates what differs. Told by the server's own
// "stream updated" advisories.
func TestSetupUpdatesOnlyWhatDiffers(t *testing.T) {
	ts := startJetStream(t)
	nc, err := nats.Connect(ts.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	updated := make(chan string, 64)
	sub, err := nc.Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", func(m *nats.Msg) {
		updated <- strings.TrimPrefix(m.Subject, "$JS.EVENT.ADVISORY.STREAM.UPDATED.")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(ts.URL())
	connect(t, cfg)
	connect(t, cfg) // the same settings: no update
	cfg.ResultsMaxAge = 3 * time.Hour
	c := connect(t, cfg) // the results' retention changed: that stream only

	// The server sends its advisories in order: once the last connect's
	// arrives, any of the connects before it has too.
	var got []string
	for waiting := true; waiting; {
		select {
		case name := <-updated:
			got = append(got, name)
			waiting = name != ResultsStream
		case <-time.After(30 * time.Second):
			t.Fatalf("no update of %s announced; updates seen: %q", ResultsStream, got)
		}
	}
	if !slices.Equal(got, []string{ResultsStream}) {
		t.Errorf("streams updated: %q, want only %s", got, ResultsStream)
	}
	info, err := c.results.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 3*time.Hour {
		t.Errorf("results MaxAge %v after the update, want 3h", info.Config.MaxAge)
	}
}
