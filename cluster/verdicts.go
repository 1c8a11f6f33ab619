package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Verdict is what the cluster's verdict cache keeps of one address: the
// facts of a result, and until when they may be reused.
type Verdict struct {
	Status       string    `json:"status"`
	Reason       string    `json:"reason"`
	SMTPCode     int       `json:"smtp_code,omitempty"`
	EnhancedCode string    `json:"enhanced_code,omitempty"`
	Message      string    `json:"message,omitempty"`
	MXHost       string    `json:"mx_host,omitempty"`
	CatchAll     *bool     `json:"catch_all,omitempty"`
	TLS          *bool     `json:"tls,omitempty"`
	Provider     string    `json:"provider,omitempty"`
	Egress       string    `json:"egress,omitempty"` // name of the egress that asked (never credentials)
	Attempts     int       `json:"attempts,omitempty"`
	CheckedAt    time.Time `json:"checked_at"`
	// Expires is when the verdict stops being reused: the caller's
	// retention for its class (a deliverable verdict lives longer than an
	// unknown one). The bucket drops every entry after VerdictMaxAge
	// anyway.
	Expires time.Time `json:"expires"`
}

// VerdictCache is the verdict store of a cluster: every worker and
// coordinator reads and writes the same verdicts, so a rerun anywhere
// reuses what any machine found. Keys are v.NAMESPACE.DOMAIN.HASH of
// VerdictsBucket, HASH being the first 128 bits of SHA-256 of the address:
// the address itself is never a key, and a domain's verdicts can be
// forgotten at once. Safe for concurrent use.
type VerdictCache struct {
	c  *Conn
	ns string
}

// Verdicts returns the verdict cache of a namespace (a customer, a list:
// verdicts of one namespace are not seen from another).
func (c *Conn) Verdicts(namespace string) (*VerdictCache, error) {
	if err := checkID("namespace", namespace); err != nil {
		return nil, err
	}
	return &VerdictCache{c: c, ns: namespace}, nil
}

// verdictKey returns the key of an address (local@domain, normalised by
// the caller).
func (v *VerdictCache) verdictKey(address string) (string, error) {
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 {
		return "", fmt.Errorf("%w: %q is not an address", ErrBadUnit, address)
	}
	sum := sha256.Sum256([]byte(address))
	return "v." + v.ns + "." + keyToken(address[at+1:]) + "." + hex.EncodeToString(sum[:16]), nil
}

// GetBatch returns the verdicts known and not expired of addresses, by
// address; an address without one is absent from the map.
func (v *VerdictCache) GetBatch(ctx context.Context, addresses []string) (map[string]Verdict, error) {
	return v.getBatch(ctx, addresses, v.c.cfg.Now(), false)
}

// GetBatchAsOf is GetBatch as the cache stood at a moment: verdicts checked
// after at are left out, and expiry is judged at at. A coordinator that
// starts again reads the cache as it did the first time (as of its job's
// creation), so it cuts the input into the same units, although its own
// results have been added since.
func (v *VerdictCache) GetBatchAsOf(ctx context.Context, addresses []string, at time.Time) (map[string]Verdict, error) {
	return v.getBatch(ctx, addresses, at, true)
}

func (v *VerdictCache) getBatch(ctx context.Context, addresses []string, now time.Time, asOf bool) (map[string]Verdict, error) {
	out := make(map[string]Verdict, len(addresses))
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 32) // requests in flight
	var wg sync.WaitGroup
	for _, a := range addresses {
		key, err := v.verdictKey(a)
		if err != nil {
			continue // not an address: nothing can be cached for it
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var got Verdict
			_, err := v.c.getJSON(ctx, v.c.verdicts, key, &got)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			case asOf && got.CheckedAt.After(now):
			case now.Before(got.Expires):
				out[a] = got
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// PutBatch stores verdicts by address, all published at once and waited
// for together.
func (v *VerdictCache) PutBatch(ctx context.Context, verdicts map[string]Verdict) error {
	var futures []jetstream.PubAckFuture
	for a, vd := range verdicts {
		key, err := v.verdictKey(a)
		if err != nil {
			return err
		}
		data, err := json.Marshal(vd)
		if err != nil {
			return fmt.Errorf("cluster: verdict of %s: %w", a, err)
		}
		m := nats.NewMsg("$KV." + VerdictsBucket + "." + key)
		m.Data = data
		f, err := v.c.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("%w: storing verdicts: %v", ErrUnavailable, err)
		}
		futures = append(futures, f)
	}
	// A verdict whose acknowledgement is lost is put again: harmless.
	if _, err := v.c.settle(ctx, futures); err != nil {
		return fmt.Errorf("cluster: storing verdicts: %w", err)
	}
	return nil
}

// ForgetAddress removes an address's verdict, history included.
func (v *VerdictCache) ForgetAddress(ctx context.Context, address string) error {
	key, err := v.verdictKey(address)
	if err != nil {
		return err
	}
	return v.purge(ctx, "$KV."+VerdictsBucket+"."+key)
}

// ForgetDomain removes every verdict of a domain in the namespace.
func (v *VerdictCache) ForgetDomain(ctx context.Context, domain string) error {
	return v.purge(ctx, "$KV."+VerdictsBucket+".v."+v.ns+"."+keyToken(domain)+".*")
}

func (v *VerdictCache) purge(ctx context.Context, subject string) error {
	rctx, cancel := v.c.request(ctx)
	defer cancel()
	s, err := v.c.js.Stream(rctx, "KV_"+VerdictsBucket)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := s.Purge(rctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("%w: forgetting: %v", ErrUnavailable, err)
	}
	return nil
}
