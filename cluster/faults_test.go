package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkverify/bulkverify/verdict"
)

// A worker that takes a unit and vanishes without a word (its connection
// gone, as with SIGKILL) leaves results it stored; the unit comes back
// after the ack wait, the next worker asks only the addresses left, and
// the coordinator gets every result once.
func TestKilledWorkerUnitRedelivered(t *testing.T) {
	ts := startJetStream(t)
	c := connect(t, testConfig(ts.URL()))
	units := makeUnits("kill", 3, 4, plainLocal)
	units[0].Addresses[2].Local = "slow3" // the first worker stops here
	co := c.Coordinator()
	ctx := context.Background()
	if _, err := co.Submit(ctx, "kill", slices.Values(units)); err != nil {
		t.Fatal(err)
	}

	first := newLocalPartProber() // never released: blocks on slow3
	doomed := connect(t, testConfig(ts.URL()))
	runWorker(t, doomed, WorkerConfig{ID: "doomed", Prober: first, Units: 3, PollWait: 200 * time.Millisecond})
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		have, err := c.unitResultKeys(ctx, "kill", "u0")
		if err != nil {
			return err
		}
		if len(have) != 2 {
			return fmt.Errorf("unit u0 has %d results stored, want 2", len(have))
		}
		return nil
	})
	doomed.nc.Close() // no ack, no nak, no more in-progress: gone

	second := newLocalPartProber()
	close(second.release)
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "survivor", Prober: second, PollWait: 200 * time.Millisecond})
	var got collected
	collect(t, co, "kill", CollectOptions{FlushInterval: 50 * time.Millisecond}, &got)
	checkAll(t, units, &got)

	asked := first.timesAsked()
	for k, n := range second.timesAsked() {
		asked[k] += n
	}
	for _, u := range units {
		for _, a := range u.Addresses {
			want := 1
			if a.Local == "slow3" {
				want = 2 // asked by the first worker, which died before answering
			}
			if asked[a.Key] != want {
				t.Errorf("%s asked %d times, want %d", a, asked[a.Key], want)
			}
		}
	}
}

// A client that takes a unit and never acknowledges it (and keeps its
// connection): the unit is delivered again after the ack wait.
func TestUnitBackAfterAckWait(t *testing.T) {
	ts := startJetStream(t)
	c := connect(t, testConfig(ts.URL()))
	units := makeUnits("silent", 1, 3, plainLocal)
	co := c.Coordinator()
	ctx := context.Background()
	if _, err := co.Submit(ctx, "silent", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(rawClient(t, ts.URL()))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, UnitsStream, WorkersConsumer)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	md, _ := m.Metadata()
	if md.NumDelivered != 1 {
		t.Fatalf("first delivery numbered %d", md.NumDelivered)
	}
	m2, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	if err != nil {
		t.Fatalf("unit not delivered again: %v", err)
	}
	md2, _ := m2.Metadata()
	if md2.NumDelivered != 2 || md2.Sequence.Stream != md.Sequence.Stream {
		t.Fatalf("second delivery: %+v, want the same unit delivered twice", md2)
	}
}

// A coordinator that stops in the middle of a job (an error from its
// output, or a crash) is followed by another that continues from what
// JetStream holds: Submit publishes nothing again, Collect gives again only
// the results of units not marked done, and with Skip nothing twice.
func TestCoordinatorRestart(t *testing.T) {
	ts := startJetStream(t)
	units := makeUnits("restart", 10, 5, plainLocal)
	for _, u := range units[5:] {
		u.Addresses[0].Local = fmt.Sprintf("slow%d", u.Addresses[0].Key)
	}
	p := newLocalPartProber()
	ctx := context.Background()

	c1 := connect(t, testConfig(ts.URL()))
	if _, err := c1.Coordinator().Submit(ctx, "restart", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "w", Prober: p, PollWait: 200 * time.Millisecond})
	var got collected
	crash := fmt.Errorf("crash")
	checkpointed := false
	err := c1.Coordinator().Collect(ctx, "restart", CollectOptions{
		FlushInterval: 20 * time.Millisecond,
		Checkpoint: func() error {
			if !checkpointed {
				checkpointed = true
				close(p.release) // the slow units go on
			}
			return nil
		},
	}, func(r Result) error {
		if checkpointed {
			return crash
		}
		return got.add(r)
	})
	if err != crash {
		t.Fatalf("first Collect: %v", err)
	}
	c1.Close()

	c2 := connect(t, testConfig(ts.URL()))
	done, err := c2.doneUnits(ctx, "restart")
	if err != nil || len(done) == 0 {
		t.Fatalf("units marked done before the crash: %v, %v", done, err)
	}
	unitOf := map[uint64]string{}
	for _, u := range units {
		for _, a := range u.Addresses {
			unitOf[a.Key] = u.ID
		}
	}
	st, err := c2.Coordinator().Submit(ctx, "restart", slices.Values(units))
	if err != nil || st.Published != 0 {
		t.Fatalf("Submit after restart: %+v, %v", st, err)
	}
	collect(t, c2.Coordinator(), "restart", CollectOptions{
		FlushInterval: 20 * time.Millisecond,
		Skip: func(key uint64) bool {
			if done[unitOf[key]] {
				t.Errorf("key %d of unit %s, marked done, given again", key, unitOf[key])
			}
			got.mu.Lock()
			defer got.mu.Unlock()
			_, ok := got.got[key]
			return ok
		},
	}, &got)
	checkAll(t, units, &got)
	for k, n := range p.timesAsked() {
		if n != 1 {
			t.Errorf("key %d asked %d times", k, n)
		}
	}
}

// The NATS server stops and starts again on its store in the middle of a
// job: workers and the coordinator reconnect and the job completes, every
// result given once.
func TestServerRestart(t *testing.T) {
	ts := startJetStream(t)
	units := makeUnits("srv", 12, 4, plainLocal)
	for i := range units {
		if i%2 == 0 {
			units[i].Addresses[1].Local = fmt.Sprintf("slow%d", units[i].Addresses[1].Key)
		}
	}
	ctx := context.Background()
	c := connect(t, testConfig(ts.URL()))
	co := c.Coordinator()
	if _, err := co.Submit(ctx, "srv", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	p := newLocalPartProber()
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "w1", Prober: p, Units: 4, PollWait: 200 * time.Millisecond})
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "w2", Prober: p, Units: 4, PollWait: 200 * time.Millisecond})

	got, done := collectInBackground(t, co, "srv", CollectOptions{FlushInterval: 20 * time.Millisecond}, 90*time.Second)
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		got.mu.Lock()
		defer got.mu.Unlock()
		if len(got.got) < 12 {
			return fmt.Errorf("%d results so far", len(got.got))
		}
		return nil
	})
	ts.Restart()
	var once sync.Once
	once.Do(func() { close(p.release) })
	if err := <-done; err != nil {
		t.Fatalf("Collect across a server restart: %v", err)
	}
	checkAll(t, units, got)
	for k, n := range p.timesAsked() {
		if n > 2 {
			t.Errorf("key %d asked %d times", k, n)
		}
	}
}

// A unit that fails on every delivery: on its last one the worker gives
// its addresses unknown/worker_failed, so the job still completes with a
// result for every address; results stored before the failure are kept.
func TestUnitFailsOnEveryDelivery(t *testing.T) {
	ts := startJetStream(t)
	cfg := testConfig(ts.URL())
	cfg.MaxDeliver = 2
	c := connect(t, cfg)
	units := makeUnits("fail", 2, 3, plainLocal)
	ctx := context.Background()
	co := c.Coordinator()
	if _, err := co.Submit(ctx, "fail", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	tries := 0
	failing := ProberFunc(func(ctx context.Context, u Unit, emit func(Result)) error {
		if u.ID != "u0" {
			for _, a := range u.Addresses {
				emit(Result{Key: a.Key, Status: "deliverable", Reason: "accepted"})
			}
			return nil
		}
		mu.Lock()
		tries++
		mu.Unlock()
		// The first address gets its answer, then the engine fails.
		if u.Addresses[0].Key == 1 {
			emit(Result{Key: 1, Status: "deliverable", Reason: "accepted"})
		}
		return fmt.Errorf("engine broke")
	})
	runWorker(t, connect(t, cfg), WorkerConfig{ID: "w", Prober: failing, PollWait: 200 * time.Millisecond})
	var got collected
	collect(t, co, "fail", CollectOptions{FlushInterval: 20 * time.Millisecond}, &got)
	if len(got.got) != 6 || len(got.dups) != 0 {
		t.Fatalf("%d results, dups %v", len(got.got), got.dups)
	}
	if r := got.got[1]; r.Status != "deliverable" {
		t.Errorf("key 1, answered before the failure: %+v", r)
	}
	for _, k := range []uint64{2, 3} {
		if r := got.got[k]; r.Status != "unknown" || r.Reason != verdict.ReasonWorkerFailed {
			t.Errorf("key %d: %+v, want unknown/%s", k, r, verdict.ReasonWorkerFailed)
		}
	}
	if tries != 2 {
		t.Errorf("unit tried %d times, want MaxDeliver = 2", tries)
	}
}

// A result the coordinator's consumer hands out and that never reaches the
// coordinator (here taken by a stranger's pull request, as it is when the
// consumer's leader dies with it on the way) would come back only after
// the results' AckWait, an hour: Collect finds the consumer has more out
// than it holds, and starts a new consumer from its ack floor.
func TestCollectLostDelivery(t *testing.T) {
	ts := startJetStream(t)
	c := connect(t, testConfig(ts.URL()))
	units := makeUnits("lost", 4, 3, plainLocal)
	co := c.Coordinator()
	ctx := context.Background()
	if _, err := co.Submit(ctx, "lost", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	got, done := collectInBackground(t, co, "lost", CollectOptions{FlushInterval: 20 * time.Millisecond, IdleCheck: 200 * time.Millisecond}, 60*time.Second)
	waiting := func(n int) func() error {
		return func() error {
			cons, err := c.js.Consumer(ctx, ResultsStream, resultsConsumer("lost"))
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumWaiting < n {
				return fmt.Errorf("%d pull requests waiting, want %d", info.NumWaiting, n)
			}
			return nil
		}
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, waiting(1))
	// The stranger's request waits behind Collect's; the server hands
	// out in turn, so it gets the second batch of results.
	thief := rawClient(t, ts.URL())
	stolen, err := thief.SubscribeSync(thief.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf(`{"batch":1,"expires":%d}`, (60 * time.Second).Nanoseconds())
	if err := thief.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+ResultsStream+"."+resultsConsumer("lost"), stolen.Subject, []byte(req)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, waiting(2))

	p := newLocalPartProber()
	close(p.release)
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "w", Prober: p, Units: 1, PollWait: 200 * time.Millisecond})
	m, err := stolen.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("the stranger got no result: %v", err)
	}
	if len(m.Data) == 0 {
		t.Fatalf("the stranger got no result but a status: %v", m.Header)
	}
	if err := <-done; err != nil {
		t.Fatalf("Collect with a result lost on its way: %v", err)
	}
	checkAll(t, units, got)
}

// storeMsg stores a message once however often it is called (its id), and
// a message JetStream refuses ends it with that refusal, not a wait for
// the context.
func TestStoreMsg(t *testing.T) {
	ts := startJetStream(t)
	c := connect(t, testConfig(ts.URL()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subj := resultSubject("store", "u0")
	for range 2 {
		m := nats.NewMsg(subj)
		m.Data = []byte(`{}`)
		m.Header.Set(jetstream.MsgIDHeader, "store-u0-1")
		if err := c.storeMsg(ctx, m); err != nil {
			t.Fatalf("storeMsg: %v", err)
		}
	}
	info, err := c.results.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subj]; n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}

	big := nats.NewMsg(unitSubject("store", "u1"))
	big.Data = make([]byte, MaxUnitBytes+8192)
	err = c.storeMsg(ctx, big)
	if err == nil || errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Errorf("storeMsg of a unit over the size limit: %v (context: %v), want JetStream's refusal", err, ctx.Err())
	}
}

// Collect's pull request for results is lost on its way (here dropped by
// a proxy; in a cluster, sent before the new consumer's leader is known or
// gone with a leader that died). The client counts the request as waiting
// all the same: Collect must pull again once its heartbeats stop coming,
// not after the pull's 30s expiry, and get every result.
func TestCollectLostPullRequest(t *testing.T) {
	ts := startJetStream(t)
	proxy := startDropper(t, ts.URL(), pullSubject(ResultsStream, resultsConsumer("pull")), 1)
	c := connect(t, testConfig(proxy.URL()))
	units := makeUnits("pull", 4, 3, plainLocal)
	co := c.Coordinator()
	ctx := context.Background()
	if _, err := co.Submit(ctx, "pull", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	// No idle checks: they would find the lost request on their
	// own (nothing waiting at the consumer), but only every 30s by
	// default; it is the pull's heartbeats that must.
	got, done := collectInBackground(t, co, "pull", CollectOptions{FlushInterval: 20 * time.Millisecond, IdleCheck: time.Hour}, 60*time.Second)
	p := newLocalPartProber()
	close(p.release)
	runWorker(t, connect(t, testConfig(ts.URL())), WorkerConfig{ID: "w", Prober: p, Units: 1, PollWait: 200 * time.Millisecond})
	// Without heartbeats of its own the feed pulls again only after 30s.
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := proxy.sent(); n < 2 {
			return fmt.Errorf("%d pull requests sent, the first dropped", n)
		}
		return nil
	})
	if err := <-done; err != nil {
		t.Fatalf("Collect after its pull request was lost: %v", err)
	}
	checkAll(t, units, got)
}

// A worker started while JetStream cannot tell it its consumer (no leader
// for it yet in a cluster just started; here the requests are dropped by a
// proxy, so none is answered) asks again until it can, then works: it does
// not exit.
func TestWorkerStartedBeforeConsumerAnswers(t *testing.T) {
	ts := startJetStream(t)
	proxy := startDropper(t, ts.URL(), infoSubject(UnitsStream, WorkersConsumer), 0)
	wcfg := testConfig(proxy.URL())
	wcfg.RequestTimeout = time.Second
	wc := connect(t, wcfg)
	c := connect(t, testConfig(ts.URL()))
	units := makeUnits("early", 4, 3, plainLocal)
	co := c.Coordinator()
	ctx := context.Background()
	if _, err := co.Submit(ctx, "early", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	proxy.dropNext(1 << 30)
	p := newLocalPartProber()
	close(p.release)
	w, err := wc.NewWorker(WorkerConfig{ID: "early", Prober: p, PollWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- w.Run(wctx) }()
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-ran:
			t.Fatalf("Run before its consumer answered: returned %v", err)
		default:
		}
		if n := proxy.sent(); n < 3 {
			return fmt.Errorf("asked for the consumer %d times", n)
		}
		return nil
	})
	proxy.dropNext(0)
	var got collected
	collect(t, co, "early", CollectOptions{FlushInterval: 20 * time.Millisecond}, &got)
	checkAll(t, units, &got)
	stop()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
}
