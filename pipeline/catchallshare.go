package pipeline

import (
	"context"
	"time"
)

// CatchAllShare lets the engines of several processes (a cluster's workers)
// ask each domain's accept-all question once between them.
// *cluster.CatchAll implements it; this package does not import the
// cluster package.
//
// A domain is unknown (the first Claim takes it: the caller must find the
// answer and Put it, or Abandon the claim), claimed by another (its
// answer is waited for), or answered.
type CatchAllShare interface {
	// Claim returns the domain's answer when it is known (answer != nil);
	// otherwise mine tells whether the caller now holds the claim.
	Claim(ctx context.Context, domain string) (answer *bool, mine bool, err error)
	// Put records the claimant's answer and ends its claim.
	Put(ctx context.Context, domain string, acceptsAll bool) error
	// Abandon ends the caller's claim without an answer.
	Abandon(ctx context.Context, domain string) error
	// Wait returns the domain's answer once it is known, or nil when the
	// claim ended without one (the caller may Claim again).
	Wait(ctx context.Context, domain string) (answer *bool, err error)
}

// shareTimeout bounds one Put or Abandon: an answer that cannot be shared
// soon is not worth holding the engine's end for.
const shareTimeout = 10 * time.Second

// claimCatchAll asks Config.CatchAllShare about dom, whose acceptances are
// held (dom.probePending) meanwhile. It reports whether this engine must
// ask the check itself: it holds the claim, or the share failed. A known
// answer settles the domain at once; another's claim is waited for in the
// background, with one count of the router held so that the run does not
// end while acceptances wait for it.
func (e *engine) claimCatchAll(ctx context.Context, dom *domainState) (ask bool) {
	answer, mine, err := e.cfg.CatchAllShare.Claim(ctx, dom.name)
	switch {
	case err != nil:
		// The share cannot be reached: the check is asked here, as
		// without a share, and its answer kept to this engine.
		return ctx.Err() == nil
	case answer != nil:
		e.settleShared(dom, answer)
		return false
	case mine:
		e.mu.Lock()
		dom.claimed = true
		e.mu.Unlock()
		return true
	}
	e.router.expect(1)
	e.sharing.Add(1)
	go e.waitShared(dom)
	return false
}

// waitShared waits for another process's answer about dom, then releases
// the acceptances held for it. A claim that ends without an answer (given
// up, or gone stale: its worker died) is claimed again: if it is then this
// engine's, the check is asked here; if yet another holds it now, that one
// is waited for, a few times at most; then the acceptances go out with
// catch_all unknown. A share that cannot be reached meanwhile (its server
// restarting) is left, as claimCatchAll leaves it: the check is asked here
// and its answer kept to this engine.
func (e *engine) waitShared(dom *domainState) {
	defer e.sharing.Done()
	defer e.router.done()
	ctx := e.workCtx
	share := e.cfg.CatchAllShare
	var answer *bool
	var err error
	for range maxShareWaits {
		answer, err = share.Wait(ctx, dom.name)
		if err != nil || answer != nil || ctx.Err() != nil {
			break
		}
		var mine bool
		answer, mine, err = share.Claim(ctx, dom.name)
		if err != nil || answer != nil {
			break
		}
		if mine {
			e.mu.Lock()
			dom.claimed = true
			e.mu.Unlock()
			// The check now holds the run open; its verdict settles the
			// domain (emit). A run already stopped drops it: the held
			// acceptances go out at its end.
			e.router.add([]*target{e.catchAllTarget(dom)})
			return
		}
	}
	if err != nil && answer == nil && ctx.Err() == nil {
		e.router.add([]*target{e.catchAllTarget(dom)})
		return
	}
	e.settleShared(dom, answer)
}

// maxShareWaits bounds how many claims of others one domain's acceptances
// wait for in turn.
const maxShareWaits = 3

// settleShared settles dom with an answer found elsewhere (nil: none) and
// releases the acceptances that waited for it.
func (e *engine) settleShared(dom *domainState, answer *bool) {
	e.mu.Lock()
	dom.probePending = false
	if answer != nil {
		dom.catchAll = answer
	}
	release := dom.held
	dom.held = nil
	delete(e.heldBy, dom)
	catchAll, checkHost := dom.catchAll, dom.checkHost
	e.mu.Unlock()
	e.release(release, catchAll, checkHost)
}

// shareAnswer ends this engine's claim on domain: the answer its check
// found, when it found one (settled), or an abandoned claim, so that the
// next asker tries itself. It does not hold up the worker that reports it.
func (e *engine) shareAnswer(domain string, catchAll *bool, settled bool) {
	share := e.cfg.CatchAllShare
	e.sharing.Add(1)
	go func() {
		defer e.sharing.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.workCtx), shareTimeout)
		defer cancel()
		if settled && catchAll != nil {
			_ = share.Put(ctx, domain, *catchAll)
			return
		}
		_ = share.Abandon(ctx, domain)
	}()
}
