package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/internal/clusterpipe"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/resolve"
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
		remote := clusterpipe.NewRemote(conn.Coordinator(), "", pcfg.FlushInterval, cfg.Cluster.UnitSize)
		d := pipeline.Distribution{Remote: remote, UnitSize: cfg.Cluster.UnitSize, MaxRounds: clusterpipe.MaxRounds}
		var cache *clusterpipe.Cache
		// --refresh probes every address but still remembers what it found.
		pcfg.Refresh = cfg.Store.Refresh
		if useCache {
			if cache, err = clusterpipe.NewCache(conn, runNamespaces(cfg.Store), cfg.Store.Options().Freshness); err != nil {
				return sum, usageError{err}
			}
			d.Cache = cache
			pcfg.OnStoreError = func(err error) {
				fmt.Fprintf(stderr, "bulkverify: warning: the cluster's verdict cache failed: %v; this job goes on without it\n", err)
			}
		}
		d.Begin = func(ctx context.Context) (bool, error) {
			remote.SetJob(jobID(content, cfg))
			rec, existed, err := remote.Begin(ctx, rf.resume)
			if err != nil {
				return false, err
			}
			if cache != nil {
				cache.AsOf = rec.Created
			}
			state := "new"
			if existed {
				state = "resumed: units and results JetStream holds are used"
			}
			fmt.Fprintf(stderr, "cluster job %s (%s); follow it with: bulkverify cluster status --nats %s\n", remote.Job(), state, natsURL)
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
		if remote.Job() == "" {
			remote.SetJob(jobID(content, cfg)) // every row was written before: nothing was begun
		}
		if cerr := remote.Cleanup(ctx); cerr != nil {
			fmt.Fprintf(stderr, "bulkverify: warning: removing job %s from JetStream: %v (the output is complete)\n", remote.Job(), cerr)
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
