package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/verdict"
)

// maxHostsInRecord bounds the hosts a job record lists by name, so the
// record stays far below the server's payload limit however many hosts a
// job has; the rest are counted under OtherHosts.
const maxHostsInRecord = 100

// OtherHosts names, in progress per host, the hosts beyond the biggest
// maxHostsInRecord of a job.
const OtherHosts = "(other hosts)"

// JobRecord is what Submit keeps of a job in JobsBucket (job.JOB).
type JobRecord struct {
	ID        string      `json:"id"`
	Created   time.Time   `json:"created"`
	Updated   time.Time   `json:"updated"`
	Submitted bool        `json:"submitted"` // every unit is published; Units and Addresses are final
	Units     int         `json:"units"`
	Addresses int         `json:"addresses"`
	Hosts     []HostCount `json:"hosts,omitempty"` // the biggest hosts, then OtherHosts
}

// HostCount is the size of one MX host's share of a job.
type HostCount struct {
	Host      string `json:"host"`
	Units     int    `json:"units"`
	Addresses int    `json:"addresses"`
}

// JobProgress is what Collect keeps of a job in JobsBucket (prog.JOB):
// results received and checkpointed, by unit, address and host.
type JobProgress struct {
	Updated       time.Time      `json:"updated"`
	DoneUnits     int            `json:"done_units"`
	DoneAddresses int            `json:"done_addresses"`
	Hosts         map[string]int `json:"hosts,omitempty"` // addresses done per host of JobRecord.Hosts
	Finished      bool           `json:"finished"`
}

// Coordinator submits jobs' units and collects their results.
type Coordinator struct {
	c *Conn
}

// Coordinator returns the coordinator API on c.
func (c *Conn) Coordinator() *Coordinator { return &Coordinator{c: c} }

// Open returns the job's record, creating it when no Submit or Open has:
// its Created is when the job first began, the same for a coordinator that
// starts again, which is what lets it read the verdict cache as it did the
// first time (VerdictCache.GetBatchAsOf). existed tells a job that was
// already there (a resumed one).
func (co *Coordinator) Open(ctx context.Context, job string) (rec JobRecord, existed bool, err error) {
	if err := checkID("job", job); err != nil {
		return rec, false, err
	}
	c := co.c
	for {
		rec, _, err = c.jobRecord(ctx, job)
		if err != nil || rec.ID != "" {
			return rec, rec.ID != "", err
		}
		rec = JobRecord{ID: job, Created: c.cfg.Now()}
		data, err := json.Marshal(rec)
		if err != nil {
			return rec, false, err
		}
		err = c.whileElecting(ctx, func(ctx context.Context) error {
			_, err := c.jobs.Create(ctx, jobKey(job), data)
			return err
		})
		if err == nil {
			return rec, false, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return rec, false, fmt.Errorf("%w: creating job %s: %v", ErrUnavailable, job, err)
		}
		// Created meanwhile by another coordinator: read it.
	}
}

// SubmitStats counts what Submit did.
type SubmitStats struct {
	Units     int // units of the job
	Addresses int // addresses of the job
	Published int // units published now
	Skipped   int // units found already published, probed or done (a resumed job)
}

// Submit publishes the job's units to the work queue, each once: a unit an
// earlier Submit of the same job published (still queued, probed, or
// done) is not published again, so a coordinator that restarts calls
// Submit with the same units and only what is missing goes out. Units must
// have the same ids on every call (the cut of the input is deterministic).
// A unit's Job is set to job. When all are out, the job record is marked
// submitted with its totals, which is what lets Collect tell it is complete.
func (co *Coordinator) Submit(ctx context.Context, job string, units iter.Seq[Unit]) (SubmitStats, error) {
	var st SubmitStats
	if err := checkID("job", job); err != nil {
		return st, err
	}
	c := co.c
	rec, _, err := c.jobRecord(ctx, job)
	if err != nil {
		return st, err
	}
	if rec.ID == "" {
		rec = JobRecord{ID: job, Created: c.cfg.Now()}
		if err := c.putJSON(ctx, c.jobs, jobKey(job), rec); err != nil {
			return st, err
		}
	}
	skip, err := co.submitted(ctx, job)
	if err != nil {
		return st, err
	}
	hosts := map[string]*HostCount{}
	var futures []jetstream.PubAckFuture
	settle := func() error {
		// A unit whose acknowledgement is lost (a leader being elected)
		// is published again until stored; its id makes a copy that did
		// get stored harmless.
		if _, err := c.settle(ctx, futures); err != nil {
			return fmt.Errorf("cluster: publishing units: %w", err)
		}
		futures = futures[:0]
		return nil
	}
	seen := map[string]bool{}
	for u := range units {
		u.Job = job
		if err := u.Check(); err != nil {
			return st, err
		}
		if seen[u.ID] {
			return st, fmt.Errorf("%w: unit id %s twice in job %s", ErrBadUnit, u.ID, job)
		}
		seen[u.ID] = true
		data, err := encodeUnit(u)
		if err != nil {
			return st, err
		}
		st.Units++
		st.Addresses += len(u.Addresses)
		h := hosts[firstHost(u)]
		if h == nil {
			h = &HostCount{Host: firstHost(u)}
			hosts[h.Host] = h
		}
		h.Units++
		h.Addresses += len(u.Addresses)
		if skip[u.ID] {
			st.Skipped++
			continue
		}
		m := nats.NewMsg(unitSubject(job, u.ID))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, unitMsgID(job, u.ID))
		f, err := c.js.PublishMsgAsync(m)
		if err != nil {
			return st, fmt.Errorf("cluster: publishing unit %s: %w", u.ID, err)
		}
		futures = append(futures, f)
		st.Published++
		if len(futures) >= 1000 {
			if err := settle(); err != nil {
				return st, err
			}
		}
	}
	if err := settle(); err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		// units may have stopped early because ctx ended: what came is
		// out, but the job is not complete, and must not look it.
		return st, err
	}
	rec.Submitted, rec.Units, rec.Addresses, rec.Updated = true, st.Units, st.Addresses, c.cfg.Now()
	rec.Hosts = topHosts(hosts)
	if err := c.putJSON(ctx, c.jobs, jobKey(job), rec); err != nil {
		return st, err
	}
	return st, nil
}

// topHosts returns the biggest hosts, and the others summed under
// OtherHosts.
func topHosts(hosts map[string]*HostCount) []HostCount {
	all := make([]HostCount, 0, len(hosts))
	for _, h := range hosts {
		all = append(all, *h)
	}
	slices.SortFunc(all, func(a, b HostCount) int {
		return cmp.Or(cmp.Compare(b.Addresses, a.Addresses), strings.Compare(a.Host, b.Host))
	})
	if len(all) <= maxHostsInRecord {
		return all
	}
	other := HostCount{Host: OtherHosts}
	for _, h := range all[maxHostsInRecord:] {
		other.Units += h.Units
		other.Addresses += h.Addresses
	}
	return append(all[:maxHostsInRecord:maxHostsInRecord], other)
}

// submitted returns the ids of the job's units that need not be published:
// done, still queued (or being probed), or with results stored (a worker
// finished them).
func (co *Coordinator) submitted(ctx context.Context, job string) (map[string]bool, error) {
	c := co.c
	skip, err := c.doneUnits(ctx, job)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		stream jetstream.Stream
		filter string
	}{{c.units, jobUnitSubjects(job)}, {c.results, jobResultSubjects(job)}} {
		rctx, cancel := c.request(ctx)
		info, err := s.stream.Info(rctx, jetstream.WithSubjectFilter(s.filter))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, s.filter, err)
		}
		for subj := range info.State.Subjects {
			skip[subj[strings.LastIndexByte(subj, '.')+1:]] = true
		}
	}
	return skip, nil
}

// doneUnits returns the job's units whose results were all collected.
func (c *Conn) doneUnits(ctx context.Context, job string) (map[string]bool, error) {
	rctx, cancel := c.request(ctx)
	defer cancel()
	done := map[string]bool{}
	lister, err := c.jobs.ListKeysFiltered(rctx, doneKeys(job))
	if err != nil {
		return nil, fmt.Errorf("%w: listing done units: %v", ErrUnavailable, err)
	}
	prefix := "done." + job + "."
	for k := range lister.Keys() {
		done[strings.TrimPrefix(k, prefix)] = true
	}
	return done, nil
}

func (c *Conn) jobRecord(ctx context.Context, job string) (JobRecord, uint64, error) {
	var rec JobRecord
	rev, err := c.getJSON(ctx, c.jobs, jobKey(job), &rec)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return JobRecord{}, 0, nil
	}
	return rec, rev, err
}

func (c *Conn) getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	var e jetstream.KeyValueEntry
	err := c.whileElecting(ctx, func(ctx context.Context) error {
		var err error
		e, err = kv.Get(ctx, key)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("cluster: %s %s: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

func (c *Conn) putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cluster: %s %s: %w", kv.Bucket(), key, err)
	}
	if err := c.whileElecting(ctx, func(ctx context.Context) error {
		_, err := kv.Put(ctx, key, data)
		return err
	}); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, kv.Bucket(), key, err)
	}
	return nil
}

// CollectOptions tunes Collect. The zero value works.
type CollectOptions struct {
	// Checkpoint, when set, makes what fn was given so far durable (fsync
	// the output). Collect calls it before it marks units done and
	// acknowledges their results, at least every FlushInterval.
	Checkpoint func() error
	// FlushInterval is how often complete units are checkpointed, marked
	// done and acknowledged, default 1s.
	FlushInterval time.Duration
	// Skip, when set, drops results of keys the caller already has (rows
	// already in a resumed output): they count for completion but are not
	// given to fn.
	Skip func(key uint64) bool
	// AckWait is how long results may wait unacknowledged (their unit not
	// complete yet) before JetStream sends them again, default 1h. Copies
	// are dropped; it only needs to be longer than a unit usually takes.
	AckWait time.Duration
	// IdleCheck is how long Collect goes without a result before it asks
	// JetStream whether its consumer handed out results it never got (lost
	// with a server or a consumer leader, they would come back only after
	// AckWait) or is gone; then it re-creates the consumer from its ack
	// floor. Default 30s.
	IdleCheck time.Duration
}

// collectState is Collect's view of the job's units not yet done.
type collectState struct {
	done     map[string]bool
	units    map[string]*unitState
	complete []string // units all of whose results were given to fn, not yet marked done
	prog     JobProgress
	inRecord map[string]bool // hosts the job record names
}

// held counts the result messages Collect holds unacknowledged (each
// stream sequence once: a redelivered copy is the same message).
func (st *collectState) held() int {
	seqs := map[uint64]struct{}{}
	for _, u := range st.units {
		for _, m := range u.msgs {
			if md, err := m.Metadata(); err == nil {
				seqs[md.Sequence.Stream] = struct{}{}
			}
		}
	}
	return len(seqs)
}

type unitState struct {
	size int
	host string
	keys map[uint64]struct{}
	msgs []jetstream.Msg
}

// ErrJobNotFound is returned by Collect and Status for a job no Submit
// has created.
var ErrJobNotFound = errors.New("cluster: job not found")

// Collect gives fn the result of every address of the job, each once, and
// returns nil once every unit's results are in (the job must have been, or
// be being, submitted). fn is called from one goroutine; an error from it
// stops Collect.
//
// Restarts: results are acknowledged a whole unit at a time, after
// Checkpoint and after the unit is marked done in JetStream; a Collect that
// starts again (after a crash of the coordinator, with the same job) gets
// the results of every unit not marked done, and fn sees only those again.
// Of those, the ones fn had already been given before the crash are the
// caller's to drop: Skip (the rows of the resumed output) does so.
//
// A unit whose every delivery failed without its worker telling (each
// worker killed on it) is failed by Collect: its addresses without a
// result get unknown/worker_failed.
func (co *Coordinator) Collect(ctx context.Context, job string, opts CollectOptions, fn func(Result) error) error {
	if err := checkID("job", job); err != nil {
		return err
	}
	c := co.c
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.AckWait <= 0 {
		opts.AckWait = time.Hour
	}
	if opts.IdleCheck <= 0 {
		opts.IdleCheck = 30 * time.Second
	}
	rec, _, err := c.jobRecord(ctx, job)
	if err != nil {
		return err
	}
	if rec.ID == "" {
		return fmt.Errorf("%w: %s", ErrJobNotFound, job)
	}
	st := &collectState{units: map[string]*unitState{}}
	if st.done, err = c.doneUnits(ctx, job); err != nil {
		return err
	}
	if _, err := c.getJSON(ctx, c.jobs, progressKey(job), &st.prog); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	if st.prog.Hosts == nil {
		st.prog.Hosts = map[string]int{}
	}
	st.prog.DoneUnits = len(st.done)
	st.inRecord = hostSet(rec)
	if rec.Submitted && len(st.done) >= rec.Units {
		return co.finish(ctx, job, st)
	}

	// The job's state is its done marks, not the consumer's: results a
	// Collect before this one was given and did not acknowledge would
	// wait out the ack wait in an old consumer, so every Collect starts a
	// consumer of its own from the start of the job's results, and drops
	// those of units marked done. One Collect runs per job at a time.
	feed, err := co.openFeed(ctx, job, 0, opts)
	if err != nil {
		return err
	}
	defer func() { feed.close() }()

	// Units that reached MaxDeliver without a worker failing them.
	exhausted := make(chan uint64, 64)
	sub, err := c.nc.Subscribe(maxDeliveriesAdvisory, func(m *nats.Msg) {
		var adv struct {
			Seq uint64 `json:"stream_seq"`
		}
		if json.Unmarshal(m.Data, &adv) == nil && adv.Seq > 0 {
			select {
			case exhausted <- adv.Seq:
			default: // the unit stays queued; a later advisory is not sent, see README
			}
		}
	})
	if err != nil {
		return fmt.Errorf("%w: advisory subscription: %v", ErrUnavailable, err)
	}
	defer sub.Unsubscribe()

	tick := time.NewTicker(opts.FlushInterval)
	defer tick.Stop()
	// idle fires every IdleCheck; a result since the last time (busy)
	// defers the check of the consumer.
	idle := time.NewTicker(opts.IdleCheck)
	defer idle.Stop()
	busy := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case seq := <-exhausted:
			co.failExhausted(ctx, job, seq, st)
		case <-idle.C:
			if busy {
				busy = false
				continue
			}
			from, lost := co.lostDeliveries(ctx, feed, st)
			if !lost {
				continue
			}
			if feed, err = co.reopenFeed(ctx, job, feed, from, st, opts); err != nil {
				return err
			}
		case m, ok := <-feed.msgs:
			if !ok {
				// The iterator ended by itself (its consumer deleted or
				// gone with its servers): a new consumer, from its ack
				// floor if it can still tell it.
				if ctx.Err() != nil {
					return ctx.Err()
				}
				from, _ := co.lostDeliveries(ctx, feed, st)
				if feed, err = co.reopenFeed(ctx, job, feed, from, st, opts); err != nil {
					return err
				}
				continue
			}
			busy = true
			if err := co.take(m, st, opts, fn); err != nil {
				return err
			}
			last := rec.Submitted && len(st.done)+len(st.complete) >= rec.Units
			if len(st.complete) < 256 && !last {
				continue
			}
			if err := co.flush(ctx, job, st, opts); err != nil {
				return err
			}
			if last {
				// The job's last unit: done now, not at the next tick.
				return co.finish(ctx, job, st)
			}
		case <-tick.C:
			if err := co.flush(ctx, job, st, opts); err != nil {
				return err
			}
			if !rec.Submitted {
				if err := retryUnavailable(ctx, func() error {
					var err error
					rec, _, err = c.jobRecord(ctx, job)
					return err
				}); err != nil {
					return err
				}
				st.inRecord = hostSet(rec)
			}
			if rec.Submitted && len(st.done) >= rec.Units {
				return co.finish(ctx, job, st)
			}
		}
	}
}

// feedHeartbeat is how often the server tells Collect's waiting pull
// request is alive. A request can be lost without a word: sent while the
// consumer has no leader yet (just created, its interest not yet known to
// the server Collect is connected to, or a leader being elected), it is
// answered "no responders", and one waiting at a leader that dies goes
// with it. The client counts it as waiting all the same and pulls again
// only once two heartbeats are missed; with the client's default of half
// the pull's expiry, that left Collect deaf for 30s.
const feedHeartbeat = time.Second

// resultFeed is Collect's consumer of a job's results and the goroutine
// that hands its messages over.
type resultFeed struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
	msgs chan jetstream.Msg
	stop chan struct{}
}

// openFeed creates the job's results consumer afresh, delivering from
// stream sequence from on (0: from the start), and starts reading it.
func (co *Coordinator) openFeed(ctx context.Context, job string, from uint64, opts CollectOptions) (*resultFeed, error) {
	c := co.c
	rctx, cancel := c.request(ctx)
	defer cancel()
	if err := c.results.DeleteConsumer(rctx, resultsConsumer(job)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("%w: results consumer: %v", ErrUnavailable, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       resultsConsumer(job),
		Description:   "results of job " + job + " for its coordinator",
		FilterSubject: jobResultSubjects(job),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.cfg.Replicas,
	}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := c.results.CreateOrUpdateConsumer(rctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: results consumer: %v", ErrUnavailable, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(500), jetstream.PullHeartbeat(feedHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("%w: results: %v", ErrUnavailable, err)
	}
	f := &resultFeed{cons: cons, it: it, msgs: make(chan jetstream.Msg), stop: make(chan struct{})}
	go f.pump(ctx)
	return f, nil
}

func (f *resultFeed) pump(ctx context.Context) {
	defer close(f.msgs)
	for {
		m, err := f.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			// A server away, or two heartbeats missed (the pull request
			// lost, see feedHeartbeat): the next Next pulls again.
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-f.stop:
			case <-ctx.Done():
			}
			return
		}
		select {
		case f.msgs <- m:
		case <-f.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (f *resultFeed) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
		f.it.Stop()
	}
}

// lostDeliveries tells whether the feed's consumer counts more results
// handed out and not acknowledged than Collect holds: results lost on
// their way (their consumer's leader gone with them, a route cut) or
// acknowledgements lost. JetStream would send those again only after
// AckWait, an hour; a new consumer sends them now. A consumer that is gone
// counts as lost too. from is where a new consumer may start: every
// result before it is acknowledged (0 when unknown: from the start).
// Errors reaching JetStream are not lost deliveries: the next check asks
// again.
func (co *Coordinator) lostDeliveries(ctx context.Context, feed *resultFeed, st *collectState) (from uint64, lost bool) {
	rctx, cancel := co.c.request(ctx)
	defer cancel()
	info, err := feed.cons.Info(rctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, true
	}
	if err != nil {
		return 0, false
	}
	return info.AckFloor.Stream + 1, info.NumAckPending > st.held()
}

// reopenFeed replaces the feed by a new consumer from stream sequence
// from. The results Collect holds of units not done come again (they are
// past the ack floor) with handles of the new consumer; their keys were
// already given to fn, so fn does not see them twice.
func (co *Coordinator) reopenFeed(ctx context.Context, job string, old *resultFeed, from uint64, st *collectState, opts CollectOptions) (*resultFeed, error) {
	old.close()
	for _, u := range st.units {
		u.msgs = nil
	}
	var feed *resultFeed
	err := retryUnavailable(ctx, func() error {
		var err error
		feed, err = co.openFeed(ctx, job, from, opts)
		return err
	})
	if err != nil {
		return old, err
	}
	return feed, nil
}

// maxDeliveriesAdvisory is the subject JetStream tells on that a unit was
// handed out MaxDeliver times without being acknowledged.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + UnitsStream + "." + WorkersConsumer

func hostSet(rec JobRecord) map[string]bool {
	s := make(map[string]bool, len(rec.Hosts))
	for _, h := range rec.Hosts {
		s[h.Host] = true
	}
	return s
}

// take handles one result message, a batch of one unit's results.
func (co *Coordinator) take(m jetstream.Msg, st *collectState, opts CollectOptions, fn func(Result) error) error {
	msg, err := decodeResult(m.Data())
	if err != nil || len(msg.Results) == 0 {
		_ = m.Term() // no coordinator of this version can read it
		return nil
	}
	unit := msg.Results[0].Unit
	if st.done[unit] {
		_ = m.Ack() // a copy of results of a finished unit
		return nil
	}
	u := st.units[unit]
	if u == nil {
		u = &unitState{size: msg.UnitSize, host: msg.Host, keys: make(map[uint64]struct{}, msg.UnitSize)}
		st.units[unit] = u
	}
	u.msgs = append(u.msgs, m)
	complete := len(u.keys) >= u.size
	for _, r := range msg.Results {
		if r.Unit != unit {
			continue // a batch holds one unit's results
		}
		if _, dup := u.keys[r.Key]; dup {
			continue
		}
		u.keys[r.Key] = struct{}{}
		if opts.Skip == nil || !opts.Skip(r.Key) {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	if !complete && len(u.keys) >= u.size {
		st.complete = append(st.complete, unit)
	}
	return nil
}

// flush checkpoints the caller, marks the complete units done and
// acknowledges their results, in that order: a crash between two steps
// makes Collect see those results again, never lose them.
func (co *Coordinator) flush(ctx context.Context, job string, st *collectState, opts CollectOptions) error {
	if len(st.complete) == 0 {
		return nil
	}
	c := co.c
	if opts.Checkpoint != nil {
		if err := opts.Checkpoint(); err != nil {
			return fmt.Errorf("cluster: checkpoint: %w", err)
		}
	}
	// The done marks go out together and are waited for together: one
	// round trip for many units, not one each.
	if err := retryUnavailable(ctx, func() error { return co.markDone(ctx, job, st) }); err != nil {
		return err
	}
	for _, id := range st.complete {
		u := st.units[id]
		for _, m := range u.msgs {
			_ = m.Ack()
		}
		st.done[id] = true
		delete(st.units, id)
		st.prog.DoneUnits++
		st.prog.DoneAddresses += u.size
		host := u.host
		if !st.inRecord[host] {
			host = OtherHosts
		}
		st.prog.Hosts[host] += u.size
	}
	st.complete = st.complete[:0]
	st.prog.Updated = c.cfg.Now()
	return retryUnavailable(ctx, func() error { return c.putJSON(ctx, c.jobs, progressKey(job), st.prog) })
}

// markDone stores the done marks of the complete units (done.JOB.UNIT).
func (co *Coordinator) markDone(ctx context.Context, job string, st *collectState) error {
	c := co.c
	futures := make([]jetstream.PubAckFuture, 0, len(st.complete))
	for _, id := range st.complete {
		u := st.units[id]
		data, err := json.Marshal(struct {
			Addresses int       `json:"addresses"`
			Host      string    `json:"host"`
			At        time.Time `json:"at"`
		}{u.size, u.host, c.cfg.Now()})
		if err != nil {
			return fmt.Errorf("cluster: done mark of %s: %w", id, err)
		}
		f, err := c.js.PublishAsync("$KV."+JobsBucket+"."+doneKey(job, id), data)
		if err != nil {
			return fmt.Errorf("%w: done mark of %s: %v", ErrUnavailable, id, err)
		}
		futures = append(futures, f)
	}
	// A done mark whose acknowledgement is lost is put again: harmless.
	if _, err := c.settle(ctx, futures); err != nil {
		return fmt.Errorf("cluster: done marks: %w", err)
	}
	return nil
}

// retryUnavailable calls f until it succeeds, fails for another reason
// than JetStream being away (a server restarting, a leader being elected),
// or ctx ends.
func retryUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return fmt.Errorf("%w (giving up: %v)", err, ctx.Err())
		}
	}
}

// finish marks the job finished in its progress record.
func (co *Coordinator) finish(ctx context.Context, job string, st *collectState) error {
	st.prog.Finished = true
	st.prog.Updated = co.c.cfg.Now()
	return retryUnavailable(ctx, func() error { return co.c.putJSON(ctx, co.c.jobs, progressKey(job), st.prog) })
}

// failExhausted gives the addresses of a unit no worker could finish (each
// one killed on it) a worker_failed result, and removes the unit from the
// queue, where it would otherwise stay undelivered.
func (co *Coordinator) failExhausted(ctx context.Context, job string, seq uint64, st *collectState) {
	c := co.c
	rctx, cancel := c.request(ctx)
	defer cancel()
	raw, err := c.units.GetMsg(rctx, seq)
	if err != nil {
		return // acknowledged meanwhile, or not there
	}
	u, err := decodeUnit(raw.Data)
	if err != nil || u.Job != job || st.done[u.ID] {
		return
	}
	have, err := c.unitResultKeys(rctx, job, u.ID)
	if err != nil {
		return
	}
	pub := newUnitPublisher(c, u, len(u.Addresses), firstHost(u))
	now := c.cfg.Now()
	for _, a := range u.Addresses {
		if _, ok := have[a.Key]; !ok {
			pub.emit(Result{Key: a.Key, Status: output.StatusUnknown, Reason: verdict.ReasonWorkerFailed, CheckedAt: now, MXHost: firstHost(u)})
		}
	}
	if _, err := pub.wait(rctx); err != nil {
		return
	}
	_ = c.units.DeleteMsg(rctx, seq)
}

// Cleanup removes everything the cluster holds of a job: queued units,
// results, its consumer, record, progress and done marks. Call it once the
// output is complete and durable.
func (co *Coordinator) Cleanup(ctx context.Context, job string) error {
	if err := checkID("job", job); err != nil {
		return err
	}
	c := co.c
	rctx, cancel := c.request(ctx)
	defer cancel()
	if err := c.results.DeleteConsumer(rctx, resultsConsumer(job)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: deleting results consumer: %v", ErrUnavailable, err)
	}
	if err := c.results.Purge(rctx, jetstream.WithPurgeSubject(jobResultSubjects(job))); err != nil {
		return fmt.Errorf("%w: purging results: %v", ErrUnavailable, err)
	}
	if err := c.units.Purge(rctx, jetstream.WithPurgeSubject(jobUnitSubjects(job))); err != nil {
		return fmt.Errorf("%w: purging units: %v", ErrUnavailable, err)
	}
	kvStream, err := c.js.Stream(rctx, "KV_"+JobsBucket)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, key := range []string{doneKeys(job), jobKey(job), progressKey(job)} {
		if err := kvStream.Purge(rctx, jetstream.WithPurgeSubject("$KV."+JobsBucket+"."+key)); err != nil {
			return fmt.Errorf("%w: purging %s: %v", ErrUnavailable, key, err)
		}
	}
	return nil
}
