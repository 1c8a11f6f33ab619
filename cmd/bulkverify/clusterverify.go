package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/store"
)

// connectWait bounds how long the coordinator waits for its NATS server: a
// job whose server is not there says so, rather than hanging (a worker
// waits for its server as long as it takes).
const connectWait = time.Minute

// clusterVerifyJob is verify --nats: this process is the coordinator of a
// cluster job. It reads the input as verify does, decides here what needs
// no mail server, hands the rest to the workers through JetStream in units
// (pipeline.Distribute), and writes their verdicts as they come: the same
// columns, one row per input row, --resume and --keep-order as verify.
//
// The job is named by the input's content and the options that shape its
// units (jobID): the same command run again with --resume continues the
// job JetStream holds; without --resume, a job left over from an earlier
// start is removed and begun again. When the output is complete, the job's
// data is removed from JetStream.
func clusterVerifyJob(cfg configs.Config, rf *runFlags, natsURL string, stderr io.Writer) job {
	content := sha256.New()
	useCache := cfg.Store.Enabled
	j := job{input: input.Options{Column: cfg.Input.Column}, command: "verify"}
	if rf.shared.sandbox {
		j.err = usageError{errors.New("--sandbox is for one process: a cluster job's workers probe the real world")}
		return j
	}
	j.wrapInput = func(r io.Reader) io.Reader { return io.TeeReader(r, content) }
	j.prepare = func(ctx context.Context, cfg *configs.Config, res *resolve.Resolver, stderr io.Writer) error {
		// This process asks DNS but no mail server: of the preflights, only
		// the DNS one is its to run; the workers run theirs.
		if cfg.Egress.Preflight {
			canaries, err := egress.CheckDNS(ctx, res, cfg.Egress.DNSCanaryDomains)
			if err != nil {
				return fmt.Errorf("preflight: %w", err)
			}
			for _, c := range canaries {
				if c.Err != nil {
					fmt.Fprintf(stderr, "preflight: warning: MX of %s: %v\n", c.Domain, c.Err)
				}
			}
			cfg.Egress.Preflight = false
		}
		// The verdicts of a cluster job are the cluster's (its verdict
		// cache in JetStream), not this machine's store.
		cfg.Store.Enabled = false
		return nil
	}
	j.run = func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, stdout io.Writer, tick func(report.Row)) (sum pipeline.Summary, err error) {
		ccfg, err := clusterConfig(cfg, natsURL)
		if err != nil {
			return sum, err
		}
		out, err := openSink[output.Result](rf, src.Header(), stdout, pcfg.TempDir, csvOptions(cfg))
		if err != nil {
			return sum, err
		}
		closed := false
		defer func() {
			if !closed {
				if cerr := out.close(); cerr != nil && err == nil {
					err = fmt.Errorf("writing %s: %w", rf.output, cerr)
				}
			}
		}()
		pcfg.Skip = out.done.Has
		pcfg.Checkpoint = out.sync
		pcfg.OnResult = func(r output.Result) { tick(reportRow(r)) }

		cctx, cancel := context.WithTimeout(ctx, connectWait)
		conn, err := cluster.Connect(cctx, ccfg)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				return sum, fmt.Errorf("%w (is nats-server -js running there?)", err)
			}
			return sum, err
		}
		defer conn.Close()
		co := conn.Coordinator()
		remote := &clusterRemote{co: co, flush: pcfg.FlushInterval, unitSize: cfg.Cluster.UnitSize, opened: map[int]bool{}}
		d := pipeline.Distribution{Remote: remote, UnitSize: cfg.Cluster.UnitSize}
		var cache *clusterCache
		if useCache && !cfg.Store.Refresh {
			if cache, err = newClusterCache(conn, cfg.Store); err != nil {
				return sum, err
			}
			d.Cache = cache
			pcfg.OnStoreError = func(err error) {
				fmt.Fprintf(stderr, "bulkverify: warning: the cluster's verdict cache failed: %v; this job goes on without it\n", err)
			}
		}
		d.Begin = func(ctx context.Context) (bool, error) {
			remote.job = jobID(content, cfg)
			rec, existed, err := remote.begin(ctx, rf.resume)
			if err != nil {
				return false, err
			}
			if cache != nil {
				cache.asOf = rec.Created
			}
			state := "new"
			if existed {
				state = "resumed: units and results JetStream holds are used"
			}
			fmt.Fprintf(stderr, "cluster job %s (%s); follow it with: bulkverify cluster status --nats %s\n", remote.job, state, natsURL)
			return existed, nil
		}
		sum, err = pipeline.Distribute(ctx, pcfg, d, res, src, out.sink)
		closed = true
		if cerr := out.close(); cerr != nil && err == nil {
			err = fmt.Errorf("writing %s: %w", rf.output, cerr)
		}
		if err != nil {
			return sum, err
		}
		// The output is complete and durable: what JetStream holds of the
		// job is no longer needed.
		if remote.job == "" {
			remote.job = jobID(content, cfg) // every row was written before: nothing was begun
		}
		if cerr := remote.cleanup(ctx); cerr != nil {
			fmt.Fprintf(stderr, "bulkverify: warning: removing job %s from JetStream: %v (the output is complete)\n", remote.job, cerr)
		}
		return sum, nil
	}
	return j
}

// jobID names a job by the input's content and the settings that decide
// how it is cut into units and keys: the same command on the same file
// names the same job.
func jobID(content hash.Hash, cfg configs.Config) string {
	h := sha256.New()
	h.Write(content.Sum(nil))
	fmt.Fprintf(h, "|v%d|column=%q|unit_size=%d|memory_rows=%d|store=%v|namespace=%q|shared=%q|refresh=%v",
		cluster.WireVersion, cfg.Input.Column, cfg.Cluster.UnitSize, cfg.Limits.MemoryRows,
		cfg.Store.Enabled, cfg.Store.Namespace, cfg.Store.SharedNamespaces, cfg.Store.Refresh)
	return "j" + hex.EncodeToString(h.Sum(nil)[:12])
}

// maxRounds is how many repair rounds a job may need (pipeline.Distribute).
const maxRounds = 3

// clusterRemote is the cluster's Coordinator as pipeline.Distributor: round
// 0 is the job, round n its repair job JOB-rN.
type clusterRemote struct {
	co       *cluster.Coordinator
	job      string
	flush    time.Duration
	unitSize int

	mu     sync.Mutex
	opened map[int]bool
}

func (r *clusterRemote) jobOf(round int) string {
	if round == 0 {
		return r.job
	}
	return fmt.Sprintf("%s-r%d", r.job, round)
}

// begin opens the job; without resume, what an earlier start left of it is
// removed first, and the job begins anew.
func (r *clusterRemote) begin(ctx context.Context, resume bool) (cluster.JobRecord, bool, error) {
	rec, existed, err := r.co.Open(ctx, r.job)
	if err != nil || !existed || resume {
		r.markOpened(0)
		return rec, existed, err
	}
	if err := r.cleanupAll(ctx); err != nil {
		return rec, false, err
	}
	rec, existed, err = r.co.Open(ctx, r.job)
	r.markOpened(0)
	return rec, existed, err
}

func (r *clusterRemote) markOpened(round int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened[round] = true
}

// open makes sure the round's job exists before its units or results are
// asked for.
func (r *clusterRemote) open(ctx context.Context, round int) (string, error) {
	job := r.jobOf(round)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.opened[round] {
		if _, _, err := r.co.Open(ctx, job); err != nil {
			return job, err
		}
		r.opened[round] = true
	}
	return job, nil
}

// Submit implements pipeline.Distributor.
func (r *clusterRemote) Submit(ctx context.Context, round int, units iter.Seq[pipeline.WorkUnit]) error {
	job, err := r.open(ctx, round)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cutErr error
	seq := func(yield func(cluster.Unit) bool) {
		for wu := range units {
			parts, err := cluster.SplitUnit(clusterUnit(wu), max(r.unitSize, len(wu.Addresses)))
			if err != nil {
				// Submit must not take the units so far for the whole job.
				cutErr = err
				cancel()
				return
			}
			for _, p := range parts {
				if !yield(p) {
					return
				}
			}
		}
	}
	_, err = r.co.Submit(sctx, job, seq)
	if cutErr != nil {
		return cutErr
	}
	return err
}

// clusterUnit is a unit on the wire.
func clusterUnit(wu pipeline.WorkUnit) cluster.Unit {
	u := cluster.Unit{ID: wu.ID, Operator: wu.Operator, MXHosts: []string{wu.Host}}
	hosts := map[string]bool{wu.Host: true}
	for _, m := range wu.Domains {
		d := cluster.Domain{Name: m.Domain, Implicit: m.Implicit}
		for _, mx := range m.Hosts {
			d.MX = append(d.MX, cluster.MX{Host: mx.Host, Preference: mx.Preference})
			if !hosts[mx.Host] {
				hosts[mx.Host] = true
				u.MXHosts = append(u.MXHosts, mx.Host)
			}
		}
		u.Domains = append(u.Domains, d)
	}
	u.Addresses = make([]cluster.Address, len(wu.Addresses))
	for i, a := range wu.Addresses {
		u.Addresses[i] = cluster.Address{Key: a.Key, Local: a.Addr.Local, Domain: a.Addr.Domain}
	}
	return u
}

// Collect implements pipeline.Distributor.
func (r *clusterRemote) Collect(ctx context.Context, round int, checkpoint func() error, fn func(uint64, pipeline.Verdict) error) error {
	job, err := r.open(ctx, round)
	if err != nil {
		return err
	}
	return r.co.Collect(ctx, job, cluster.CollectOptions{Checkpoint: checkpoint, FlushInterval: r.flush}, func(res cluster.Result) error {
		return fn(res.Key, verdictOf(res))
	})
}

// verdictOf is a result as the pipeline's verdict.
func verdictOf(r cluster.Result) pipeline.Verdict {
	v := pipeline.Verdict{
		Status: r.Status, Reason: r.Reason, MXHost: r.MXHost, Provider: r.Provider, Egress: r.Egress,
		CatchAll: r.CatchAll, TLS: r.TLS, Attempts: r.Attempts, At: r.CheckedAt,
	}
	if r.SMTPCode != 0 {
		v.Reply = &probe.Reply{Code: r.SMTPCode, Enhanced: r.EnhancedCode, Lines: []string{r.Message}}
	}
	return v
}

// cleanup removes the job and the repair jobs it opened.
func (r *clusterRemote) cleanup(ctx context.Context) error {
	r.mu.Lock()
	rounds := make([]int, 0, len(r.opened))
	for round := range r.opened {
		rounds = append(rounds, round)
	}
	r.mu.Unlock()
	if len(rounds) == 0 {
		rounds = []int{0}
	}
	var errs []error
	for _, round := range rounds {
		errs = append(errs, r.co.Cleanup(ctx, r.jobOf(round)))
	}
	return errors.Join(errs...)
}

// cleanupAll removes the job and every repair job it may have had.
func (r *clusterRemote) cleanupAll(ctx context.Context) error {
	for round := 0; round <= maxRounds; round++ {
		if err := r.co.Cleanup(ctx, r.jobOf(round)); err != nil {
			return err
		}
	}
	return nil
}

// clusterCache is the cluster's verdict cache as pipeline.VerdictCache: it
// reads the job's namespace, then the shared ones, as the cache stood when
// the job began (asOf: so that a coordinator started again cuts the same
// units), judged by the config's freshness; it writes the job's namespace.
type clusterCache struct {
	own   *cluster.VerdictCache
	read  []*cluster.VerdictCache
	fresh store.Freshness
	asOf  time.Time
}

// clusterNamespace is a store namespace as a cluster namespace, which has
// no dots.
func clusterNamespace(ns string) string { return strings.ReplaceAll(ns, ".", "_") }

func newClusterCache(conn *cluster.Conn, st configs.Store) (*clusterCache, error) {
	c := &clusterCache{fresh: st.Options().Freshness}
	for i, ns := range runNamespaces(st) {
		vc, err := conn.Verdicts(clusterNamespace(ns))
		if err != nil {
			return nil, usageError{fmt.Errorf("store namespace %q in cluster mode: %w", ns, err)}
		}
		if i == 0 {
			c.own = vc
		}
		c.read = append(c.read, vc)
	}
	return c, nil
}

// Lookup implements pipeline.VerdictCache.
func (c *clusterCache) Lookup(ctx context.Context, addresses []string) (map[string]store.Verdict, error) {
	out := make(map[string]store.Verdict)
	left := addresses
	for _, vc := range c.read {
		if len(left) == 0 {
			break
		}
		got, err := vc.GetBatchAsOf(ctx, left, c.asOf)
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
			if c.fresh.VerdictFresh(sv, c.asOf) {
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

// Remember implements pipeline.VerdictCache: each verdict is kept as long
// as its class may be reused (store.Freshness), within the bucket's bound.
func (c *clusterCache) Remember(ctx context.Context, verdicts []store.Verdict) error {
	batch := make(map[string]cluster.Verdict, len(verdicts))
	for _, v := range verdicts {
		life := c.fresh.Lifetime(v.Status, v.Reason)
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
