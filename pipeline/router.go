package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/verdict"
)

// router holds one queue of addresses per MX host and decides when a host
// gets another connection. Domains are routed by host name, so every domain
// whose MX is the same host shares that host's queue and connections.
//
// Invariant: a host with waiting addresses that is not down has at least one
// worker; workers re-check their queue when they leave.
type router struct {
	cfg   *Config
	spawn func(*hostQueue)
	fail  func(t *target, f *hostFailure)
	fatal func(error)

	spill    *spillFile         // where queues of hosts that fell behind go
	mem      *gauge             // addresses in memory
	seedHost func(h *hostQueue) // fills in what earlier runs learnt about h; called with mu held

	mu          sync.Mutex
	hosts       map[string]*hostQueue
	changed     chan struct{} // closed and replaced on every change a waiting worker may care about
	producing   bool          // addresses may still arrive
	stopped     bool          // the run is over: start no more workers
	slotWaiters int           // workers waiting for a global connection slot
	outstanding int           // targets not finished, plus one while producing
	allDone     chan struct{}
}

// hostQueue is the work and state of one MX host.
type hostQueue struct {
	name          string
	operator      string      // who runs it, as the reply table and the budget name it
	pending       targetQueue // the head of its queue, in memory
	disk          diskQueue   // the rest, when it fell behind (hostspill.go)
	workers       int         // live workers, including those still waiting for a slot or connecting
	established   int         // workers holding an open session
	everUsed      bool
	op            *operator.Operator // who runs it
	stats         hostStats
	proxyDoubts   int           // connections through a proxy that ended before the banner, put down to the proxy
	limits        egress.Limits // its operator's, as the Budget is asked
	txnLimit      int           // recipients per transaction the server accepts, learnt from 452 4.5.3; 0 = not known
	connRcpt      int           // recipients per connection the server accepts, learnt from a refused first RCPT of a transaction; 0 = not known
	connCap       int           // connections the server allows us, learnt from refusals while others were open; 0 = not known
	refused       string        // why it is asked no more ("" = it is): refuses_all or policy_block
	refusedReply  *probe.Reply  // the reply that said so, if any
	harvestRounds int           // times it turned to refusing everything, postmaster included
	down          *hostFailure  // why the host could not be used ...
	downUntil     time.Time     // ... and until when it is skipped
}

// maxConns is the per-host connection cap: the configured one, or the
// server's own if it has shown a lower one.
func (h *hostQueue) maxConns(configured int) int {
	if h.connCap > 0 && h.connCap < configured {
		return h.connCap
	}
	return configured
}

func (h *hostQueue) isDown(now time.Time) bool {
	return h.down != nil && now.Before(h.downUntil)
}

// hostFailure says why a host could not be used, as it will be reported for
// addresses that have no other MX left.
type hostFailure struct {
	status, reason string
	reply          *probe.Reply
	decision       verdict.Decision // the reply's reading, when there is a reply
	host           string           // the MX host it happened at
	pushback       bool             // the server pushed back (a 4xx to our greeting)
	refusedUs      bool             // every egress is refused by the host's operator
	egressOnly     bool             // the egress failed, not the host: try again another way
}

// preferFailure is what an address is told when none of its domain's MX
// hosts could be used, given what it was told so far (have, nil at first)
// and the failure of the next host tried. "Every MX name is missing from
// DNS" (undeliverable) holds only when it holds for all of them: a primary
// that timed out and a stale backup name is a domain we could not reach,
// which is unknown and worth retrying. Otherwise the failure of the most
// preferred host stands.
func preferFailure(have, next *hostFailure) *hostFailure {
	if have == nil || (have.reason == ReasonMXUnresolvable && next.reason != ReasonMXUnresolvable) {
		return next
	}
	return have
}

func newRouter(cfg *Config, spawn func(*hostQueue), fail func(*target, *hostFailure)) *router {
	return &router{
		cfg:     cfg,
		spawn:   spawn,
		fail:    fail,
		hosts:   map[string]*hostQueue{},
		changed: make(chan struct{}),
		allDone: make(chan struct{}),
		// Until producerDone, more addresses may come: that holds one
		// count of outstanding, so allDone cannot close early.
		producing:   true,
		outstanding: 1,
	}
}

// newHost makes the queue of MX host name, with its operator's limits: the
// table's, or for a host in no entry (or an entry that leaves them out) the
// run's per-MX defaults.
func (r *router) newHost(name string) *hostQueue {
	op := r.cfg.Operators.Lookup(name)
	lim := egress.Limits{
		Sessions:      op.Sessions,
		RcptPerSecond: r.cfg.RcptRate,
		Burst:         r.cfg.RcptPerTransaction + 1, // a transaction and its positive control at once
		Backoff:       op.Backoff,
	}
	if lim.Sessions <= 0 {
		lim.Sessions = r.cfg.MaxConnectionsPerHost
	}
	if op.RcptPerSecond != nil {
		lim.RcptPerSecond = *op.RcptPerSecond
	}
	h := &hostQueue{name: name, operator: op.Name, op: op, limits: lim}
	if r.seedHost != nil {
		r.seedHost(h)
	}
	return h
}

// waiting is how many addresses wait at h, in memory and on disk.
func (h *hostQueue) waiting() int { return h.pending.len() + h.disk.len() }

func (r *router) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// expect announces n more targets that will each be finished exactly once.
func (r *router) expect(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outstanding += n
}

// producerDone says no more addresses will be added.
func (r *router) producerDone() {
	r.mu.Lock()
	r.producing = false
	r.notifyLocked()
	r.mu.Unlock()
	r.done()
}

// done records one finished target.
func (r *router) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outstanding--
	if r.outstanding == 0 {
		close(r.allDone)
	}
}

// stop ends the run for the router: no more workers start, and addresses
// that arrive (from retry timers) are dropped undecided.
func (r *router) stop() {
	r.mu.Lock()
	r.stopped = true
	r.notifyLocked()
	r.mu.Unlock()
}

// add routes targets to the host each one's mxIdx points at.
func (r *router) add(targets []*target) {
	var failed []failedTarget
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	now := r.cfg.Clock.Now()
	for _, t := range targets {
		failed = r.routeLocked(t, now, failed)
	}
	r.notifyLocked()
	r.mu.Unlock()
	r.reportFailed(failed)
}

type failedTarget struct {
	t *target
	f *hostFailure
}

// routeLocked queues t at its current MX host, skipping hosts already known
// to be down. Targets with no usable host left are returned in failed, to be
// finished outside the lock.
func (r *router) routeLocked(t *target, now time.Time, failed []failedTarget) []failedTarget {
	for {
		hosts := t.dom.mail.Hosts
		name := hosts[t.mxIdx].Host
		h := r.hosts[name]
		if h == nil {
			h = r.newHost(name)
			r.hosts[name] = h
		}
		if !h.isDown(now) {
			if t.retries == 0 && !t.catchAll {
				h.stats.addresses.Add(1)
			}
			if h.disk.spilling() && spillable(t) {
				r.toTailLocked(h, t)
			} else {
				h.pending.push(t)
			}
			if !r.stopped && (h.workers == 0 || (h.workers < h.maxConns(r.cfg.MaxConnectionsPerHost) &&
				h.waiting() > h.workers*r.cfg.NewConnectionBacklog)) {
				h.workers++
				r.spawn(h)
			}
			return failed
		}
		t.failed = preferFailure(t.failed, h.down)
		if int(t.mxIdx)+1 >= len(hosts) {
			return append(failed, failedTarget{t: t, f: t.failed})
		}
		t.mxIdx++
	}
}

func (r *router) reportFailed(failed []failedTarget) {
	for _, ft := range failed {
		r.fail(ft.t, ft.f)
	}
}

// take removes up to n addresses from h's queue, refilling its head from
// disk first when it holds fewer.
func (r *router) take(h *hostQueue, n int) []*target {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h.pending.len() < n && h.disk.len() > 0 && !h.disk.reading {
		if !r.refillLocked(h) {
			break
		}
	}
	return h.pending.popFront(n)
}

// requeue puts targets whose question was not answered back in h's queue.
func (r *router) requeue(h *hostQueue, targets []*target) {
	if len(targets) == 0 {
		return
	}
	r.mu.Lock()
	h.pending.pushFront(targets)
	r.notifyLocked()
	r.mu.Unlock()
}

// waitForWork blocks until h has waiting addresses (true) or the worker
// should let its connection go (false): nothing more can arrive, another
// host is waiting for a connection slot, the idle time is over, or ctx ends.
func (r *router) waitForWork(ctx context.Context, h *hostQueue, idle time.Duration) bool {
	start := time.Now()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if h.pending.len() > 0 || (h.disk.len() > 0 && !h.disk.reading) {
			r.mu.Unlock()
			return true
		}
		if h.disk.reading {
			// Another worker is reading this host's queue back from
			// disk: wait for it (it notifies), whatever the run's state.
		} else if !r.producing || r.stopped || idle <= 0 {
			r.mu.Unlock()
			return false
		}
		if r.slotWaiters > 0 || r.cfg.Budget.Contended(h.operator) {
			// Another host waits for a slot, or for a session of this
			// host's operator: give this one up soon, but not at once, for
			// answers arriving in a burst (domains of this host still
			// being resolved) would open it again.
			if wait := slotGrace - time.Since(start); wait <= 0 {
				r.mu.Unlock()
				return false
			} else if wait < idle-time.Since(start) {
				timer.Reset(wait)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// slotGrace is how long an idle connection keeps its slot while another
// host waits for one.
const slotGrace = 50 * time.Millisecond

// txnLimit is how many RCPT one transaction on h may carry: the configured
// cap, or less once the server has said where its own limit is.
func (r *router) txnLimit(h *hostQueue) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.txnLimitLocked(h)
}

func (r *router) txnLimitLocked(h *hostQueue) int {
	return learnt(r.cfg.RcptPerTransaction, h.txnLimit)
}

// connLimit is how many RCPT one connection to h may carry.
func (r *router) connLimit(h *hostQueue) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connLimitLocked(h)
}

func (r *router) connLimitLocked(h *hostQueue) int {
	return learnt(r.cfg.RcptPerConnection, h.connRcpt)
}

// learnt is the configured limit, or the server's own when it is lower.
func learnt(configured, server int) int {
	if server > 0 && server < configured {
		return server
	}
	return configured
}

// learnTxnLimit records that h refused recipients past n in a transaction,
// so later transactions stop there instead of being refused again.
func (r *router) learnTxnLimit(h *hostQueue, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 0 && (h.txnLimit == 0 || n < h.txnLimit) {
		h.txnLimit = n
	}
}

// learnConnLimit records that h refused recipients past n on one
// connection, whatever the transaction: later connections stop there.
func (r *router) learnConnLimit(h *hostQueue, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 0 && (h.connRcpt == 0 || n < h.connRcpt) {
		h.connRcpt = n
	}
}

// minHarvestCap is the fewest RCPT per connection that learnHarvestLimit
// goes down to: smaller would mean a connection per address or two, which
// no server should see from us.
const minHarvestCap = 10

// learnHarvestLimit answers a server that began refusing everything once a
// connection had asked about asked recipients: later connections ask about
// half as many (but no fewer than minHarvestCap), in transactions no larger.
//
// It returns how many times h has turned so far.
func (r *router) learnHarvestLimit(h *hostQueue, asked int) (rounds int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := max(asked/2, minHarvestCap)
	if n < r.connLimitLocked(h) {
		h.connRcpt = n
	}
	if n < r.txnLimitLocked(h) {
		h.txnLimit = n
	}
	h.harvestRounds++
	return h.harvestRounds
}

// maxHarvestRounds is how many times a host may turn to refusing
// everything before its doubtful refusals are no longer asked again: each
// time costs a connection and its patience.
const maxHarvestRounds = 3

// takeWhere removes from h's queue the targets match says yes to.
func (r *router) takeWhere(h *hostQueue, match func(*target) bool) []*target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.pending.takeWhere(match)
}

// maxProxyDoubts is how many connections to a host ending before its
// banner are put down to the proxy rather than the host.
const maxProxyDoubts = 3

// proxyDoubt counts one more such connection; false once the host has had
// its share of doubt.
func (r *router) proxyDoubt(h *hostQueue) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.proxyDoubts >= maxProxyDoubts {
		return false
	}
	h.proxyDoubts++
	return true
}

// markRefusesAll records that h is asked no more: it refuses us everything
// (reason refuses_all) or its operator refused every egress (policy_block).
func (r *router) markRefusesAll(h *hostQueue, reason string, reply *probe.Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.refused == "" {
		h.refused, h.refusedReply = reason, reply
	}
}

// refusal says why h is asked no more, or "" when it still is.
func (r *router) refusal(h *hostQueue) (reason string, reply *probe.Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.refused, h.refusedReply
}

// hasPending reports whether h has waiting addresses.
func (r *router) hasPending(h *hostQueue) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.waiting() > 0
}

func (r *router) waitingForSlot(delta int) {
	r.mu.Lock()
	r.slotWaiters += delta
	r.notifyLocked()
	r.mu.Unlock()
}

func (r *router) sessionUp(h *hostQueue, delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.established += delta
	if delta > 0 {
		h.everUsed = true
	}
}

// connectFailed handles a worker that could not open a session to h. While
// another worker holds a session the host is fine and only this worker
// leaves; otherwise the host is down for the rest of the run and its queue
// moves to each address's next MX host.
func (r *router) connectFailed(h *hostQueue, f *hostFailure) {
	f.host = h.name
	var failed []failedTarget
	r.mu.Lock()
	now := r.cfg.Clock.Now()
	if h.workers > 1 || h.established > 0 {
		// Others are connecting or connected: this failure may be the
		// server's own cap on connections from us ("421 too many
		// connections"). Keep to what it allows from now on.
		if f.reply != nil && h.established > 0 && (h.connCap == 0 || h.established < h.connCap) {
			h.connCap = h.established
		}
	} else if !h.isDown(now) {
		h.down = f
		// Skipped until the first delayed retry is due, so that retries
		// find it again; for the whole run when there are no retries.
		h.downUntil = now.Add(24 * 365 * time.Hour)
		if r.cfg.RetryDelay > 0 {
			h.downUntil = now.Add(r.cfg.RetryDelay)
		}
		moved := h.pending.takeAll()
		failed = r.failoverLocked(moved, f, failed)
		r.notifyLocked()
		r.mu.Unlock()
		r.reportFailed(failed)
		// What waits on disk moves too, a chunk at a time: reading it all
		// under the lock would stop every other host meanwhile.
		for {
			moved, ok := r.drainOne(h)
			if !ok {
				return
			}
			r.mu.Lock()
			failed = r.failoverLocked(moved, f, nil)
			r.notifyLocked()
			r.mu.Unlock()
			r.reportFailed(failed)
		}
	}
	r.mu.Unlock()
	r.reportFailed(failed)
}

// failoverLocked moves targets of a host that is down to each one's next
// MX host.
func (r *router) failoverLocked(moved []*target, f *hostFailure, failed []failedTarget) []failedTarget {
	now := r.cfg.Clock.Now()
	for _, t := range moved {
		t.failed = preferFailure(t.failed, f)
		if int(t.mxIdx)+1 >= len(t.dom.mail.Hosts) {
			failed = append(failed, failedTarget{t: t, f: t.failed})
			continue
		}
		t.mxIdx++
		failed = r.routeLocked(t, now, failed)
	}
	return failed
}

// workerDone keeps the invariant: if h still has work and this was its last
// worker, start another (unless the host is down or ctx is over).
func (r *router) workerDone(ctx context.Context, h *hostQueue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.workers--
	if h.workers == 0 && h.waiting() > 0 && !h.isDown(r.cfg.Clock.Now()) && !r.stopped && ctx.Err() == nil {
		h.workers++
		r.spawn(h)
	}
}

// host returns the queue of the MX host name, nil if it has none.
func (r *router) host(name string) *hostQueue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[name]
}

// countVerdict counts a final verdict given at h.
func (h *hostQueue) countVerdict(status string) {
	switch status {
	case output.StatusUndeliverable:
		h.stats.undeliverable.Add(1)
	case output.StatusUnknown:
		h.stats.unknown.Add(1)
	}
}

// summaries reports what happened at every host.
func (r *router) summaries() []HostSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]HostSummary, 0, len(r.hosts))
	for _, h := range r.hosts {
		out = append(out, h.summary())
	}
	return out
}

// hostsUsed names the hosts that had at least one session.
func (r *router) hostsUsed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for name, h := range r.hosts {
		if h.everUsed {
			names = append(names, name)
		}
	}
	return names
}

// targetQueue is a host's in-memory queue: first in, first out, and cheap
// to put a few back at the front (a worker hands back what a transaction
// had no room for, every transaction).
type targetQueue struct {
	buf  []*target
	head int // buf[head:] are queued; buf[:head] is free room at the front
}

func (q *targetQueue) len() int { return len(q.buf) - q.head }

// items are the queued targets, in order; valid until the queue changes.
func (q *targetQueue) items() []*target { return q.buf[q.head:] }

func (q *targetQueue) push(ts ...*target) {
	if len(q.buf)+len(ts) > cap(q.buf) && q.head > 0 && q.head >= q.len() {
		// Reuse the room freed at the front rather than grow.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, ts...)
}

func (q *targetQueue) pushFront(ts []*target) {
	if len(ts) <= q.head {
		q.head -= len(ts)
		copy(q.buf[q.head:], ts)
		return
	}
	nb := make([]*target, 0, len(ts)+q.len()+max(16, q.len()/4))
	nb = append(append(nb, ts...), q.items()...)
	q.buf, q.head = nb, 0
}

// popFront removes up to n targets from the front.
func (q *targetQueue) popFront(n int) []*target {
	n = min(n, q.len())
	out := make([]*target, n)
	copy(out, q.buf[q.head:q.head+n])
	clear(q.buf[q.head : q.head+n]) // taken targets must not be kept alive by the queue
	q.head += n
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
		if cap(q.buf) > 4096 {
			q.buf = nil // let a big backing array go
		}
	}
	return out
}

// takeAll empties the queue.
func (q *targetQueue) takeAll() []*target {
	out := q.items()
	q.buf, q.head = nil, 0
	return out
}

// takeWhere removes and returns the targets match says yes to.
func (q *targetQueue) takeWhere(match func(*target) bool) []*target {
	var taken []*target
	live := q.items()
	kept := live[:0]
	for _, t := range live {
		if match(t) {
			taken = append(taken, t)
		} else {
			kept = append(kept, t)
		}
	}
	clear(live[len(kept):])
	q.buf = q.buf[:q.head+len(kept)]
	return taken
}

// cutTail removes and returns the targets from index from (of items) on.
func (q *targetQueue) cutTail(from int) []*target {
	live := q.items()
	out := append([]*target(nil), live[from:]...)
	clear(live[from:])
	q.buf = q.buf[:q.head+from]
	return out
}
