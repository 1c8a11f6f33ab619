package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// catchAllEntry is the value of ca.DOMAIN.
type catchAllEntry struct {
	Answer  *bool     `json:"answer,omitempty"` // nil: claimed, not answered yet
	Claimer string    `json:"claimer,omitempty"`
	At      time.Time `json:"at"` // when claimed, or answered
}

// CatchAll lets the workers of a cluster ask each domain's accept-all
// question once between them (it is the engine's pipeline.CatchAllShare).
// A domain's key (ca.DOMAIN of CatchAllBucket) is in one of three states:
//
//   - absent: nobody knows or asks; the first Claim takes it and must then
//     find the answer and Put it, or Abandon the claim;
//   - claimed: a worker is asking now; others Wait for its answer. A claim
//     older than ClaimTTL (its worker died or hangs) is taken over by the
//     next Claim;
//   - answered: the answer, with when it was found; kept for CatchAllTTL,
//     then the domain is asked again.
//
// Answers that are not an answer (a temporary failure, a timeout) are not
// shared: the claimant Abandons, and the next asker tries itself.
//
// Each value has its own claimer id: use one per process. Within the process, a domain claimed and not yet
// answered or abandoned is another caller's claim for a second Claim, which
// then Waits like a caller on another machine: several units of one domain
// probed at once by one worker ask the question once, too.
//
// A claim held is renewed every ClaimTTL/3 until it is Put or Abandoned
// (for maxClaimHold at most), so that a claimant whose check waits its turn
// behind a busy host's queue is not taken for dead; a dead one stops
// renewing, and its claim goes stale ClaimTTL later. Close gives up the
// claims still held. Safe for concurrent use.
type CatchAll struct {
	c  *Conn
	id string

	mu   sync.Mutex
	held map[string]context.CancelFunc // domains claimed by this process, not yet Put or Abandoned: stop renewing
}

// maxClaimHold bounds how long a claim is renewed: a check that has not
// come back by then is taken for lost, and its domain left to the next
// asker once the claim goes stale.
const maxClaimHold = 10 * time.Minute

// CatchAll returns a CatchAll with a claimer id of its own.
func (c *Conn) CatchAll() *CatchAll {
	return &CatchAll{c: c, id: idSafe(nuid.Next()), held: map[string]context.CancelFunc{}}
}

// hold marks domain claimed by this process and starts renewing the claim;
// false if it already was.
func (s *CatchAll) hold(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[domain] != nil {
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.held[domain] = cancel
	go s.renew(ctx, domain)
	return true
}

// unhold stops renewing domain's claim.
func (s *CatchAll) unhold(domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cancel := s.held[domain]; cancel != nil {
		cancel()
		delete(s.held, domain)
	}
}

// holding reports whether this process holds domain's claim.
func (s *CatchAll) holding(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[domain] != nil
}

// renew keeps domain's claim fresh while this process holds it.
func (s *CatchAll) renew(ctx context.Context, domain string) {
	every := max(s.c.cfg.ClaimTTL/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	key := catchAllKey(domain)
	for n := time.Duration(0); n*every < maxClaimHold; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var e catchAllEntry
		rev, err := s.c.getJSON(ctx, s.c.catchAll, key, &e)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return
		case err != nil:
			continue // NATS away for a moment: the next tick tries again
		case e.Answer != nil || e.Claimer != s.id:
			return // answered, or taken over
		}
		data, _ := json.Marshal(catchAllEntry{Claimer: s.id, At: s.c.cfg.Now()})
		rctx, cancel := s.c.request(ctx)
		_, _ = s.c.catchAll.Update(rctx, key, data, rev)
		cancel()
	}
}

// Close gives up the claims this process still holds (their checks will
// not be answered here), so that the next asker need not wait for them to
// go stale.
func (s *CatchAll) Close() error {
	s.mu.Lock()
	var domains []string
	for d := range s.held {
		domains = append(domains, d)
	}
	s.mu.Unlock()
	ctx, cancel := s.c.request(context.Background())
	defer cancel()
	var errs []error
	for _, d := range domains {
		errs = append(errs, s.Abandon(ctx, d))
	}
	return errors.Join(errs...)
}

// Claim returns the domain's answer when it is known (answer != nil).
// Otherwise mine tells whether the caller now holds the claim (it must Put
// or Abandon), or another worker does (the caller may Wait).
func (s *CatchAll) Claim(ctx context.Context, domain string) (*bool, bool, error) {
	key := catchAllKey(domain)
	mine, _ := json.Marshal(catchAllEntry{Claimer: s.id, At: s.c.cfg.Now()})
	for {
		var e catchAllEntry
		rev, err := s.c.getJSON(ctx, s.c.catchAll, key, &e)
		rctx, cancel := s.c.request(ctx)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.c.catchAll.Create(rctx, key, mine)
		case err != nil:
			cancel()
			return nil, false, err
		case e.Answer != nil:
			cancel()
			return e.Answer, false, nil
		case e.Claimer == s.id && s.holding(domain):
			// Another caller of this process is asking.
			cancel()
			return nil, false, nil
		case e.Claimer == s.id:
			// A claim of ours whose Put or Abandon did not reach the
			// server: ours again.
			cancel()
			if !s.hold(domain) {
				return nil, false, nil
			}
			return nil, true, nil
		case s.c.cfg.Now().Sub(e.At) < s.c.cfg.ClaimTTL:
			cancel()
			return nil, false, nil
		default: // a stale claim: take it over
			_, err = s.c.catchAll.Update(rctx, key, mine, rev)
		}
		cancel()
		if err == nil {
			if !s.hold(domain) {
				// Claimed at the same moment by another caller of this
				// process, which won: its claim is the one in force.
				return nil, false, nil
			}
			return nil, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, false, fmt.Errorf("%w: claiming %s: %v", ErrUnavailable, domain, err)
		}
		// Someone else wrote first: read again.
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
	}
}

// Put records the claimant's answer and ends its claim. It is written whoever claims: an answer
// found is worth keeping even when the claim went stale meanwhile.
func (s *CatchAll) Put(ctx context.Context, domain string, acceptsAll bool) error {
	defer s.unhold(domain)
	return s.c.putJSON(ctx, s.c.catchAll, catchAllKey(domain), catchAllEntry{Answer: &acceptsAll, At: s.c.cfg.Now()})
}

// Abandon ends the caller's claim without an answer: the claim is deleted if it is still
// the caller's.
func (s *CatchAll) Abandon(ctx context.Context, domain string) error {
	defer s.unhold(domain)
	key := catchAllKey(domain)
	var e catchAllEntry
	rev, err := s.c.getJSON(ctx, s.c.catchAll, key, &e)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if e.Answer != nil || e.Claimer != s.id {
		return nil
	}
	rctx, cancel := s.c.request(ctx)
	defer cancel()
	if err := s.c.catchAll.Delete(rctx, key, jetstream.LastRevision(rev)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: abandoning %s: %v", ErrUnavailable, domain, err)
	}
	return nil
}

// Wait waits until the domain is answered (answer != nil), or its claim
// ends without an answer or goes stale (nil: the caller may Claim again),
// or ctx ends. It watches the domain's key.
func (s *CatchAll) Wait(ctx context.Context, domain string) (*bool, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.c.catchAll.Watch(wctx, catchAllKey(domain))
	if err != nil {
		return nil, fmt.Errorf("%w: watching %s: %v", ErrUnavailable, domain, err)
	}
	defer w.Stop()
	// A claim that goes stale changes nothing in the bucket: check its age
	// now and then.
	stale := time.NewTimer(s.c.cfg.ClaimTTL)
	defer stale.Stop()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stale.C:
			return nil, nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("%w: watching %s: closed", ErrUnavailable, domain)
			}
			if e == nil {
				if !seen {
					return nil, nil // no claim (any more): the caller may claim
				}
				continue
			}
			seen = true
			if e.Operation() != jetstream.KeyValuePut {
				return nil, nil // abandoned
			}
			var v catchAllEntry
			if json.Unmarshal(e.Value(), &v) != nil {
				return nil, nil
			}
			if v.Answer != nil {
				return v.Answer, nil
			}
			age := s.c.cfg.Now().Sub(v.At)
			if age >= s.c.cfg.ClaimTTL {
				return nil, nil
			}
			stale.Reset(s.c.cfg.ClaimTTL - age)
		}
	}
}
