package clusterpipe

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
)

// MaxRounds is how many repair rounds a job may need (see
// pipeline.Distribute); Remote names their jobs JOB-r1 ... JOB-rN.
const MaxRounds = 3

// Remote is a cluster's Coordinator as a pipeline.Distributor: round 0 is
// the job, round n its repair job JOB-rN.
type Remote struct {
	co       *cluster.Coordinator
	job      string
	flush    time.Duration
	unitSize int

	mu     sync.Mutex
	opened map[int]bool
}

var _ pipeline.Distributor = (*Remote)(nil)

// NewRemote returns the Distributor of job on co. flush is how often
// complete units are checkpointed and acknowledged (0 = 1s); unitSize the
// most addresses a unit may have (0 = cluster.DefaultUnitAddresses).
func NewRemote(co *cluster.Coordinator, job string, flush time.Duration, unitSize int) *Remote {
	return &Remote{co: co, job: job, flush: flush, unitSize: unitSize, opened: map[int]bool{}}
}

// Job is the job's id.
func (r *Remote) Job() string { return r.job }

// SetJob names the job, before it is begun: a coordinator names it by its
// input, once read.
func (r *Remote) SetJob(job string) { r.job = job }

func (r *Remote) jobOf(round int) string {
	if round == 0 {
		return r.job
	}
	return fmt.Sprintf("%s-r%d", r.job, round)
}

// Begin opens the job and reports whether JetStream held it already (an
// earlier start of it). Without resume, what an earlier start left is
// removed first, and the job begins anew.
func (r *Remote) Begin(ctx context.Context, resume bool) (cluster.JobRecord, bool, error) {
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

func (r *Remote) markOpened(round int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened[round] = true
}

// open makes sure the round's job exists before its units or results are
// asked for.
func (r *Remote) open(ctx context.Context, round int) (string, error) {
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
func (r *Remote) Submit(ctx context.Context, round int, units iter.Seq[pipeline.WorkUnit]) error {
	job, err := r.open(ctx, round)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cutErr error
	seq := func(yield func(cluster.Unit) bool) {
		for wu := range units {
			parts, err := cluster.SplitUnit(Unit(wu), max(r.unitSize, len(wu.Addresses)))
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

// Unit is a unit on the wire.
func Unit(wu pipeline.WorkUnit) cluster.Unit {
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
func (r *Remote) Collect(ctx context.Context, round int, checkpoint func() error, fn func(uint64, pipeline.Verdict) error) error {
	job, err := r.open(ctx, round)
	if err != nil {
		return err
	}
	return r.co.Collect(ctx, job, cluster.CollectOptions{Checkpoint: checkpoint, FlushInterval: r.flush}, func(res cluster.Result) error {
		return fn(res.Key, VerdictOf(res))
	})
}

// VerdictOf is a result as the pipeline's verdict.
func VerdictOf(r cluster.Result) pipeline.Verdict {
	v := pipeline.Verdict{
		Status: r.Status, Reason: r.Reason, MXHost: r.MXHost, Provider: r.Provider, Egress: r.Egress,
		CatchAll: r.CatchAll, TLS: r.TLS, Attempts: r.Attempts, At: r.CheckedAt,
	}
	if r.SMTPCode != 0 {
		v.Reply = &probe.Reply{Code: r.SMTPCode, Enhanced: r.EnhancedCode, Lines: []string{r.Message}}
	}
	return v
}

// Cleanup removes the job and the repair jobs it opened from JetStream.
func (r *Remote) Cleanup(ctx context.Context) error {
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
func (r *Remote) cleanupAll(ctx context.Context) error {
	for round := 0; round <= MaxRounds; round++ {
		if err := r.co.Cleanup(ctx, r.jobOf(round)); err != nil {
			return err
		}
	}
	return nil
}
