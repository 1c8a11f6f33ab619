package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/verdict"
)

// WorkerConfig configures a worker. Prober is required.
type WorkerConfig struct {
	// ID names the worker in heartbeats and status, default
	// HOSTNAME-PID-RANDOM. One token of [A-Za-z0-9_-].
	ID string
	// Prober probes each unit.
	Prober Prober
	// Units is how many units the worker probes at once, default 8. The
	// Prober shares the worker's connection budget among them.
	Units int
	// Egress names the worker's egresses in its heartbeat (never
	// credentials).
	Egress []string
	// PollWait is how long one request for a unit waits for one, default
	// 5s; it bounds nothing but how often an idle worker asks.
	PollWait time.Duration
	// ShutdownTimeout bounds storing a unit's results and acknowledging
	// it (or giving it back) once its probing ended, ctx ended or not,
	// default 30s. It covers a leader election on the way.
	ShutdownTimeout time.Duration
}

// WorkerStats counts what a worker did.
type WorkerStats struct {
	Units      int64 `json:"units"`      // units finished and acknowledged
	Results    int64 `json:"results"`    // results stored
	Skipped    int64 `json:"skipped"`    // addresses of redelivered units that already had a result
	GivenBack  int64 `json:"given_back"` // units given back (failure or shutdown)
	Failed     int64 `json:"failed"`     // units whose last delivery failed: worker_failed results
	Unreadable int64 `json:"unreadable"` // unit messages that could not be read, terminated
}

// Heartbeat is what a worker keeps in WorkersBucket while it lives.
type Heartbeat struct {
	ID      string      `json:"id"`
	Host    string      `json:"host"`
	PID     int         `json:"pid"`
	Started time.Time   `json:"started"`
	At      time.Time   `json:"at"`
	Egress  []string    `json:"egress,omitempty"`
	Busy    int         `json:"busy"` // units being probed now
	Stats   WorkerStats `json:"stats"`
}

// RunMark is what a worker keeps in WorkersBucket for the unit it probes.
type RunMark struct {
	Worker    string    `json:"worker"`
	Host      string    `json:"host"` // the unit's first MX host
	Addresses int       `json:"addresses"`
	Delivery  uint64    `json:"delivery"` // how often the unit has been handed out, this time included
	Started   time.Time `json:"started"`
}

// Worker pulls units and probes them until its context ends.
type Worker struct {
	c       *Conn
	cfg     WorkerConfig
	started time.Time
	busy    atomic.Int64
	// ackWait and maxDeliver are the shared consumer's, which the process
	// that created or last updated it set: they rule, not this Config.
	ackWait    time.Duration
	maxDeliver int
	stats      struct {
		units, results, skipped, givenBack, failed, unreadable atomic.Int64
	}
}

// NewWorker returns a worker on c.
func (c *Conn) NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Prober == nil {
		return nil, errors.New("cluster: worker without a Prober")
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = keyToken(host) + "-" + strconv.Itoa(os.Getpid()) + "-" + nuid.Next()[:8]
		cfg.ID = idSafe(cfg.ID)
	}
	if err := checkID("worker", cfg.ID); err != nil {
		return nil, err
	}
	if cfg.Units <= 0 {
		cfg.Units = 8
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 5 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	return &Worker{c: c, cfg: cfg, started: c.cfg.Now()}, nil
}

// idSafe keeps the characters an id may have and at most 64 of them.
func idSafe(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' {
			b = append(b, ch)
		}
	}
	return string(b)
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{
		Units: w.stats.units.Load(), Results: w.stats.results.Load(), Skipped: w.stats.skipped.Load(),
		GivenBack: w.stats.givenBack.Load(), Failed: w.stats.failed.Load(), Unreadable: w.stats.unreadable.Load(),
	}
}

// Run pulls and probes units until ctx ends. Then the units being probed
// are stopped (their Prober's ctx ends), the results already found are
// stored, the units given back for another worker to finish, and Run
// returns nil. It returns an error only when it cannot work at all.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.consumer(ctx)
	if err != nil || ctx.Err() != nil {
		return err
	}
	w.ackWait, w.maxDeliver = w.c.cfg.AckWait, w.c.cfg.MaxDeliver
	if info := cons.CachedInfo(); info != nil {
		w.ackWait, w.maxDeliver = info.Config.AckWait, info.Config.MaxDeliver
	}
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeats(hbCtx)
	}()
	var wg sync.WaitGroup
	for range w.cfg.Units {
		wg.Go(func() { w.loop(ctx, cons) })
	}
	wg.Wait()
	stopHB()
	<-hbDone
	dctx, cancel := context.WithTimeout(context.Background(), w.c.cfg.RequestTimeout)
	defer cancel()
	_ = w.c.workers.Delete(dctx, workerKey(w.cfg.ID))
	return nil
}

// consumer returns the workers' shared consumer. While JetStream cannot
// tell (the server away, or the consumer without a leader: a cluster just
// started, or electing one) it asks again every quarter second, each try
// bounded by RequestTimeout, until ctx ends, when it returns nil and no
// error: a worker started a moment too early waits rather than exits. A
// consumer or stream that is not there (deleted after Connect) ends it.
func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	for {
		rctx, cancel := w.c.request(ctx)
		cons, err := w.c.js.Consumer(rctx, UnitsStream, WorkersConsumer)
		cancel()
		if err == nil {
			return cons, nil
		}
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
			errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
			return nil, fmt.Errorf("%w: consumer %s: %v", ErrUnavailable, WorkersConsumer, err)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return nil, nil
		}
	}
}

func (w *Worker) loop(ctx context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, w.cfg.PollWait)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
				// The server is away (restart, leader election): ask
				// again shortly rather than spin.
				sleepCtx(ctx, 250*time.Millisecond)
			}
			continue
		}
		w.busy.Add(1)
		w.handle(ctx, msg)
		w.busy.Add(-1)
	}
}

// handle probes one unit and acknowledges it once its results are stored,
// or gives it back.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	// After ctx ends, what was found is still stored and the unit still
	// given back: those steps run on a context of their own, each request
	// bounded by RequestTimeout, and storing after probing by
	// ShutdownTimeout from when probing ended (not from when the unit
	// came, which would leave nothing to store the results of a long unit).
	bg := context.WithoutCancel(ctx)
	u, err := decodeUnit(msg.Data())
	if err != nil {
		w.stats.unreadable.Add(1)
		_ = msg.Term()
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		w.stats.unreadable.Add(1)
		_ = msg.Term()
		return
	}
	host := firstHost(u)
	mark, _ := json.Marshal(RunMark{Worker: w.cfg.ID, Host: host, Addresses: len(u.Addresses), Delivery: md.NumDelivered, Started: w.c.cfg.Now()})
	w.putMark(bg, runKey(u.Job, u.ID), mark)
	defer func() {
		dctx, cancel := w.c.request(bg)
		defer cancel()
		_ = w.c.workers.Delete(dctx, runKey(u.Job, u.ID))
	}()

	size := len(u.Addresses)
	todo := u
	if md.NumDelivered > 1 {
		// Redelivered: another worker (or this one, before) may have
		// stored results of some addresses already; they are not asked
		// again.
		have, err := w.c.unitResultKeys(bg, u.Job, u.ID)
		if err != nil {
			_ = msg.NakWithDelay(w.c.cfg.NakDelay)
			w.stats.givenBack.Add(1)
			return
		}
		todo.Addresses = todo.Addresses[:0:0]
		for _, a := range u.Addresses {
			if _, ok := have[a.Key]; ok {
				w.stats.skipped.Add(1)
				continue
			}
			todo.Addresses = append(todo.Addresses, a)
		}
		todo.Domains = domainsOf(u.Domains, todo.Addresses)
	}

	pub := newUnitPublisher(w.c, u, size, host)
	var probeErr error
	if len(todo.Addresses) > 0 {
		probeErr = w.probe(ctx, msg, todo, pub, mark)
	}
	after, cancelAfter := context.WithTimeout(bg, w.cfg.ShutdownTimeout)
	defer cancelAfter()
	stored, storeErr := pub.wait(after)
	w.stats.results.Add(int64(stored))
	missing := pub.missing(todo.Addresses)
	switch {
	case storeErr == nil && len(missing) == 0:
		if err := w.ack(after, msg); err != nil {
			// The ack got lost for good: the unit comes back after
			// AckWait and its next worker finds every result stored.
			return
		}
		w.stats.units.Add(1)
	case storeErr == nil && w.maxDeliver > 0 && md.NumDelivered >= uint64(w.maxDeliver) && ctx.Err() == nil:
		// The last delivery: no worker will get the unit again, so its
		// addresses left get a row saying so.
		failed := newUnitPublisher(w.c, u, size, host)
		now := w.c.cfg.Now()
		for _, a := range missing {
			failed.emit(Result{Key: a.Key, Status: output.StatusUnknown, Reason: verdict.ReasonWorkerFailed, Attempts: 0, CheckedAt: now, MXHost: host})
		}
		if _, err := failed.wait(after); err != nil {
			_ = msg.NakWithDelay(w.c.cfg.NakDelay)
			w.stats.givenBack.Add(1)
			return
		}
		_ = w.ack(after, msg)
		w.stats.failed.Add(1)
	default:
		_ = probeErr
		delay := w.c.cfg.NakDelay
		if ctx.Err() != nil {
			delay = 0 // shutting down: another worker may take it now
		}
		_ = msg.NakWithDelay(delay)
		w.stats.givenBack.Add(1)
	}
}

// ack acknowledges a unit and waits for JetStream to confirm it, asking
// again while no confirmation comes (the consumer's leader lost with the
// ack and another being elected, which takes the ack of a unit it knows
// delivered) until ctx ends. Without this a lost ack would leave the unit
// to be handed out again only after AckWait.
func (w *Worker) ack(ctx context.Context, msg jetstream.Msg) error {
	for {
		rctx, cancel := w.c.request(ctx)
		err := msg.DoubleAck(rctx)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) || errors.Is(err, jetstream.ErrMsgNotBound) || errors.Is(err, jetstream.ErrMsgNoReply) {
			return err
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return fmt.Errorf("%w: acknowledging unit: %v (giving up: %w)", ErrUnavailable, err, ctx.Err())
		}
	}
}

// probe runs the Prober on u, telling JetStream the unit is in progress
// until it returns.
func (w *Worker) probe(ctx context.Context, msg jetstream.Msg, u Unit, pub *unitPublisher, mark []byte) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(w.ackWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
				w.putMark(pctx, runKey(u.Job, u.ID), mark)
			}
		}
	}()
	defer close(done)
	var returned atomic.Bool
	err := w.cfg.Prober.Probe(pctx, u, func(r Result) {
		if returned.Load() {
			return
		}
		pub.emit(r)
	})
	returned.Store(true)
	return err
}

func (w *Worker) putMark(ctx context.Context, key string, val []byte) {
	rctx, cancel := w.c.request(ctx)
	defer cancel()
	_, _ = w.c.workers.Put(rctx, key, val)
}

func (w *Worker) heartbeats(ctx context.Context) {
	host, _ := os.Hostname()
	every := max(w.c.cfg.HeartbeatTTL/3, 10*time.Millisecond)
	for {
		hb, _ := json.Marshal(Heartbeat{
			ID: w.cfg.ID, Host: host, PID: os.Getpid(), Started: w.started, At: w.c.cfg.Now(),
			Egress: w.cfg.Egress, Busy: int(w.busy.Load()), Stats: w.Stats(),
		})
		w.putMark(ctx, workerKey(w.cfg.ID), hb)
		if !sleepCtx(ctx, every) {
			return
		}
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func firstHost(u Unit) string {
	if len(u.MXHosts) > 0 {
		return u.MXHosts[0]
	}
	return ""
}

// unitPublisher publishes one unit's results as they come, each once, in
// batches (see maxResultBatch), and tells when they are all stored.
type unitPublisher struct {
	c    *Conn
	unit Unit
	size int
	host string

	mu      sync.Mutex
	keys    map[uint64]bool // the unit's keys: emitted or not
	batch   []Result        // emitted, not yet published
	timer   *time.Timer     // publishes batch resultBatchDelay after its first result
	sent    []sentBatch     // published, not yet confirmed
	pending []sentBatch     // failed at once: published again in wait
}

// sentBatch is one published batch: its message and how many results it holds.
type sentBatch struct {
	f   jetstream.PubAckFuture // nil when publishing failed at once
	msg *nats.Msg
	n   int
}

func newUnitPublisher(c *Conn, u Unit, size int, host string) *unitPublisher {
	keys := make(map[uint64]bool, len(u.Addresses))
	for _, a := range u.Addresses {
		keys[a.Key] = false
	}
	return &unitPublisher{c: c, unit: u, size: size, host: host, keys: keys}
}

// emit queues r for publishing unless its key is not the unit's or was
// emitted before.
func (p *unitPublisher) emit(r Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done, ok := p.keys[r.Key]
	if !ok || done {
		return
	}
	p.keys[r.Key] = true
	r.Job, r.Unit = p.unit.Job, p.unit.ID
	if r.CheckedAt.IsZero() {
		r.CheckedAt = p.c.cfg.Now()
	}
	p.batch = append(p.batch, r)
	switch {
	case len(p.batch) >= maxResultBatch:
		p.publishLocked()
	case len(p.batch) == 1:
		p.timer = time.AfterFunc(resultBatchDelay, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.publishLocked()
		})
	}
}

// publishLocked publishes the batch; p.mu is held.
func (p *unitPublisher) publishLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if len(p.batch) == 0 {
		return
	}
	batch := p.batch
	p.batch = nil
	data := encodeResults(resultMsg{Version: WireVersion, UnitSize: p.size, Host: p.host, Results: batch})
	keys := make([]uint64, len(batch))
	for i, r := range batch {
		keys[i] = r.Key
	}
	m := nats.NewMsg(resultSubject(p.unit.Job, p.unit.ID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, resultMsgID(p.unit.Job, p.unit.ID, keys))
	f, err := p.c.js.PublishMsgAsync(m)
	if err != nil {
		p.pending = append(p.pending, sentBatch{msg: m, n: len(batch)})
		return
	}
	p.sent = append(p.sent, sentBatch{f: f, msg: m, n: len(batch)})
}

// wait publishes what is left and returns once every emitted result is
// stored, publishing again those whose first try failed; it returns how
// many were stored.
func (p *unitPublisher) wait(ctx context.Context) (int, error) {
	p.mu.Lock()
	p.publishLocked()
	sent, pending := p.sent, p.pending
	p.sent, p.pending = nil, nil
	p.mu.Unlock()
	stored := 0
	for _, b := range sent {
		n, err := p.c.settle(ctx, []jetstream.PubAckFuture{b.f})
		if err != nil {
			return stored, fmt.Errorf("cluster: storing results of unit %s: %w", p.unit.ID, err)
		}
		stored += n * b.n
	}
	for _, b := range pending {
		if err := p.c.storeMsg(ctx, b.msg); err != nil {
			return stored, fmt.Errorf("cluster: storing results of unit %s: %w", p.unit.ID, err)
		}
		stored += b.n
	}
	return stored, nil
}

// missing returns those of addrs no result was emitted for.
func (p *unitPublisher) missing(addrs []Address) []Address {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Address
	for _, a := range addrs {
		if !p.keys[a.Key] {
			out = append(out, a)
		}
	}
	return out
}

// unitResultKeys returns the keys that already have a result stored for a
// unit, read with an ordered consumer on the unit's result subject.
func (c *Conn) unitResultKeys(ctx context.Context, job, unit string) (map[uint64]struct{}, error) {
	rctx, cancel := c.request(ctx)
	defer cancel()
	have := map[uint64]struct{}{}
	info, err := c.results.Info(rctx, jetstream.WithSubjectFilter(resultSubject(job, unit)))
	if err != nil {
		return nil, fmt.Errorf("cluster: results of unit %s: %w", unit, err)
	}
	if info.State.Subjects[resultSubject(job, unit)] == 0 {
		return have, nil
	}
	cons, err := c.js.OrderedConsumer(rctx, ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{resultSubject(job, unit)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: results of unit %s: %w", unit, err)
	}
	for {
		m, err := cons.Next(jetstream.FetchContext(rctx))
		if err != nil {
			return nil, fmt.Errorf("cluster: results of unit %s: %w", unit, err)
		}
		if msg, err := decodeResult(m.Data()); err == nil {
			for _, r := range msg.Results {
				have[r.Key] = struct{}{}
			}
		}
		md, err := m.Metadata()
		if err != nil || md.NumPending == 0 {
			return have, nil
		}
	}
}
