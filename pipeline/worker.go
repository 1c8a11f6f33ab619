package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

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

// work holds one global connection slot and serves h's queue over as many
// consecutive sessions as the per-connection RCPT cap requires.
func (e *engine) work(ctx context.Context, h *hostQueue) {
	if !e.acquireSlot(ctx) {
		return
	}
	defer func() { <-e.slots }()
	pushedBack := 0
	// The queue may have emptied while this worker waited for its slot or
	// its back-off: connecting then would open a session that asks nothing.
	for ctx.Err() == nil && e.router.hasPending(h) {
		if e.router.refusesAll(h) {
			e.giveUpHost(h) // addresses that came later (retries, failover)
			return
		}
		sess, fail := e.connect(ctx, h)
		if fail != nil {
			if ctx.Err() == nil {
				e.router.connectFailed(h, fail)
			}
			return
		}
		e.connections.Add(1)
		e.router.sessionUp(h, 1)
		again, troubled := e.serve(ctx, h, sess)
		e.router.sessionUp(h, -1)
		if !again {
			return
		}
		if !troubled {
			pushedBack = 0
			continue
		}
		// Back off before knocking again: 1 s, 2 s, 4 s … at most 30 s.
		pushedBack++
		if !e.sleep(ctx, min(time.Second<<(pushedBack-1), 30*time.Second)) {
			return
		}
	}
}

// sleep waits d on the run's clock; false when ctx ended first.
func (e *engine) sleep(ctx context.Context, d time.Duration) bool {
	t := e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
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

// connect opens a probing session to one of h's addresses.
func (e *engine) connect(ctx context.Context, h *hostQueue) (*probe.Session, *hostFailure) {
	addrs, err := e.res.LookupHost(ctx, h.name)
	if err != nil {
		e.note("address lookup for %s: %v", h.name, err)
		if errors.Is(err, resolve.ErrNoAddress) || errors.Is(err, resolve.ErrNXDomain) {
			// The MX points at a name that does not exist: mail to it bounces.
			return nil, &hostFailure{status: output.StatusUndeliverable, reason: ReasonMXUnresolvable}
		}
		return nil, &hostFailure{status: output.StatusUnknown, reason: ReasonDNSError}
	}
	pc := e.cfg.Probe
	pc.TLSServerName = h.name
	var last error
	for _, ip := range addrs {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(e.cfg.SMTPPort))
		e.note("connecting to %s [%s]", h.name, addr)
		sess, err := probe.Dial(ctx, addr, pc)
		if err == nil {
			return sess, nil
		}
		e.note("%s: %v", h.name, err)
		last = err
		var re *probe.ReplyError
		if errors.As(err, &re) {
			break // the host itself answered; its other addresses will say the same
		}
	}
	return nil, e.sessionFailure(last, h)
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
		status := d.Status
		if status != output.StatusUnknown {
			// Whatever the words, a session that never got to RCPT says
			// nothing about a mailbox.
			status = output.StatusUnknown
		}
		return &hostFailure{status: status, reason: d.Reason, reply: boundReply(&re.Reply)}
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
func (e *engine) serve(ctx context.Context, h *hostQueue, sess *probe.Session) (again, troubled bool) {
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
	for {
		connLimit := e.router.connLimit(h)
		if onConn >= connLimit {
			return e.router.hasPending(h), false
		}
		if !e.router.waitForWork(ctx, h, e.cfg.IdleTimeout) {
			return false, false
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
		if h.limiter != nil && !waitRate(ctx, h.limiter, len(asked)) {
			e.router.requeue(h, batch)
			return false, false
		}
		if !e.pause(ctx) {
			e.router.requeue(h, batch)
			return false, false
		}
		for _, t := range batch {
			t.tries++
			t.lastTLS = &onTLS
		}
		var replies []probe.Reply
		var err error
		if mailOpen {
			replies, err = sess.RcptBatch(ctx, addresses(asked))
		} else {
			// RSET (when a transaction came before), MAIL and the RCPTs
			// in one pipelined group: one round trip, not three.
			var tr probe.TxnReplies
			tr, err = sess.Transaction(ctx, needReset, smtputf8, addresses(asked))
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
			switch mail := tr.Mail; {
			case mail.Code == 0: // no answer to MAIL
				e.retryOrFail(ctx, h, batch, err)
				return true, false
			case mail.Positive():
				mailOpen = true
				replies = tr.Rcpts
			case mail.Permanent() && mail.Code != 421:
				// The sender is refused: nothing can be learnt about these recipients here.
				for _, t := range batch {
					e.conclude(t, output.StatusUnknown, ReasonSenderRejected, &mail, h.name)
				}
				continue
			default:
				e.retryOrFailReply(h, batch, mail, verdict.StageMail)
				return true, onConn == 0 // pushed back before any answer
			}
		}
		controlRefused := control != nil && len(replies) == len(asked) && replies[len(asked)-1].Permanent()
		var suspects []*target
		answered, restartTxn, endSession := 0, false, false
		for i, reply := range replies {
			t := asked[i]
			if reply.Code == 421 {
				e.retryOrFailReply(h, unanswered(batch, i), reply, verdict.StageRcpt)
				return true, onConn+answered == 0 // pushed back before any answer
			}
			d := e.classify(reply, verdict.StageRcpt, h)
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
			e.conclude(t, d.Status, d.Reason, &reply, h.name)
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
			e.reaskSuspects(h, suspects, replies, asked)
			switch {
			case rounds > maxHarvestRounds:
				e.giveUpHost(h)
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

// waitRate waits for n RCPT tokens of lim. A reservation that would end
// after ctx's deadline is still waited for (until ctx ends): failing at
// once instead, as rate.Limiter.WaitN does, would let the worker give its
// connection up and a new one reconnect at once, in a loop.
func waitRate(ctx context.Context, lim *rate.Limiter, n int) bool {
	r := lim.ReserveN(time.Now(), min(n, lim.Burst()))
	if !r.OK() {
		return true
	}
	if d := r.Delay(); d > 0 && !sleepReal(ctx, d) {
		r.Cancel()
		return false
	}
	return true
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
		if strings.EqualFold(t.addr.Local, "postmaster") {
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
	return &target{addr: input.Address{Local: "postmaster", Domain: best.name}, dom: best}
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
	e.concludeRefused(h, e.router.takeWhere(h, func(t *target) bool { return t.dom == dom && t.suspect > 0 }))
}

// giveUpHost concludes every address at h, waiting or yet to come, without
// asking: h refuses us.
func (e *engine) giveUpHost(h *hostQueue) {
	e.router.markRefusesAll(h)
	e.concludeRefused(h, e.router.takeWhere(h, func(*target) bool { return true }))
}

func (e *engine) concludeRefused(h *hostQueue, targets []*target) {
	for _, t := range targets {
		e.conclude(t, output.StatusUnknown, ReasonRefusesAll, t.suspectReply, h.name)
	}
}

// dropRefusedAll concludes, as giveUpDomain and giveUpHost would, the
// addresses of batch that arrived after them.
func (e *engine) dropRefusedAll(h *hostQueue, batch []*target) []*target {
	hostWide := e.router.refusesAll(h)
	kept := batch[:0]
	for _, t := range batch {
		e.mu.Lock()
		domain := t.dom.refusesAll
		e.mu.Unlock()
		if hostWide || (domain && t.suspect > 0) {
			e.conclude(t, output.StatusUnknown, ReasonRefusesAll, t.suspectReply, h.name)
			continue
		}
		kept = append(kept, t)
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
		case t.addr.NeedsSMTPUTF8 && !smtputf8:
			e.conclude(t, output.StatusUnknown, ReasonSMTPUTF8, nil, host)
		case probe.CheckAddress(t.addr.String()) != nil:
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
		if t.tries >= e.cfg.MaxAttempts {
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
		if t.tries >= e.cfg.MaxAttempts {
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
	return e.cfg.Replies.Classify(verdict.Input{Reply: r, Stage: stage, Operator: h.operator})
}

// pause waits CommandPause before a command; false when ctx ended.
func (e *engine) pause(ctx context.Context) bool {
	return e.cfg.CommandPause <= 0 || sleepReal(ctx, e.cfg.CommandPause)
}

func addresses(batch []*target) []string {
	out := make([]string, len(batch))
	for i, t := range batch {
		out[i] = t.addr.String()
	}
	return out
}
