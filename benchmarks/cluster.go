package benchmarks

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nuid"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/internal/clusterpipe"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
)

// Cluster strategies, "cluster-N": the coordinator (pipeline.Distribute
// through the cluster package, as verify --nats runs it) in the measuring
// process with a NATS JetStream server embedded there, and N workers, each
// a UnitProber behind a cluster.Worker, as "bulkverify worker" runs it.
// The workers are started, connected and idle before the clock starts: a
// cluster's workers are long-running. Their CPU time and memory are their
// own processes' (RunOptions.StartWorker), not in Result.CPU.

// maxClusterWorkers bounds N.
const maxClusterWorkers = 16

// ClusterStrategy is the cluster strategy with n workers.
func ClusterStrategy(n int) Strategy { return Strategy("cluster-" + strconv.Itoa(n)) }

// ClusterWorkers is how many workers s runs with; 0 for a strategy that is
// not a cluster's.
func ClusterWorkers(s Strategy) int {
	rest, ok := strings.CutPrefix(string(s), "cluster-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || n > maxClusterWorkers || strconv.Itoa(n) != rest {
		return 0
	}
	return n
}

// WorkerSpec is what one cluster worker of a run needs.
type WorkerSpec struct {
	Workload Workload `json:"workload"`
	NATS     string   `json:"nats"`
	DNSAddr  string   `json:"dns_addr"`
	SMTPPort int      `json:"smtp_port"`
	ID       string   `json:"id"`
	// SourceIP is the loopback address the worker sends from, its own, as
	// each machine of a cluster has its own.
	SourceIP string `json:"source_ip"`
}

// StartWorkerFunc starts a cluster worker and returns how to stop it (and
// wait until it has stopped); stop reports the CPU time the worker used
// (0 when it ran in this process, where it counts as the run's).
type StartWorkerFunc func(ctx context.Context, spec WorkerSpec) (stop func() (time.Duration, error), err error)

// InProcessWorker runs a worker in this process: for tests, and where no
// process can be spawned. Its CPU time counts as the run's.
func InProcessWorker(ctx context.Context, spec WorkerSpec) (func() (time.Duration, error), error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ServeClusterWorker(ctx, spec) }()
	return func() (time.Duration, error) {
		cancel()
		return 0, <-done
	}, nil
}

// clusterConfig is the cluster settings of every process of a run: the
// defaults but for a short heartbeat, so that the workers are seen alive
// soon after they start.
func clusterConfig(url string) cluster.Config {
	return cluster.Config{URL: url, Name: "bulkverify-bench", HeartbeatTTL: 3 * time.Second, ClaimTTL: 30 * time.Second}
}

// ServeClusterWorker runs one cluster worker until ctx ends: the engine of
// a worker (pipeline.UnitProber with the cluster's budget and accept-all
// share) with the workload's limits, sending from spec.SourceIP.
func ServeClusterWorker(ctx context.Context, spec WorkerSpec) error {
	w := spec.Workload
	conn, err := cluster.Connect(ctx, clusterConfig(spec.NATS))
	if err != nil {
		return err
	}
	defer conn.Close()
	budget, err := conn.NewBudget(cluster.BudgetConfig{})
	if err != nil {
		return err
	}
	defer budget.Close()
	share := conn.CatchAll()
	defer share.Close()
	res, err := resolve.New(resolve.Config{Servers: []string{spec.DNSAddr}})
	if err != nil {
		return err
	}
	cfg := w.PipelineConfig(spec.SMTPPort)
	cfg.Budget, cfg.CatchAllShare = budget, share
	if spec.SourceIP != "" {
		if cfg.Egress, err = egress.New(egress.Config{SourceIPs: []string{spec.SourceIP}}); err != nil {
			return err
		}
	}
	engine := pipeline.NewUnitProber(ctx, cfg, res)
	defer engine.Close()
	units := w.UnitsPerWorker
	if units <= 0 {
		// A unit is one host's: a worker needs several per connection it
		// may open, for units of slow hosts hold their place until done.
		units = 4 * w.MaxConnections
	}
	worker, err := conn.NewWorker(cluster.WorkerConfig{ID: spec.ID, Prober: &clusterpipe.Prober{Engine: engine}, Units: units,
		Egress: []string{spec.SourceIP}, PollWait: time.Second})
	if err != nil {
		return err
	}
	return worker.Run(ctx)
}

// benchCluster is the NATS server and the workers of one cluster run.
type benchCluster struct {
	srv   *server.Server
	dir   string
	conn  *cluster.Conn
	stops []func() (time.Duration, error)
	// workersCPU is the CPU time the workers used, in all, once closed.
	workersCPU time.Duration
}

// workerIP is the source address of worker i: 127.0.5.(i+1), clear of the
// world's hosts (127.77.x.y) and of the tests' addresses.
func workerIP(i int) string { return "127.0.5." + strconv.Itoa(i+1) }

// startCluster starts a NATS JetStream server in this process and n
// workers (with start; nil = in this process), and returns once all n are
// alive in the cluster's status.
func startCluster(ctx context.Context, w Workload, world World, n int, start StartWorkerFunc) (*benchCluster, error) {
	if start == nil {
		start = InProcessWorker
	}
	dir, err := os.MkdirTemp("", "bulkverify-bench-nats-")
	if err != nil {
		return nil, err
	}
	c := &benchCluster{dir: dir}
	fail := func(err error) (*benchCluster, error) {
		c.close()
		return nil, err
	}
	c.srv, err = server.NewServer(&server.Options{ServerName: "bulkverify-bench", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return fail(fmt.Errorf("nats-server: %w", err))
	}
	go c.srv.Start()
	if !c.srv.ReadyForConnections(10 * time.Second) {
		return fail(fmt.Errorf("nats-server: not ready"))
	}
	if c.conn, err = cluster.Connect(ctx, clusterConfig(c.srv.ClientURL())); err != nil {
		return fail(err)
	}
	for i := range n {
		stop, err := start(ctx, WorkerSpec{Workload: w, NATS: c.srv.ClientURL(), DNSAddr: world.DNSAddr(),
			SMTPPort: world.SMTPPort(), ID: "w" + strconv.Itoa(i+1), SourceIP: workerIP(i)})
		if err != nil {
			return fail(fmt.Errorf("worker %d: %w", i+1, err))
		}
		c.stops = append(c.stops, stop)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.conn.Status(ctx)
		if err == nil && len(st.Workers) == n {
			return c, nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%d of %d workers alive after 60s (%v)", len(st.Workers), n, err))
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
}

// close stops the workers, then the server.
func (c *benchCluster) close() error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.stops))
	cpus := make([]time.Duration, len(c.stops))
	for i, stop := range c.stops {
		wg.Go(func() { cpus[i], errs[i] = stop() })
	}
	wg.Wait()
	for _, d := range cpus {
		c.workersCPU += d
	}
	c.stops = nil
	if c.conn != nil {
		c.conn.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
	os.RemoveAll(c.dir)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// run is the coordinator of one job over rows, writing to sink.
func (c *benchCluster) run(ctx context.Context, w Workload, world World, rows io.Reader, sink output.Writer) (pipeline.Summary, error) {
	src, err := input.NewReader(rows, input.Options{})
	if err != nil {
		return pipeline.Summary{}, fmt.Errorf("input: %w", err)
	}
	r, err := resolve.New(resolve.Config{Servers: []string{world.DNSAddr()}})
	if err != nil {
		return pipeline.Summary{}, err
	}
	cfg := w.PipelineConfig(world.SMTPPort())
	remote := clusterpipe.NewRemote(c.conn.Coordinator(), "bench-"+nuid.Next(), cfg.FlushInterval, w.UnitSize)
	d := pipeline.Distribution{Remote: remote, UnitSize: w.UnitSize, Begin: func(ctx context.Context) (bool, error) {
		_, existed, err := remote.Begin(ctx, false)
		return existed, err
	}}
	sum, err := pipeline.Distribute(ctx, cfg, d, r, src, sink)
	if err == nil {
		err = remote.Cleanup(ctx)
	}
	return sum, err
}
