package pipeline

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// quitTimeout bounds the polite QUIT at the end of a session, which must not
// hold up a cancelled run.
const quitTimeout = 5 * time.Second

// startWorker runs one connection worker for h. The router calls it with its
// lock held, so it only starts a goroutine.
func (r *run) startWorker(h *hostQueue) {
	r.workers.Add(1)
	go func() {
		defer r.workers.Done()
		defer r.router.workerDone(r.workCtx, h)
		r.work(r.workCtx, h)
	}()
}

// work holds one global connection slot and serves h's queue over as many
// consecutive sessions as the per-connection RCPT cap requires.
func (r *run) work(ctx context.Context, h *hostQueue) {
	if !r.acquireSlot(ctx) {
		return
	}
	defer func() { <-r.slots }()
	for ctx.Err() == nil {
		sess, fail := r.connect(ctx, h)
		if fail != nil {
			if ctx.Err() == nil {
				r.router.connectFailed(h, fail)
			}
			return
		}
		r.connections.Add(1)
		r.router.sessionUp(h, 1)
		again := r.serve(ctx, h, sess)
		r.router.sessionUp(h, -1)
		if !again {
			return
		}
	}
}

func (r *run) acquireSlot(ctx context.Context) bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
	}
	// Idle connections of other hosts give their slot up when they see this.
	r.router.waitingForSlot(1)
	defer r.router.waitingForSlot(-1)
	select {
	case r.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// connect opens a probing session to one of h's addresses.
func (r *run) connect(ctx context.Context, h *hostQueue) (*probe.Session, *hostFailure) {
	addrs, err := r.res.LookupHost(ctx, h.name)
	if err != nil {
		if errors.Is(err, resolve.ErrNoAddress) || errors.Is(err, resolve.ErrNXDomain) {
			// The MX points at a name that does not exist: mail to it bounces.
			return nil, &hostFailure{status: output.StatusUndeliverable, reason: ReasonMXUnresolvable}
		}
		return nil, &hostFailure{status: output.StatusUnknown, reason: ReasonDNSError}
	}
	var last error
	for _, ip := range addrs {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.cfg.SMTPPort))
		sess, err := probe.Dial(ctx, addr, r.cfg.Probe)
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
	switch {
	case err == nil:
		return &hostFailure{status: output.StatusUnknown, reason: ReasonConnectionFailed}
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
// open a new session for more work.
func (r *run) serve(ctx context.Context, h *hostQueue, sess *probe.Session) (again bool) {
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
	inTxn, onConn := 0, 0
	// A finished transaction is reset only when another one follows, so the
	// last one on a connection costs no RSET round trip.
	mailOpen, needReset := false, false
	for {
		if onConn >= r.cfg.RcptPerConnection {
			return r.router.hasPending(h)
		}
		if !r.router.waitForWork(ctx, h, r.cfg.IdleTimeout) {
			return false
		}
		n := min(r.cfg.RcptPerTransaction-inTxn, r.cfg.RcptPerConnection-onConn)
		batch := r.router.take(h, n)
		if !smtputf8 {
			batch = r.dropUnsendable(batch, h.name)
		}
		if len(batch) == 0 {
			continue
		}
		if needReset {
			reply, err := sess.Reset(ctx)
			if err != nil || !reply.Positive() {
				r.router.requeue(h, batch) // nothing was asked for them
				return true
			}
			needReset = false
		}
		for _, t := range batch {
			t.tries++
		}
		if !mailOpen {
			reply, err := sess.Mail(ctx, smtputf8)
			if err != nil {
				r.retryOrFail(ctx, h, batch, err)
				return true
			}
			switch {
			case reply.Positive():
				mailOpen = true
			case reply.Permanent() && reply.Code != 421:
				// The sender is refused: nothing can be learnt about these recipients here.
				for _, t := range batch {
					r.finish(t, output.StatusUnknown, ReasonSenderRejected, &reply, h.name)
				}
				continue
			default:
				r.retryOrFailReply(h, batch, reply)
				return !sess.Closed()
			}
		}
		replies, err := sess.RcptBatch(ctx, addresses(batch))
		answered, restartTxn := 0, false
		for i, reply := range replies {
			t := batch[i]
			if reply.Code == 421 {
				r.retryOrFailReply(h, batch[i:], reply)
				return true
			}
			if tooManyRecipients(reply) && inTxn+i > 0 {
				// The server's own per-transaction cap: not a verdict. Ask
				// the rest again in a fresh transaction.
				for _, u := range batch[i:] {
					u.tries--
				}
				r.router.requeue(h, batch[i:])
				restartTxn = true
				break
			}
			r.finishReply(t, reply, h.name)
			answered++
		}
		if err != nil && !restartTxn {
			r.retryOrFail(ctx, h, batch[len(replies):], err)
			return true
		}
		inTxn += answered
		onConn += answered
		if restartTxn || inTxn >= r.cfg.RcptPerTransaction {
			mailOpen, needReset, inTxn = false, true, 0
		}
	}
}

// dropUnsendable finishes addresses the server cannot be asked about
// (UTF-8 local parts without SMTPUTF8) and returns the rest.
func (r *run) dropUnsendable(batch []*target, host string) []*target {
	kept := batch[:0]
	for _, t := range batch {
		if t.addr.NeedsSMTPUTF8 {
			r.finish(t, output.StatusUnknown, ReasonSMTPUTF8, nil, host)
			continue
		}
		kept = append(kept, t)
	}
	return kept
}

// retryOrFail handles addresses whose question got no answer because the
// session broke: each goes back in the queue until it has used its tries.
func (r *run) retryOrFail(ctx context.Context, h *hostQueue, batch []*target, err error) {
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
		if t.tries >= r.cfg.MaxAttempts {
			r.finish(t, output.StatusUnknown, reason, nil, h.name)
			continue
		}
		again = append(again, t)
	}
	r.router.requeue(h, again)
}

// retryOrFailReply is retryOrFail for a temporary refusal (4xx on MAIL, 421).
func (r *run) retryOrFailReply(h *hostQueue, batch []*target, reply probe.Reply) {
	var again []*target
	for _, t := range batch {
		if t.tries >= r.cfg.MaxAttempts {
			status, reason := Classify(reply)
			r.finish(t, status, reason, &reply, h.name)
			continue
		}
		again = append(again, t)
	}
	r.router.requeue(h, again)
}

func (r *run) finishReply(t *target, reply probe.Reply, host string) {
	status, reason := Classify(reply)
	r.finish(t, status, reason, &reply, host)
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
