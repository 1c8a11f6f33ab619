package pipeline

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
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
	for ctx.Err() == nil {
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
		sess, err := probe.Dial(ctx, addr, pc)
		if err == nil {
			return sess, nil
		}
		last = err
		var re *probe.ReplyError
		if errors.As(err, &re) {
			break // the host itself answered; its other addresses will say the same
		}
	}
	return nil, sessionFailure(last)
}

// sessionFailure maps why a session could not be set up, or broke, to the
// verdict its addresses get when nothing else can be tried.
func sessionFailure(err error) *hostFailure {
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
		reply := re.Reply
		if reply.Transient() {
			return &hostFailure{status: output.StatusUnknown, reason: ReasonTemporary, reply: &reply}
		}
		return &hostFailure{status: output.StatusUnknown, reason: ReasonPolicyBlock, reply: &reply}
	case errors.As(err, &pe):
		return &hostFailure{status: output.StatusUnknown, reason: ReasonProtocolError}
	case isTimeout(err):
		return &hostFailure{status: output.StatusUnknown, reason: ReasonTimeout}
	default:
		return &hostFailure{status: output.StatusUnknown, reason: ReasonConnectionFailed}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// serve asks h's queued addresses over sess until the queue stays empty or
// the connection has asked its share. It reports whether the worker should
// open a new session for more work, and whether the server pushed back (421,
// a temporary refusal of MAIL), which calls for a pause first.
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
	_, onTLS := sess.TLS()
	inTxn, onConn := 0, 0
	// A finished transaction is reset only when another one follows, so the
	// last one on a connection costs no RSET round trip.
	mailOpen, needReset := false, false
	for {
		if onConn >= e.cfg.RcptPerConnection {
			return e.router.hasPending(h), false
		}
		if !e.router.waitForWork(ctx, h, e.cfg.IdleTimeout) {
			return false, false
		}
		n := min(e.router.txnLimit(h)-inTxn, e.cfg.RcptPerConnection-onConn)
		if n <= 0 {
			mailOpen, needReset, inTxn = false, true, 0
			continue
		}
		batch := e.router.take(h, n)
		batch = e.dropUnsendable(batch, h.name, smtputf8)
		if len(batch) == 0 {
			continue
		}
		if h.limiter != nil {
			if err := h.limiter.WaitN(ctx, len(batch)); err != nil {
				e.router.requeue(h, batch)
				return false, false
			}
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
			replies, err = sess.RcptBatch(ctx, addresses(batch))
		} else {
			// RSET (when a transaction came before), MAIL and the RCPTs
			// in one pipelined group: one round trip, not three.
			var tr probe.TxnReplies
			tr, err = sess.Transaction(ctx, needReset, smtputf8, addresses(batch))
			if tr.Reset != nil && !tr.Reset.Positive() {
				for _, t := range batch {
					t.tries-- // nothing was asked for them
				}
				e.router.requeue(h, batch)
				return true, false
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
				e.retryOrFailReply(h, batch, mail)
				return true, onConn == 0 // pushed back before any answer
			}
		}
		answered, restartTxn := 0, false
		for i, reply := range replies {
			t := batch[i]
			if reply.Code == 421 {
				e.retryOrFailReply(h, batch[i:], reply)
				return true, onConn+answered == 0 // pushed back before any answer
			}
			if tooManyRecipients(reply) && inTxn+i > 0 {
				// The server's own per-transaction cap: not a verdict. Ask
				// the rest again in a fresh transaction.
				for _, u := range batch[i:] {
					u.tries--
				}
				e.router.learnTxnLimit(h, inTxn+i)
				e.router.requeue(h, batch[i:])
				restartTxn = true
				break
			}
			e.concludeReply(t, reply, h.name)
			answered++
		}
		if err != nil && !restartTxn {
			e.retryOrFail(ctx, h, batch[len(replies):], err)
			return true, false
		}
		inTxn += answered
		onConn += answered
		if restartTxn || inTxn >= e.router.txnLimit(h) {
			mailOpen, needReset, inTxn = false, true, 0
		}
	}
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
	} else if f := sessionFailure(err); f.reason == ReasonProtocolError {
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

// retryOrFailReply is retryOrFail for a temporary refusal (4xx on MAIL, 421).
func (e *engine) retryOrFailReply(h *hostQueue, batch []*target, reply probe.Reply) {
	var again []*target
	for _, t := range batch {
		if t.tries >= e.cfg.MaxAttempts {
			status, reason := Classify(reply)
			e.conclude(t, status, reason, &reply, h.name)
			continue
		}
		again = append(again, t)
	}
	e.router.requeue(h, again)
}

func (e *engine) concludeReply(t *target, reply probe.Reply, host string) {
	status, reason := Classify(reply)
	e.conclude(t, status, reason, &reply, host)
}

// pause waits CommandPause before a command; false when ctx ended.
func (e *engine) pause(ctx context.Context) bool {
	return e.cfg.CommandPause <= 0 || sleepReal(ctx, e.cfg.CommandPause)
}

func tooManyRecipients(r probe.Reply) bool {
	if r.Code != 452 && r.Code != 451 {
		return false
	}
	return r.Enhanced == "4.5.3" || strings.Contains(strings.ToLower(r.Text()), "too many recipients")
}

func addresses(batch []*target) []string {
	out := make([]string, len(batch))
	for i, t := range batch {
		out[i] = t.addr.String()
	}
	return out
}
