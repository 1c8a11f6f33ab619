package clusterpipe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/store"
)

// Cache is the cluster's verdict cache as a pipeline.VerdictCache. It
// reads the job's namespace, then the shared ones, as the cache stood when
// the job began (AsOf: a coordinator started again cuts the same units),
// judged by the run's freshness rules (--max-age included); it writes the
// job's namespace, each verdict kept as long as its class may be reused
// (by the lifetimes alone: one run's --max-age is its own choice, not the
// next run's).
type Cache struct {
	own   *cluster.VerdictCache
	read  []*cluster.VerdictCache
	fresh store.Freshness
	// AsOf is when the job began (cluster.JobRecord.Created); set it
	// before the first Lookup.
	AsOf time.Time
}

var _ pipeline.VerdictCache = (*Cache)(nil)

// Namespace is a store namespace as a cluster namespace, which has no dots.
func Namespace(ns string) string { return strings.ReplaceAll(ns, ".", "_") }

// NewCache returns the cache of namespaces (the job's own first) on conn.
func NewCache(conn *cluster.Conn, namespaces []string, fresh store.Freshness) (*Cache, error) {
	c := &Cache{fresh: fresh}
	for i, ns := range namespaces {
		vc, err := conn.Verdicts(Namespace(ns))
		if err != nil {
			return nil, fmt.Errorf("store namespace %q in cluster mode: %w", ns, err)
		}
		if i == 0 {
			c.own = vc
		}
		c.read = append(c.read, vc)
	}
	if c.own == nil {
		return nil, fmt.Errorf("clusterpipe: a cache needs a namespace")
	}
	return c, nil
}

// Lookup implements pipeline.VerdictCache.
func (c *Cache) Lookup(ctx context.Context, addresses []string) (map[string]store.Verdict, error) {
	out := make(map[string]store.Verdict)
	left := addresses
	for _, vc := range c.read {
		if len(left) == 0 {
			break
		}
		got, err := vc.GetBatchAsOf(ctx, left, c.AsOf)
		if err != nil {
			return nil, err
		}
		var rest []string
		for _, a := range left {
			cv, ok := got[a]
			if !ok {
				rest = append(rest, a)
				continue
			}
			sv := storeVerdict(a, cv)
			if c.fresh.VerdictFresh(sv, c.AsOf) {
				out[a] = sv
			} else {
				rest = append(rest, a)
			}
		}
		left = rest
	}
	return out, nil
}

func storeVerdict(address string, v cluster.Verdict) store.Verdict {
	return store.Verdict{
		Address: address, Status: v.Status, Reason: v.Reason, SMTPCode: v.SMTPCode, EnhancedCode: v.EnhancedCode,
		Message: v.Message, MXHost: v.MXHost, CatchAll: store.TriOf(v.CatchAll), TLS: store.TriOf(v.TLS),
		Egress: v.Egress, Attempts: v.Attempts, CheckedAt: v.CheckedAt,
	}
}

// Remember implements pipeline.VerdictCache.
func (c *Cache) Remember(ctx context.Context, verdicts []store.Verdict) error {
	batch := make(map[string]cluster.Verdict, len(verdicts))
	keep := c.fresh
	keep.MaxAge, keep.Refresh = 0, false
	for _, v := range verdicts {
		life := keep.Lifetime(v.Status, v.Reason)
		if life <= 0 {
			continue
		}
		batch[v.Address] = cluster.Verdict{
			Status: v.Status, Reason: v.Reason, SMTPCode: v.SMTPCode, EnhancedCode: v.EnhancedCode, Message: v.Message,
			MXHost: v.MXHost, CatchAll: v.CatchAll.Bool(), TLS: v.TLS.Bool(), Egress: v.Egress, Attempts: v.Attempts,
			CheckedAt: v.CheckedAt, Expires: v.CheckedAt.Add(life),
		}
	}
	if len(batch) == 0 {
		return nil
	}
	return c.own.PutBatch(ctx, batch)
}
