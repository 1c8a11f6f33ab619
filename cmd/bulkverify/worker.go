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
)

// errNoProber: the engine that probes a unit is not wired into the worker
// yet (see newUnitProber).
var errNoProber = errors.New("this build has no unit prober wired in (cluster.Prober from the pipeline package)")

// newUnitProber returns the engine a worker probes its units with: the
// same one verify uses, given the cluster's budget and accept-all share
// instead of a local one. INTEGRATION POINT: the pipeline package's
// cluster.Prober is wired here.
func newUnitProber(ctx context.Context, cfg configs.Config, budget egress.Budget, share cluster.CatchAllShare) (cluster.Prober, error) {
	return nil, errNoProber
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
	}, nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSharedFlags(fs)
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
	positional, err := parseInterspersed(fs, args)
	if err == flag.ErrHelp {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if len(positional) != 0 {
		fmt.Fprintf(stderr, "bulkverify worker: takes no arguments, got %q\n", positional)
		fs.Usage()
		return exitUsage
	}
	err = worker(ctx, sf, fs, *natsURL, *id, *units, stderr)
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
	prober, err := newUnitProber(ctx, cfg, budget, conn.CatchAll())
	if err != nil {
		return err
	}
	w, err := conn.NewWorker(cluster.WorkerConfig{ID: id, Prober: prober, Units: units, Egress: egressNames(cfg)})
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stderr, "bulkverify worker %s: pulling units, %d at once\n", w.ID(), units)
	err = w.Run(ctx)
	st := w.Stats()
	fmt.Fprintf(stderr, "bulkverify worker %s: stopped: %d units done, %d results, %d units given back\n", w.ID(), st.Units, st.Results, st.GivenBack)
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
