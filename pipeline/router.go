package pipeline

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bulkverify/bulkverify/probe"
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
	fail  func(t *target, f *hostFailure, host string)

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
	name        string
	pending     []*target
	workers     int // live workers, including those still waiting for a slot or connecting
	established int // workers holding an open session
	everUsed    bool
	limiter     *rate.Limiter // RCPT per second, nil = unlimited
	txnLimit    int           // recipients per transaction the server accepts, learnt from 452 4.5.3; 0 = not known
	connCap     int           // connections the server allows us, learnt from refusals while others were open; 0 = not known
	down        *hostFailure  // why the host could not be used ...
	downUntil   time.Time     // ... and until when it is skipped
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
}

func newRouter(cfg *Config, spawn func(*hostQueue), fail func(*target, *hostFailure, string)) *router {
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
	for _, t := range targets {
		failed = r.routeLocked(t, failed)
	}
	r.notifyLocked()
	r.mu.Unlock()
	r.reportFailed(failed)
}

type failedTarget struct {
	t    *target
	f    *hostFailure
	host string
}

// routeLocked queues t at its current MX host, skipping hosts already known
// to be down. Targets with no usable host left are returned in failed, to be
// finished outside the lock.
func (r *router) routeLocked(t *target, failed []failedTarget) []failedTarget {
	now := r.cfg.Clock.Now()
	for {
		hosts := t.dom.mail.Hosts
		name := hosts[t.mxIdx].Host
		h := r.hosts[name]
		if h == nil {
			h = &hostQueue{name: name}
			if r.cfg.RcptRate > 0 {
				h.limiter = rate.NewLimiter(rate.Limit(r.cfg.RcptRate), r.cfg.RcptPerTransaction)
			}
			r.hosts[name] = h
		}
		if !h.isDown(now) {
			h.pending = append(h.pending, t)
			if !r.stopped && (h.workers == 0 || (h.workers < h.maxConns(r.cfg.MaxConnectionsPerHost) &&
				len(h.pending) > h.workers*r.cfg.NewConnectionBacklog)) {
				h.workers++
				r.spawn(h)
			}
			return failed
		}
		if t.mxIdx+1 >= len(hosts) {
			return append(failed, failedTarget{t: t, f: h.down, host: name})
		}
		t.mxIdx++
	}
}

func (r *router) reportFailed(failed []failedTarget) {
	for _, ft := range failed {
		r.fail(ft.t, ft.f, ft.host)
	}
}

// take removes up to n addresses from h's queue.
func (r *router) take(h *hostQueue, n int) []*target {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > len(h.pending) {
		n = len(h.pending)
	}
	out := make([]*target, n)
	copy(out, h.pending[:n])
	h.pending = h.pending[n:]
	if len(h.pending) == 0 {
		h.pending = nil // let the backing array go
	}
	return out
}

// requeue puts targets whose question was not answered back in h's queue.
func (r *router) requeue(h *hostQueue, targets []*target) {
	if len(targets) == 0 {
		return
	}
	r.mu.Lock()
	h.pending = append(targets, h.pending...)
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
		if len(h.pending) > 0 {
			r.mu.Unlock()
			return true
		}
		if !r.producing || r.stopped || idle <= 0 {
			r.mu.Unlock()
			return false
		}
		if r.slotWaiters > 0 {
			// Another host waits for a slot: give this one up soon, but
			// not at once, for answers arriving in a burst (domains of
			// this host still being resolved) would open it again.
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
	if h.txnLimit > 0 && h.txnLimit < r.cfg.RcptPerTransaction {
		return h.txnLimit
	}
	return r.cfg.RcptPerTransaction
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

// hasPending reports whether h has waiting addresses.
func (r *router) hasPending(h *hostQueue) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(h.pending) > 0
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
		moved := h.pending
		h.pending = nil
		for _, t := range moved {
			if t.mxIdx+1 >= len(t.dom.mail.Hosts) {
				failed = append(failed, failedTarget{t: t, f: f, host: h.name})
				continue
			}
			t.mxIdx++
			failed = r.routeLocked(t, failed)
		}
		r.notifyLocked()
	}
	r.mu.Unlock()
	r.reportFailed(failed)
}

// workerDone keeps the invariant: if h still has work and this was its last
// worker, start another (unless the host is down or ctx is over).
func (r *router) workerDone(ctx context.Context, h *hostQueue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.workers--
	if h.workers == 0 && len(h.pending) > 0 && !h.isDown(r.cfg.Clock.Now()) && !r.stopped && ctx.Err() == nil {
		h.workers++
		r.spawn(h)
	}
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
