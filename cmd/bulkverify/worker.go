package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/internal/clusterpipe"
	"github.com/bulkverify/bulkverify/pipeline"
)

// unitProber is the engine a worker probes its units with: one
// pipeline.UnitProber for the whole process, the same engine verify uses,
// given the cluster's budget and accept-all share instead of a run's own,
// with the egress pool it sends from.
type unitProber struct {
	*clusterpipe.Prober
	pool *egress.Pool
}

// newUnitProber builds the worker's engine from the config: its egress
// pool (--source-ip, --proxy), operator table, do-not-probe list, breakers
// and preflight, as verify's (prepareRun), with the cluster's budget and
// accept-all share. ctx bounds the engine's life.
func newUnitProber(ctx context.Context, cfg configs.Config, budget egress.Budget, share pipeline.CatchAllShare, stderr io.Writer) (*unitProber, error) {
	res, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	pcfg := pipelineConfig(cfg)
	rt, err := prepareRun(ctx, cfg, &pcfg, res, stderr)
	if err != nil {
		return nil, err
	}
	pcfg.Budget = budget
	pcfg.CatchAllShare = share
	return &unitProber{Prober: &clusterpipe.Prober{Engine: pipeline.NewUnitProber(ctx, pcfg, res)}, pool: rt.pool}, nil
}

// clusterConfig is the cluster package's Config from the config file, with
// the NATS URL from --nats when given.
func clusterConfig(cfg configs.Config, natsURL string) (cluster.Config, error) {
	cc := cfg.Cluster
	if natsURL == "" {
		natsURL = cc.NATSURL
	}
	if natsURL == "" {
		return cluster.Config{}, usageError{errors.New("no NATS server: give --nats URL or cluster.nats_url")}
	}
	return cluster.Config{
		URL:          natsURL,
		CredsFile:    cc.CredsFile,
		Replicas:     cc.Replicas,
		AckWait:      cc.AckWait,
		MaxDeliver:   cc.MaxDeliver,
		LeaseTTL:     cc.LeaseTTL,
		HeartbeatTTL: cc.HeartbeatTTL,
		CatchAllTTL:  cc.CatchAllTTL,
		// A domain's accept-all claim is given up for dead as soon as a
		// worker is: the others wait no longer for a killed claimant's
		// answer than the cluster takes to notice it is gone. A live
		// claimant slower than that costs one more check, no more.
		ClaimTTL: cc.HeartbeatTTL,
	}, nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSharedFlags(fs)
	addPreflightFlag(fs, sf)
	natsURL := fs.String("nats", "", "NATS server `URL` with JetStream, e.g. nats://nats:4222 (default cluster.nats_url)")
	id := fs.String("id", "", "worker `name` in cluster status (default host-pid-random)")
	units := fs.Int("units", 0, "units probed at once (default cluster.units_per_worker)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify worker --nats URL [flags]\n\n"+
			"Runs a cluster worker: pulls work units from NATS JetStream, probes them with the\n"+
			"same engine as verify, within the cluster's per-operator budget, and publishes the\n"+
			"results. Runs until SIGTERM or Ctrl-C, then stores what it found, gives its units\n"+
			"back and exits 0.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := noArguments(fs, args, "worker", stderr); !ok {
		return code
	}
	err := worker(ctx, sf, fs, *natsURL, *id, *units, stderr)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return exitOK // stopped as asked
	}
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify worker: %v\n", err)
	}
	return exitCode(ctx, err)
}

func worker(ctx context.Context, sf *sharedFlags, fs *flag.FlagSet, natsURL, id string, units int, stderr io.Writer) error {
	cfg, err := sf.config(fs)
	if err != nil {
		return err
	}
	if sf.sandbox {
		// Each process would simulate a world of its own.
		return usageError{errors.New("--sandbox is for one process; a worker probes what its coordinator resolved")}
	}
	if _, err := sf.prepare(ctx, &cfg, stderr); err != nil { // the HELO name
		return err
	}
	ccfg, err := clusterConfig(cfg, natsURL)
	if err != nil {
		return err
	}
	if units <= 0 {
		units = cfg.Cluster.UnitsPerWorker
	}
	conn, err := cluster.Connect(ctx, ccfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	budget, err := conn.NewBudget(cluster.BudgetConfig{MaxPause: cfg.Egress.MaxCoolDown})
	if err != nil {
		return err
	}
	defer budget.Close()
	// The engine stops with the worker, or on its own when a breaker trips.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	share := conn.CatchAll()
	defer share.Close() // the accept-all checks this worker will not answer
	prober, err := newUnitProber(wctx, cfg, budget, share, stderr)
	if err != nil {
		return err
	}
	var fatal error
	prober.OnTripped = func(err error) {
		fatal = err
		stop()
	}
	w, err := conn.NewWorker(cluster.WorkerConfig{ID: id, Prober: prober, Units: units, Egress: egressNames(cfg)})
	if err != nil {
		prober.Engine.Close()
		return usageError{err}
	}
	fmt.Fprintf(stderr, "bulkverify worker %s: pulling units, %d at once\n", w.ID(), units)
	err = w.Run(wctx)
	stop()
	es := prober.Engine.Close()
	st := w.Stats()
	fmt.Fprintf(stderr, "bulkverify worker %s: stopped: %d units done, %d results, %d units given back, %d SMTP connections\n",
		w.ID(), st.Units, st.Results, st.GivenBack, es.Connections)
	for _, r := range prober.pool.Refusals() {
		fmt.Fprintf(stderr, "  REFUSED: %s refused egress %s (%s)\n", r.Operator, r.Egress, r.Reason)
	}
	if err == nil && fatal != nil {
		return fmt.Errorf("stopped taking units: %w", fatal)
	}
	return err
}

// egressNames names the worker's egresses for cluster status: source
// addresses and proxies without their credentials.
func egressNames(cfg configs.Config) []string {
	var names []string
	names = append(names, cfg.Egress.SourceIPs...)
	for _, p := range cfg.Egress.Proxies {
		names = append(names, proxyName(p))
	}
	if len(names) == 0 {
		names = []string{"direct"}
	}
	return names
}

// proxyName is scheme://host:port of a proxy URL: whatever stands before
// its last "@" (user, password, a ${NAME}) is left out.
func proxyName(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if at := strings.LastIndexByte(rest, '@'); ok && at >= 0 {
		rest = rest[at+1:]
	} else if !ok {
		return "(proxy)"
	}
	return scheme + "://" + rest
}
