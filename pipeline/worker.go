package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/verdict"
)

// quitTimeout bounds the polite QUIT at the end of a session, which must not
// hold up a cancelled run.
const quitTimeout = 5 * time.Second

// startWorker runs one connection worker for h. The router calls it with its
// lock held, so it only starts a goroutine.
func (e *engine) startWorker(h *hostQueue) {
	e.workers.Add(1)
	go func() {
		defer e.workers.Done()
		defer e.router.workerDone(e.workCtx, h)
		e.work(e.workCtx, h)
	}()
}

// work serves h's queue over as many consecutive sessions as it takes. Each
// session first gets one of its operator's sessions from the Budget, then a
// connection slot of this run: waiting for the operator holds no slot that
// another operator's host could use.
//
// A session that ends with h's addresses still waiting and nothing wrong
// (the server's RCPT per connection reached) is followed at once by the
// next, on the same operator's session and slot, unless another worker
// waits for a session of h's operator or a pause began: h's connections go
// on back to back. Giving both back and asking again put each reconnection
// of the run's busiest host behind every host waiting for a slot (and, in
// a cluster, cost round trips to the shared budget); the operator's limit
// holds either way, as at most one connection is open per session held.
func (e *engine) work(ctx context.Context, h *hostQueue) {
	pushedBack := 0
	var release func() // the operator's session and a slot, held between two sessions
	giveBack := func() {
		if release != nil {
			<-e.slots
			release()
			release = nil
		}
	}
	defer giveBack()
	// The queue may have emptied while this worker waited for its operator,
	// a slot or its back-off: connecting then would open a session that
	// asks nothing.
	for ctx.Err() == nil && e.router.hasPending(h) {
		if reason, reply := e.router.refusal(h); reason != "" {
			e.giveUpHost(h, reason, reply) // addresses that came later (retries, failover)
			return
		}
		if release == nil {
			r, err := e.cfg.Budget.Session(ctx, h.operator, h.limits)
			if err != nil {
				return
			}
			if !e.acquireSlot(ctx) {
				r()
				return
			}
			release = r
			if !e.router.hasPending(h) {
				return
			}
		}
		again, troubled, stop := e.session(ctx, h)
		if !stop {
			// Told before the session is given back, so that a pause the
			// outcome starts holds the waiter the session goes to.
			e.cfg.Budget.Outcome(h.operator, h.limits, troubled)
		}
		if stop || !again {
			return
		}
		if !troubled {
			pushedBack = 0
			if e.cfg.Budget.Contended(h.operator) || !e.cfg.Budget.PausedUntil(h.operator).IsZero() {
				giveBack()
			}
			continue
		}
		giveBack()
		// Back off before knocking again: 1 s, 2 s, 4 s … at most 30 s;
		// not when the last address is decided meanwhile: the run would
		// wait for the pause to end.
		pushedBack++
		if !e.router.hasPending(h) || !e.sleep(ctx, min(time.Second<<(pushedBack-1), 30*time.Second)) {
			return
		}
	}
}

// session connects to h and serves its queue over one session. stop says
// the worker is done with h: the session could not be had.
func (e *engine) session(ctx context.Context, h *hostQueue) (again, troubled, stop bool) {
	sess, eg, fail := e.connect(ctx, h)
	if fail != nil {
		if fail.pushback {
			e.cfg.Budget.Outcome(h.operator, h.limits, true)
		}
		if ctx.Err() != nil {
			return false, false, true
		}
		switch {
		case fail.refusedUs:
			// Every egress has been refused by h's operator: its addresses
			// are not asked from anywhere else.
			e.giveUpHost(h, fail.reason, fail.reply)
		case fail.egressOnly:
			// The failure was this egress's (refused at the greeting, or a
			// proxy that went away): nothing was asked, and the next
			// session goes out another way, or learns that none is left.
			return true, false, false
		default:
			e.router.connectFailed(h, fail)
		}
		return false, false, true
	}
	e.connections.Add(1)
	h.stats.connections.Add(1)
	e.router.sessionUp(h, 1)
	again, troubled = e.serve(ctx, h, sess, eg)
	e.router.sessionUp(h, -1)
	return again, troubled, false
}

// sleep waits d on the run's clock; false when ctx ended first, or every
// address of the run was decided.
func (e *engine) sleep(ctx context.Context, d time.Duration) bool {
	t := e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		return false
	case <-e.router.allDone:
		return false
	}
}

// sleepReal waits d of real time, for pacing on the wire that a test clock
// must not stretch; false when ctx ended first.
func sleepReal(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *engine) acquireSlot(ctx context.Context) bool {
	select {
	case e.slots <- struct{}{}:
		return true
	default:
	}
	// Idle connections of other hosts give their slot up when they see this.
	e.router.waitingForSlot(1)
	defer e.router.waitingForSlot(-1)
	select {
	case e.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// connect opens a probing session to one of h's addresses, through the
// egress the pool picks for h's operator (or directly, without a pool).
func (e *engine) connect(ctx context.Context, h *hostQueue) (*probe.Session, *egress.Egress, *hostFailure) {
	addrs, err := e.res.LookupHost(ctx, h.name)
	if err != nil {
		e.note("address lookup for %s: %v", h.name, err)
		if errors.Is(err, resolve.ErrNoAddress) || errors.Is(err, resolve.ErrNXDomain) {
			// The MX points at a name that does not exist: mail to it bounces.
			return nil, nil, &hostFailure{status: output.StatusUndeliverable, reason: ReasonMXUnresolvable}
		}
		return nil, nil, &hostFailure{status: output.StatusUnknown, reason: ReasonDNSError}
	}
	pc := e.cfg.Probe
	pc.TLSServerName = h.name
	var eg *egress.Egress
	if pool := e.cfg.Egress; pool != nil {
		eg, err = pool.Pick(h.operator)
		var refused *egress.RefusedError
		switch {
		case errors.As(err, &refused):
			e.note("%s: %v", h.name, err)
			return nil, nil, &hostFailure{status: output.StatusUnknown, reason: ReasonPolicyBlock, refusedUs: true}
		case err != nil:
			e.note("%s: %v", h.name, err)
			return nil, nil, &hostFailure{status: output.StatusUnknown, reason: verdict.ReasonProxyFailed}
		}
		pc.Dial = eg.DialContext
	}
	var last error
	for _, ip := range addrs {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(e.cfg.SMTPPort))
		if eg != nil {
			e.note("connecting to %s [%s] from %s", h.name, addr, eg.Name())
		} else {
			e.note("connecting to %s [%s]", h.name, addr)
		}
		sess, err := probe.Dial(ctx, addr, pc)
		if err == nil {
			e.recordHost(h, true)
			return sess, eg, nil
		}
		e.note("%s: %v", h.name, err)
		last = err
		var re *probe.ReplyError
		if errors.As(err, &re) {
			e.recordHost(h, true) // it answered SMTP: port 25 is open
			break                 // the host itself answered; its other addresses will say the same
		}
	}
	f := e.sessionFailure(last, h)
	var pe *egress.ProxyError
	var be *egress.BindError
	switch {
	case errors.As(last, &pe), errors.As(last, &be):
		// The egress failed, not the host: the pool counts it against the
		// egress; the addresses wait for the delayed retry.
		f = &hostFailure{status: output.StatusUnknown, reason: verdict.ReasonProxyFailed}
	case f.reply != nil:
		f.pushback = f.reply.Transient()
		if eg != nil && f.decision.Reason == verdict.ReasonPolicyBlock && f.reply.Permanent() {
			// A server that refuses the session itself refuses us: this
			// egress asks its operator no more; another may.
			e.refuseEgress(eg, h, f.decision)
			f.egressOnly = true
		}
	case eg != nil && eg.Kind() == egress.SOCKS5 && e.router.proxyDoubt(h):
		// Through a proxy, a connection that ends before the banner may be
		// the proxy going away after its CONNECT reply: no reason yet to
		// call the host down, or to count it towards the port-25 breaker.
		// The next dial tells (a dead proxy fails as a ProxyError); only
		// so often per host, so that a host that really closes on us is
		// still found out.
		f.egressOnly = true
	case ctx.Err() == nil && (f.reason == ReasonConnectionFailed || f.reason == ReasonTimeout):
		e.recordHost(h, false)
	}
	return nil, eg, f
}

// refusesEgress reports whether a reply to MAIL or RCPT says our address is
// refused: a permanent policy refusal that names a blocklist or reputation
// service (the table's Detail; the rule for an unnamed blocklist says
// "blocklist"). Other policy refusals at that stage may be about the
// recipient or the message, and stop nothing. (A permanent policy refusal
// of the session itself, at the banner or EHLO, always refuses the egress:
// see connect.)
func refusesEgress(d verdict.Decision, r probe.Reply) bool {
	return d.Reason == verdict.ReasonPolicyBlock && r.Permanent() && d.Detail != ""
}

// refuseEgress records that h's operator refused eg: no session to it goes
// out through eg again in this run, and the refusal is reported once.
func (e *engine) refuseEgress(eg *egress.Egress, h *hostQueue, d verdict.Decision) {
	reason := d.Detail
	if reason == "" {
		reason = d.Reason
	}
	if !e.cfg.Egress.Refused(eg, h.operator, reason) {
		return
	}
	if e.know != nil {
		e.know.refused(h.name, eg.Name(), h.operator, reason)
	}
	if e.cfg.OnRefused != nil {
		e.cfg.OnRefused(eg.Name(), h.operator, reason)
	}
}

// recordHost feeds the TCP breaker; when it trips, the run stops.
func (e *engine) recordHost(h *hostQueue, reached bool) {
	if b := e.cfg.HostBreaker; b != nil && b.Record(h.name, reached) {
		st := b.State()
		e.fatal(&TrippedError{What: "hosts", Failed: st.Failed, Seen: st.Keys})
	}
}

// sessionFailure maps why a session could not be set up, or broke, to the
// verdict its addresses get when nothing else can be tried. A refused
// banner, greeting or STARTTLS is read by the reply table at its stage.
func (e *engine) sessionFailure(err error, h *hostQueue) *hostFailure {
	var re *probe.ReplyError
	var pe *probe.ProtocolError
	var te *probe.TLSError
	switch {
	case err == nil:
		return &hostFailure{status: output.StatusUnknown, reason: ReasonConnectionFailed}
	case errors.As(err, &te):
		// Checked before ReplyError: a refused STARTTLS is both.
		return &hostFailure{status: output.StatusUnknown, reason: ReasonTLSUnavailable}
	case errors.As(err, &re):
		stage, _ := verdict.StageOfCommand(re.Command)
		d := e.classify(re.Reply, stage, h)
		// Whatever the words, a session that never got to RCPT says
		// nothing about a mailbox.
		return &hostFailure{status: output.StatusUnknown, reason: d.Reason, reply: boundReply(&re.Reply), decision: d}
	case errors.As(err, &pe):
		return &hostFailure{status: output.StatusUnknown, reason: ReasonProtocolError}
	case isTimeout(err):
		return &hostFailure{status: output.StatusUnknown, reason: ReasonTimeout}
	default:
		return &hostFailure{status: output.StatusUnknown, reason: ReasonConnectionFailed}
	}
}

// note writes a line about what the engine does to the transcript, if any,
// next to the sessions' own lines.
func (e *engine) note(format string, args ...any) {
	if w := e.cfg.Probe.Transcript; w != nil {
		fmt.Fprintf(w, "* "+format+"\n", args...)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// serve asks h's queued addresses over sess until the queue stays empty or
// the connection has asked its share. It reports whether the worker should
// open a new session for more work, and whether the server pushed back (421,
// a temporary refusal of MAIL, refusing everything), which calls for a
// pause first.
func (e *engine) serve(ctx context.Context, h *hostQueue, sess *probe.Session, eg *egress.Egress) (again, troubled bool) {
	defer func() {
		if sess.Closed() {
			sess.Close()
			return
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
		defer cancel()
		sess.Quit(qctx)
	}()
	smtputf8 := sess.Supports("SMTPUTF8")
	pipelined := sess.Supports("PIPELINING")
	_, onTLS := sess.TLS()
	if e.know != nil {
		e.know.sawTLS(h.name, onTLS || sess.Supports("STARTTLS"))
	}
	egressName := ""
	if eg != nil {
		egressName = eg.Name()
	}
	// inTxn and onConn count the RCPT commands the server answered in the
	// open transaction and on this connection, controls included: that is
	// what its limits count.
	inTxn, onConn := 0, 0
	// A finished transaction is reset only when another one follows, so the
	// last one on a connection costs no RSET round trip.
	mailOpen, needReset := false, false
	// txnCapSeen is where a "too many recipients" cut the last transaction
	// short. It is the server's cap per transaction if the next one gets
	// past its first RCPT, and its cap per connection if not; until then
	// the transactions of this connection keep to it, and nothing is learnt.
	txnCapSeen := 0
	var memo replyMemo // the last RCPT reply read on this connection
	for {
		connLimit := e.router.connLimit(h)
		if onConn >= connLimit {
			return e.router.hasPending(h), false
		}
		if !e.router.waitForWork(ctx, h, e.cfg.IdleTimeout) {
			return false, false
		}
		if !e.cfg.Budget.PausedUntil(h.operator).IsZero() {
			// The operator pushed back too often: every session to it
			// waits out the pause (in Budget.Session) before going on.
			return true, false
		}
		room := min(e.router.txnLimit(h)-inTxn, connLimit-onConn)
		if txnCapSeen > 0 {
			room = min(room, txnCapSeen-inTxn)
		}
		if room <= 0 {
			mailOpen, needReset, inTxn = false, true, 0
			continue
		}
		batch := e.router.take(h, room)
		batch = e.dropUnsendable(batch, h.name, smtputf8)
		batch = e.dropRefusedAll(h, batch)
		if len(batch) == 0 {
			continue
		}
		asked := batch
		control := e.controlFor(batch)
		if control != nil && len(batch) == room {
			// Make room for the control: the last address waits for the
			// next transaction (one of a single address goes without).
			if len(batch) > 1 {
				e.router.requeue(h, batch[len(batch)-1:])
				batch = batch[:len(batch)-1]
			} else {
				control = nil
			}
		}
		if control != nil {
			asked = append(batch[:len(batch):len(batch)], control)
		}
		if e.cfg.Budget.Rcpt(ctx, h.operator, h.limits, len(asked)) != nil || !e.pause(ctx) {
			e.router.requeue(h, batch)
			return false, false
		}
		for _, t := range batch {
			t.tries++
			t.lastTLS = &onTLS
			t.lastEgress = egressName
		}
		h.stats.rcpt.Add(int64(len(asked)))
		sent := time.Now()
		var replies []probe.Reply
		var err error
		rcpts := addresses(asked)
		if mailOpen {
			replies, err = sess.RcptBatch(ctx, rcpts)
			h.stats.roundTrip(time.Since(sent))
		} else {
			// RSET (when a transaction came before), MAIL and the RCPTs
			// in one pipelined group: one round trip, not three.
			var tr probe.TxnReplies
			tr, err = sess.Transaction(ctx, needReset, smtputf8, rcpts)
			if tr.Reset != nil && !tr.Reset.Positive() {
				if !pipelined {
					// Lock-step stops at the refused RSET: nothing was asked.
					untry(batch)
					e.router.requeue(h, batch)
					return true, false
				}
				if !tr.Mail.Positive() || err != nil {
					// Pipelined, the RCPTs went out, but in no transaction
					// we can trust: they count as asked.
					e.retryOrFailReply(h, batch, *tr.Reset, verdict.StageMail)
					return true, false
				}
				// RSET was refused but the MAIL after it was taken: a new
				// transaction is open and its RCPT answers stand.
			}
			needReset = false
			h.stats.roundTrip(time.Since(sent))
			switch mail := tr.Mail; {
			case mail.Code == 0: // no answer to MAIL
				e.retryOrFail(ctx, h, batch, err)
				return true, false
			case mail.Positive():
				mailOpen = true
				replies = tr.Rcpts
			case mail.Permanent() && mail.Code != 421:
				// The sender, or we, are refused: nothing can be learnt
				// about these recipients here.
				d := e.classify(mail, verdict.StageMail, h)
				h.stats.reply(mail, d)
				reason := d.Reason
				if reason != verdict.ReasonPolicyBlock {
					reason = ReasonSenderRejected
				}
				for _, t := range batch {
					e.conclude(t, output.StatusUnknown, reason, &mail, h.name)
				}
				if eg != nil && refusesEgress(d, mail) {
					e.refuseEgress(eg, h, d)
					return true, false // the next session goes out another way, if any is left
				}
				continue
			default:
				h.stats.reply(mail, e.classify(mail, verdict.StageMail, h))
				e.retryOrFailReply(h, batch, mail, verdict.StageMail)
				return true, onConn == 0 // pushed back before any answer
			}
		}
		controlRefused := control != nil && len(replies) == len(asked) && replies[len(asked)-1].Permanent()
		var suspects []*target
		var refusedBy *verdict.Decision
		answered, restartTxn, endSession, slowDown := 0, false, false, false
		for i, reply := range replies {
			t := asked[i]
			if reply.Code == 421 {
				h.stats.reply(reply, e.classify(reply, verdict.StageRcpt, h))
				e.retryOrFailReply(h, unanswered(batch, i), reply, verdict.StageRcpt)
				return true, onConn+answered == 0 // pushed back before any answer
			}
			d := e.classifyRcpt(&memo, reply, h, rcpts[i])
			h.stats.reply(reply, d)
			if d.Reason == verdict.ReasonGreylisted && e.know != nil {
				e.know.sawGreylisting(h.name)
			}
			switch {
			case refusesEgress(d, reply):
				refused := d // a copy: taking d's own address would allocate it for every reply
				refusedBy = &refused
			case d.Reason == verdict.ReasonRateLimited:
				slowDown = true
			}
			if d.Reason == verdict.ReasonTooManyRecipients {
				rest := unanswered(batch, i)
				switch {
				case inTxn+i > 0:
					// The server's own cap: not a verdict. Ask the rest
					// again in a fresh transaction.
					txnCapSeen = inTxn + i
					restartTxn = true
				case onConn+answered > 0:
					// Refused at the first RCPT of a new transaction: the cap
					// is per connection, and the cut that came before it was
					// this one too. Go on over a new connection.
					e.router.learnConnLimit(h, onConn+answered)
					e.noteLimits(h)
					txnCapSeen = 0
					endSession = true
				}
				if restartTxn || endSession {
					untry(rest)
					e.router.requeue(h, rest)
					break
				}
				// Refused at the very first RCPT of a connection: no limit
				// to learn, so it stands as the temporary answer it is.
			} else if i == 0 && inTxn == 0 && txnCapSeen > 0 {
				// A transaction got past its first RCPT after a cut: the
				// cut was the server's cap per transaction.
				e.router.learnTxnLimit(h, txnCapSeen)
				e.noteLimits(h)
				txnCapSeen = 0
			}
			answered++
			if t == control {
				continue
			}
			if controlRefused && reply.Permanent() {
				suspects = append(suspects, t)
				continue
			}
			// &replies[i], not &reply: a loop variable whose address is
			// taken is allocated for every reply.
			e.conclude(t, d.Status, d.Reason, &replies[i], h.name)
		}
		if refusedBy != nil && eg != nil {
			// Our address is refused: this egress asks the operator no
			// more, and the addresses refused stay policy_block (they are
			// not asked again from elsewhere: that would be evading the
			// block). Unanswered ones go on over another egress, if any.
			e.refuseEgress(eg, h, *refusedBy)
			if err == nil && !restartTxn && !endSession {
				return true, false
			}
		}
		if controlRefused {
			// The server refused postmaster too: it is refusing everything
			// (an anti-harvest defence, an error limit), so its refusals
			// here say nothing about the mailboxes. Ask them again after a
			// pause, over new connections asking fewer than it took before
			// it turned; a server that refuses the re-asking from its first
			// RCPT, or keeps turning, refuses us altogether, and its
			// doubtful refusals are asked no more.
			turn := onConn + firstLike(replies, replies[len(asked)-1])
			rounds := e.router.learnHarvestLimit(h, turn)
			e.noteLimits(h)
			e.reaskSuspects(h, suspects, replies, asked)
			switch {
			case rounds > maxHarvestRounds:
				e.giveUpHost(h, ReasonRefusesAll, nil)
			case turn == 0 && allSuspect(batch):
				e.giveUpDomain(h, control.dom)
			}
			return true, true
		}
		if endSession {
			return true, false
		}
		if err != nil {
			if !restartTxn {
				e.retryOrFail(ctx, h, unanswered(batch, len(replies)), err)
			}
			return true, false
		}
		if slowDown {
			// "Slow down": the session ends and the worker backs off; the
			// operator's budget counts it as pushback.
			return true, true
		}
		if restartTxn && sess.Closed() {
			return true, false
		}
		inTxn += answered
		onConn += answered
		if restartTxn || inTxn >= e.router.txnLimit(h) {
			mailOpen, needReset, inTxn = false, true, 0
		}
	}
}

// noteLimits writes to the store the recipient limits learnt about h.
func (e *engine) noteLimits(h *hostQueue) {
	if e.know == nil {
		return
	}
	e.router.mu.Lock()
	txn, conn := h.txnLimit, h.connRcpt
	e.router.mu.Unlock()
	e.know.learntLimits(h.name, txn, conn)
}

// unanswered is the part of batch from index i of the RCPTs sent on: the
// positive control, sent after the batch, is not in it.
func unanswered(batch []*target, i int) []*target {
	if i >= len(batch) {
		return nil
	}
	return batch[i:]
}

// untry takes back the try counted for targets whose RCPT the server did
// not really answer.
func untry(targets []*target) {
	for _, t := range targets {
		t.tries--
	}
}

// controlFor returns the positive control a batch needs, or nil: RCPT
// postmaster@ a domain (which RFC 5321 §4.5.1 requires to exist), asked
// after the batch whenever it holds many addresses of that domain or
// addresses whose refusal is in doubt. If the server refuses the control,
// its refusals in that transaction say nothing about the mailboxes.
func (e *engine) controlFor(batch []*target) *target {
	if e.cfg.NoPositiveControl {
		return nil
	}
	var best *domainState
	counts := map[*domainState]int{}
	for _, t := range batch {
		if strings.EqualFold(t.text[:t.localLen], "postmaster") {
			counts[t.dom] = -len(batch) // asked anyway: no control needed
		}
		counts[t.dom]++
		if t.suspect > 0 {
			counts[t.dom] += e.cfg.ControlThreshold
		}
		if best == nil || counts[t.dom] > counts[best] {
			best = t.dom
		}
	}
	if best == nil || counts[best] < e.cfg.ControlThreshold {
		return nil
	}
	pm := &target{}
	newTarget(pm, input.Address{Local: "postmaster", Domain: best.name}, "", best)
	return pm
}

// reaskSuspects handles the refusals of a transaction whose positive
// control was refused: each is asked once more; refused again the same
// way, it is unknown, for the server refuses everything.
func (e *engine) reaskSuspects(h *hostQueue, suspects []*target, replies []probe.Reply, asked []*target) {
	var again []*target
	for _, t := range suspects {
		t.suspect++
		t.suspectReply = boundReply(&replies[indexOf(asked, t)])
		if t.suspect < 2 {
			again = append(again, t)
			continue
		}
		e.conclude(t, output.StatusUnknown, ReasonRefusesAll, t.suspectReply, h.name)
	}
	e.router.requeue(h, again)
}

// A server that refuses a domain's doubtful addresses again from the first
// RCPT of a connection, postmaster included, has made its answer about
// them plain; one that keeps turning to refusing everything has made it
// about us. Asking more would only open more connections to it.

// giveUpDomain concludes the doubtful addresses of dom at h, waiting or
// yet to come, without asking them again.
func (e *engine) giveUpDomain(h *hostQueue, dom *domainState) {
	e.mu.Lock()
	dom.refusesAll = true
	e.mu.Unlock()
	e.concludeRefused(h, e.router.takeWhere(h, func(t *target) bool { return t.dom == dom && t.suspect > 0 }), ReasonRefusesAll, nil)
}

// giveUpHost concludes every address at h, waiting or yet to come, without
// asking: h refuses us everything (reason refuses_all), or every egress has
// been refused by h's operator (policy_block, with the refusal's reply when
// there is one).
func (e *engine) giveUpHost(h *hostQueue, reason string, reply *probe.Reply) {
	e.router.markRefusesAll(h, reason, reply)
	reason, reply = e.router.refusal(h) // the first reason given stands
	e.concludeRefused(h, e.router.takeWhere(h, func(*target) bool { return true }), reason, reply)
	for {
		ts, ok := e.router.drainOne(h)
		if !ok {
			return
		}
		e.concludeRefused(h, ts, reason, reply)
	}
}

func (e *engine) concludeRefused(h *hostQueue, targets []*target, reason string, reply *probe.Reply) {
	for _, t := range targets {
		r := reply
		if reason == ReasonRefusesAll && t.suspect > 0 {
			r = t.suspectReply
		}
		e.conclude(t, output.StatusUnknown, reason, r, h.name)
	}
}

// dropRefusedAll concludes, as giveUpDomain and giveUpHost would, the
// addresses of batch that arrived after them.
func (e *engine) dropRefusedAll(h *hostQueue, batch []*target) []*target {
	hostWide, reply := e.router.refusal(h)
	kept := batch[:0]
	for _, t := range batch {
		e.mu.Lock()
		domain := t.dom.refusesAll
		e.mu.Unlock()
		switch {
		case hostWide != "":
			e.concludeRefused(h, []*target{t}, hostWide, reply)
		case domain && t.suspect > 0:
			e.conclude(t, output.StatusUnknown, ReasonRefusesAll, t.suspectReply, h.name)
		default:
			kept = append(kept, t)
		}
	}
	return kept
}

// firstLike is the index of the first reply equal to r: where a server
// that answers everything the same way began doing so.
func firstLike(replies []probe.Reply, r probe.Reply) int {
	for i, x := range replies {
		if x.Code == r.Code && x.Enhanced == r.Enhanced && x.Text() == r.Text() {
			return i
		}
	}
	return len(replies)
}

func allSuspect(batch []*target) bool {
	for _, t := range batch {
		if t.suspect == 0 {
			return false
		}
	}
	return true
}

func indexOf(targets []*target, t *target) int {
	for i, u := range targets {
		if u == t {
			return i
		}
	}
	return -1
}

// dropUnsendable finishes addresses the server cannot be asked about (UTF-8
// local parts without SMTPUTF8, anything the client refuses to put in a
// command) and returns the rest, so that one of them cannot sink a batch.
func (e *engine) dropUnsendable(batch []*target, host string, smtputf8 bool) []*target {
	kept := batch[:0]
	for _, t := range batch {
		switch {
		case t.utf8 && !smtputf8:
			e.conclude(t, output.StatusUnknown, ReasonSMTPUTF8, nil, host)
		case probe.CheckAddress(t.text) != nil:
			e.conclude(t, output.StatusInvalid, input.ReasonSyntax, nil, host)
		default:
			kept = append(kept, t)
		}
	}
	return kept
}

// retryOrFail handles addresses whose question got no answer because the
// session broke: each goes back in the queue until it has used its tries.
func (e *engine) retryOrFail(ctx context.Context, h *hostQueue, batch []*target, err error) {
	if ctx.Err() != nil {
		return // cancelled: undecided, not failed
	}
	reason := ReasonConnectionLost
	if isTimeout(err) {
		reason = ReasonTimeout
	} else if f := e.sessionFailure(err, h); f.reason == ReasonProtocolError {
		reason = ReasonProtocolError
	}
	var again []*target
	for _, t := range batch {
		if int(t.tries) >= e.cfg.MaxAttempts {
			e.conclude(t, output.StatusUnknown, reason, nil, h.name)
			continue
		}
		again = append(again, t)
	}
	e.router.requeue(h, again)
}

// retryOrFailReply is retryOrFail for a refusal that ends the attempt (a
// 4xx to MAIL, a 421, a refused RSET), read at its stage.
func (e *engine) retryOrFailReply(h *hostQueue, batch []*target, reply probe.Reply, stage verdict.Stage) {
	var again []*target
	for _, t := range batch {
		if int(t.tries) >= e.cfg.MaxAttempts {
			d := e.classify(reply, stage, h)
			e.conclude(t, d.Status, d.Reason, &reply, h.name)
			continue
		}
		again = append(again, t)
	}
	e.router.requeue(h, again)
}

// classify reads a reply of h by the run's reply table.
func (e *engine) classify(r probe.Reply, stage verdict.Stage, h *hostQueue) verdict.Decision {
	return e.replies.classify(e.cfg.Replies, verdict.Input{Reply: r, Stage: stage, Operator: h.operator}, "")
}

// classifyRcpt reads h's reply to RCPT TO:<rcpt>. memo holds the session's
// last readings: a server answers most recipients with a few replies, and
// one that reads like a recent one, the recipient taken out, needs neither
// the cache's lock nor its hashing.
func (e *engine) classifyRcpt(memo *replyMemo, r probe.Reply, h *hostQueue, rcpt string) verdict.Decision {
	in := verdict.Input{Reply: r, Stage: verdict.StageRcpt, Operator: h.operator}
	k, ok := replyKeyOf(in, rcpt)
	if !ok {
		return e.cfg.Replies.Classify(withoutRecipient(in, rcpt)) // not worth a key of that size
	}
	for i := range memo.n {
		if memo.keys[i] == k {
			return memo.ds[i]
		}
	}
	d := e.replies.classifyKey(e.cfg.Replies, in, k)
	// The key's texts are parts of a reply line, a string of its own
	// (probe's): keeping them keeps nothing more.
	i := memo.next % len(memo.keys)
	memo.keys[i], memo.ds[i] = k, d
	memo.next++
	memo.n = min(memo.n+1, len(memo.keys))
	return d
}

// replyMemo is a session's last readings of replies, by their keys.
type replyMemo struct {
	keys    [4]replyKey
	ds      [4]verdict.Decision
	n, next int
}

// replyCache remembers how replies were read. A server answers most
// recipients with the same few replies, and reading one by the table's rules
// (regular expressions among them) costs microseconds: on a run of a million
// addresses that was a fifth of all CPU time. A reply's reading depends only
// on its code, enhanced code, text, stage and operator, all in the key.
//
// Many servers repeat the recipient in their answer ("<ann@example.com>:
// Recipient address rejected: User unknown"). The address is taken out of
// the text before it is read, and out of the key: the reading of a reply
// does not depend on whose address it names (an address such as
// sorbs@example.com must not read as a blocklist's refusal), and replies
// that differ only by it share one entry.
type replyCache struct {
	mu sync.Mutex
	m  map[replyKey]verdict.Decision
}

type replyKey struct {
	stage                 verdict.Stage
	operator              string
	code                  int
	enhanced, text, after string // text before the recipient, and after it
}

// maxCachedReplies bounds the cache: servers that put a queue id or a time
// in their text never repeat a reply, and fill it with nothing worth
// keeping, so it starts afresh when full.
const maxCachedReplies = 4096

func (c *replyCache) classify(table *verdict.Table, in verdict.Input, rcpt string) verdict.Decision {
	k, ok := replyKeyOf(in, rcpt)
	if !ok {
		return table.Classify(withoutRecipient(in, rcpt)) // not worth a key of that size
	}
	return c.classifyKey(table, in, k)
}

// withoutRecipient is in with rcpt taken out of its reply's text, as the
// reply table reads it however long the reply: a recipient such as
// spamhaus@example.com must not read as a blocklist naming us.
func withoutRecipient(in verdict.Input, rcpt string) verdict.Input {
	if rcpt == "" {
		return in
	}
	text := replyText(in.Reply)
	if i := strings.Index(text, rcpt); i >= 0 {
		in.Reply = probe.Reply{Code: in.Reply.Code, Enhanced: in.Reply.Enhanced, Lines: []string{text[:i] + text[i+len(rcpt):]}}
	}
	return in
}

// replyKeyOf is the key of reading in, with rcpt taken out of its text;
// false for a text too long to be worth a key.
func replyKeyOf(in verdict.Input, rcpt string) (replyKey, bool) {
	text := replyText(in.Reply)
	if len(text) > maxKeptReplyText {
		return replyKey{}, false
	}
	k := replyKey{stage: in.Stage, operator: in.Operator, code: in.Reply.Code, enhanced: in.Reply.Enhanced, text: text}
	if rcpt != "" {
		if i := strings.Index(text, rcpt); i >= 0 {
			k.text, k.after = text[:i], text[i+len(rcpt):]
		}
	}
	return k, true
}

// replyText is the text of r on one line (no copy for one line).
func replyText(r probe.Reply) string {
	if len(r.Lines) == 1 {
		return r.Lines[0]
	}
	return r.Text()
}

// classifyKey is classify of in, whose key is k.
func (c *replyCache) classifyKey(table *verdict.Table, in verdict.Input, k replyKey) verdict.Decision {
	c.mu.Lock()
	d, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return d
	}
	if k.text != replyText(in.Reply) { // the recipient was taken out
		in.Reply = probe.Reply{Code: in.Reply.Code, Enhanced: in.Reply.Enhanced, Lines: []string{k.text + k.after}}
	}
	d = table.Classify(in)
	// The key must not keep the reply's buffer alive: copy its texts.
	k.text, k.after, k.enhanced = strings.Clone(k.text), strings.Clone(k.after), strings.Clone(k.enhanced)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedReplies {
		c.m = make(map[replyKey]verdict.Decision, 64)
	}
	c.m[k] = d
	c.mu.Unlock()
	return d
}

// pause waits CommandPause before a command; false when ctx ended.
func (e *engine) pause(ctx context.Context) bool {
	return e.cfg.CommandPause <= 0 || sleepReal(ctx, e.cfg.CommandPause)
}

func addresses(batch []*target) []string {
	out := make([]string, len(batch))
	for i, t := range batch {
		out[i] = t.text
	}
	return out
}
