package benchmarks

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/store"
)

// Strategy is how a run verifies its addresses.
type Strategy string

// The strategies.
const (
	Bulk  Strategy = "bulkverify" // pipeline.Run: grouped by MX host, cached DNS, pipelined RCPT
	Naive Strategy = "naive"      // one fresh lookup and connection per address, lock-step
	// BulkSOCKS is Bulk with every SMTP connection going through a SOCKS5
	// proxy (egress.Config.Proxies) that runs in the client's process: what
	// the proxy path costs.
	BulkSOCKS Strategy = "bulkverify-socks5"
)

// ParseStrategy accepts the names above, and cluster-N (cluster.go).
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case Bulk, Naive, BulkSOCKS:
		return st, nil
	}
	if ClusterWorkers(Strategy(s)) > 0 {
		return Strategy(s), nil
	}
	return "", fmt.Errorf("benchmarks: unknown strategy %q (want %q, %q, %q or cluster-N, N from 1 to %d)", s, Bulk, Naive, BulkSOCKS, maxClusterWorkers)
}

// isBulk reports whether s is bulkverify's pipeline, directly or through a
// proxy.
func isBulk(s Strategy) bool { return s == Bulk || s == BulkSOCKS }

// Profile labels: CPU samples of goroutines started by the simulated world
// (StartWorld) carry side=mailsim, those of the strategy side=client, so a
// profile of one process can be split between the two (go tool pprof -tags).
const (
	LabelSide   = "side"
	SideMailsim = "mailsim"
	SideClient  = "client"
)

// SMTPVerbs returns the commands counted in Result.Commands.
func SMTPVerbs() []string {
	return []string{"EHLO", "HELO", "STARTTLS", "MAIL", "RCPT", "RSET", "NOOP", "VRFY", "QUIT", "DATA", "BDAT"}
}

// Result is what one run did and cost. Counters of connections, commands and
// DNS queries are the simulated servers' own counts. CPU, allocations and RSS
// are the whole process's: simulated servers included when the world runs in
// this process (Run), the strategy's alone when it runs in another (RunAgainst
// a RemoteWorld), whose own figures are then WorldCPU and WorldPeakRSS.
type Result struct {
	Workload  string        `json:"workload"`
	Strategy  Strategy      `json:"strategy"`
	Addresses int           `json:"addresses"`
	RTT       time.Duration `json:"rtt_ns"`

	Rows       int           `json:"rows"`  // result rows written
	Wrong      int           `json:"wrong"` // rows whose verdict is not the one the world implies
	Mismatches []string      `json:"mismatches,omitempty"`
	Wall       time.Duration `json:"wall_ns"`
	// Runs, WallMin and WallMax describe repeated runs of which this one is
	// the median by wall time (see Median); Runs is 0 for a single run.
	Runs        int           `json:"runs,omitempty"`
	WallMin     time.Duration `json:"wall_min_ns,omitempty"`
	WallMax     time.Duration `json:"wall_max_ns,omitempty"`
	Connections int           `json:"connections"`
	// ProxyConnections is how many connections the SOCKS5 proxy accepted
	// (BulkSOCKS only).
	ProxyConnections int            `json:"proxy_connections,omitempty"`
	Commands         int            `json:"commands"` // SMTP commands of all SMTPVerbs
	ByVerb           map[string]int `json:"by_verb"`
	DNSQueries       int            `json:"dns_queries"`

	CPU        time.Duration `json:"cpu_ns"` // user + system time of the process during the run
	Mallocs    uint64        `json:"mallocs"`
	AllocBytes uint64        `json:"alloc_bytes"`
	// PeakRSS is VmHWM at the end of the run; when the kernel lets the peak
	// be reset (/proc/self/clear_refs), it was reset to StartRSS just before
	// the run, else it also covers whatever this process did earlier.
	PeakRSS   uint64 `json:"peak_rss"`
	PeakReset bool   `json:"peak_reset"`
	StartRSS  uint64 `json:"start_rss"` // VmRSS just before the run: the runtime, and the world when it is in this process

	// WorldCPU and WorldPeakRSS are the simulated world's own, when it runs
	// in a process of its own (see ServeWorld); 0 when it shares this one.
	WorldCPU     time.Duration `json:"world_cpu_ns"`
	WorldPeakRSS uint64        `json:"world_peak_rss"`

	Bound      Bound         `json:"bound"`       // lock-step dialogue, as bulkverify speaks
	Lockstep   Bound         `json:"lockstep"`    // the bound if RSET and MAIL each took a round trip
	NaiveBound time.Duration `json:"naive_bound"` // the naive strategy's own least wall time
	// LeastConnections is the fewest connections bulkverify can make.
	LeastConnections int `json:"least_connections"`

	// Workers is how many cluster workers probed (cluster-N); 0 = none.
	Workers int `json:"workers,omitempty"`
	// WorkersCPU is the CPU time the workers used, in processes of their
	// own (from their start: idle before the run), in all; 0 when they ran
	// in this process, where CPU counts them.
	WorkersCPU time.Duration `json:"workers_cpu_ns,omitempty"`
	// OperatorSessions is the workload's one operator's session budget
	// (Workload.OperatorSessions); 0 = none.
	OperatorSessions int `json:"operator_sessions,omitempty"`
	// MaxSessions is the most SMTP sessions the world's hosts together had
	// open at once, as the servers saw them.
	MaxSessions int `json:"max_sessions"`

	// Timeline is when things happened, from the start of the run.
	Timeline Timeline `json:"timeline"`

	// Verdicts maps each address to "status/reason", when RunOptions.Record.
	Verdicts map[string]string `json:"-"`

	// From bulkverify's own summary: rows answered from the store, how the
	// input was partitioned, the most addresses it held in memory at once,
	// and how many waited on disk because their host fell behind.
	Stored        int `json:"stored,omitempty"`
	Partitions    int `json:"partitions,omitempty"`
	PeakAddresses int `json:"peak_addresses,omitempty"`
	Spilled       int `json:"spilled,omitempty"`

	// Of a rerun (Workload.Rerun): the first run, over the unchanged list,
	// and the rows of the second run, not changed, whose output differs
	// from the first run's in anything but the source column.
	FirstWall        time.Duration `json:"first_wall_ns,omitempty"`
	FirstCPU         time.Duration `json:"first_cpu_ns,omitempty"`
	FirstRCPT        int           `json:"first_rcpt,omitempty"`
	FirstConnections int           `json:"first_connections,omitempty"`
	FirstDNSQueries  int           `json:"first_dns_queries,omitempty"`
	Differs          int           `json:"differs"`
}

// Timeline is when the steps of a run happened, each from its start: where
// its wall time goes (a cluster's start and end latency against a local
// run's). Zero = did not happen.
type Timeline struct {
	FirstRCPT time.Duration `json:"first_rcpt_ns"` // the first RCPT reached a host
	LastRCPT  time.Duration `json:"last_rcpt_ns"`  // the last RCPT reached a host
	LastRow   time.Duration `json:"last_row_ns"`   // the last row was written
}

// RunOptions adjusts a run.
type RunOptions struct {
	Record bool // keep every verdict in Result.Verdicts (small workloads only)
	// HeapProfile, if set, receives a heap profile taken when half of the
	// result rows have been written: the middle of the run, when the input
	// and the work in progress are all in memory.
	HeapProfile io.Writer
	// OnStart, if set, is called just before the measured run starts (after
	// the world is up and, for a rerun, after the first run): where a CPU
	// profile of the run alone begins.
	OnStart func()
	// StartWorker starts the workers of a cluster strategy; nil = in this
	// process (InProcessWorker).
	StartWorker StartWorkerFunc
}

// Run builds the workload's world in this process, runs one strategy over
// its input against it and measures the run. The world is closed before Run
// returns.
func Run(ctx context.Context, w Workload, s Strategy, opts RunOptions) (Result, error) {
	if err := w.Validate(); err != nil {
		return Result{}, err
	}
	if _, err := ParseStrategy(string(s)); err != nil {
		return Result{}, err
	}
	sim, err := StartWorld(ctx, w)
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	res, err := RunAgainst(ctx, w, s, InProcess(sim, w), opts)
	if err != nil {
		return res, err
	}
	if err := sim.Close(); err != nil {
		return res, fmt.Errorf("benchmarks: closing the world: %w", err)
	}
	return res, nil
}

// RunAgainst runs one strategy over the workload's input against a world
// that is already running (in this process or another) and measures the
// run. The world must be the workload's own (see StartWorld): the verdicts
// are checked against it.
func RunAgainst(ctx context.Context, w Workload, s Strategy, world World, opts RunOptions) (Result, error) {
	if err := w.Validate(); err != nil {
		return Result{}, err
	}
	if _, err := ParseStrategy(string(s)); err != nil {
		return Result{}, err
	}
	res := Result{
		Workload: w.Name, Strategy: s, Addresses: w.Addresses, RTT: w.RTT,
		// bulkverify pipelines whole transactions (RSET, MAIL, RCPTs):
		// its bound is the pipelined one; Lockstep is kept for comparison.
		Bound: w.LowerBound(Dialogue{Pipelined: true}), Lockstep: w.LowerBound(Dialogue{}), NaiveBound: w.NaiveBound(),
		LeastConnections: w.LeastConnections(), OperatorSessions: w.OperatorSessions,
	}

	var st *store.Store
	if w.Store && s == Bulk {
		dir, err := os.MkdirTemp("", "bulkverify-bench-store-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		if st, err = store.Open(filepath.Join(dir, "store.db"), store.Options{}); err != nil {
			return res, fmt.Errorf("benchmarks: store: %w", err)
		}
		defer st.Close()
	}
	var hashes []uint64
	var seed maphash.Seed
	if w.Rerun {
		// The first run, over the unchanged list: measured for the ratio,
		// its rows remembered to compare the second run's with.
		hashes = make([]uint64, w.Addresses)
		seed = maphash.MakeSeed()
		before, err := world.Counts()
		if err != nil {
			return res, fmt.Errorf("benchmarks: world: %w", err)
		}
		check := &checker{w: w, next: discardCSV(), record: hashes, seed: seed}
		cpu0, start := cpuTime(), time.Now()
		if _, err := runBulk(ctx, w, world, w.Rows(), check, st); err != nil {
			return res, fmt.Errorf("benchmarks: first run of %s: %w", w.Name, err)
		}
		res.FirstWall, res.FirstCPU = time.Since(start), cpuTime()-cpu0
		after, err := world.Counts()
		if err != nil {
			return res, fmt.Errorf("benchmarks: world: %w", err)
		}
		res.FirstRCPT = after.ByVerb["RCPT"] - before.ByVerb["RCPT"]
		res.FirstConnections = after.Connections - before.Connections
		res.FirstDNSQueries = after.DNSQueries - before.DNSQueries
		if check.wrong > 0 {
			return res, fmt.Errorf("benchmarks: first run of %s: %d wrong verdicts, e.g. %v", w.Name, check.wrong, check.mismatches)
		}
	}
	rows := w.Rows()
	if w.Rerun {
		rows = w.ChangedRows()
	}
	check := &checker{w: w, next: discardCSV(), heapAt: w.Addresses / 2, heap: opts.HeapProfile, compare: hashes, seed: seed, now: time.Now}
	if opts.Record {
		check.verdicts = make(map[string]string, w.Addresses)
	}
	before, err := world.Counts()
	if err != nil {
		return res, fmt.Errorf("benchmarks: world: %w", err)
	}

	var cl *benchCluster
	if n := ClusterWorkers(s); n > 0 {
		// The workers are up before the clock starts, as a cluster's are.
		var err error
		if cl, err = startCluster(ctx, w, world, n, opts.StartWorker); err != nil {
			return res, fmt.Errorf("benchmarks: starting the cluster: %w", err)
		}
		defer func() {
			if cl != nil {
				cl.close()
			}
		}()
		res.Workers = n
	}

	runtime.GC()
	debug.FreeOSMemory()
	res.PeakReset = resetPeakRSS()
	res.StartRSS = procStatus("VmRSS")
	if err := world.Begin(); err != nil {
		return res, fmt.Errorf("benchmarks: world: %w", err)
	}

	if opts.OnStart != nil {
		opts.OnStart()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	start := time.Now()
	pprof.Do(ctx, pprof.Labels(LabelSide, SideClient), func(ctx context.Context) {
		switch s {
		case Bulk:
			var sum pipeline.Summary
			sum, err = runBulk(ctx, w, world, rows, check, st)
			res.Stored, res.Partitions = sum.Stored, sum.Memory.Partitions
			res.PeakAddresses, res.Spilled = sum.Memory.PeakAddresses, sum.Memory.Spilled
		case BulkSOCKS:
			res.ProxyConnections, err = runBulkSOCKS(ctx, w, world, rows, check)
		case ClusterStrategy(res.Workers):
			var sum pipeline.Summary
			sum, err = cl.run(ctx, w, world, rows, check)
			res.Partitions = sum.Memory.Partitions
		case Naive:
			var src *input.Reader
			if src, err = input.NewReader(rows, input.Options{}); err != nil {
				return
			}
			n := naive{dnsAddr: world.DNSAddr(), port: world.SMTPPort(), workers: w.MaxConnections, probe: probeConfig()}
			err = n.run(ctx, src, check)
		}
	})
	res.Wall = time.Since(start)
	res.CPU = cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	res.PeakRSS = procStatus("VmHWM")
	if err != nil {
		return res, fmt.Errorf("benchmarks: %s on %s: %w", s, w.Name, err)
	}
	counts, err := world.Counts()
	if err != nil {
		return res, fmt.Errorf("benchmarks: world: %w", err)
	}

	since := func(t time.Time) time.Duration {
		if t.IsZero() {
			return 0
		}
		return t.Sub(start)
	}
	res.Timeline = Timeline{FirstRCPT: since(counts.FirstRCPTAt), LastRCPT: since(counts.LastRCPTAt), LastRow: since(check.lastRow)}
	res.Mallocs = ms1.Mallocs - ms0.Mallocs
	res.AllocBytes = ms1.TotalAlloc - ms0.TotalAlloc
	res.Rows, res.Wrong, res.Mismatches, res.Verdicts = check.rows, check.wrong, check.mismatches, check.verdicts
	res.Differs = check.differs
	res.Connections = counts.Connections - before.Connections
	res.DNSQueries = counts.DNSQueries - before.DNSQueries
	res.ByVerb = map[string]int{}
	for verb, n := range counts.ByVerb {
		if d := n - before.ByVerb[verb]; d > 0 {
			res.ByVerb[verb] = d
			res.Commands += d
		}
	}
	if cl != nil {
		if err := cl.close(); err != nil {
			return res, fmt.Errorf("benchmarks: stopping the cluster: %w", err)
		}
		res.WorkersCPU = cl.workersCPU
		cl = nil
	}
	res.WorldCPU, res.WorldPeakRSS = counts.CPU, counts.PeakRSS
	res.MaxSessions = counts.MaxSessions
	if check.heapErr != nil {
		return res, fmt.Errorf("benchmarks: heap profile: %w", check.heapErr)
	}
	return res, nil
}

// discardCSV is where the benchmarks write their CSV: encoded as the CLI
// does, then thrown away.
func discardCSV() output.Writer {
	w, err := output.NewCSV(io.Discard, []string{"email"})
	if err != nil {
		panic(err) // a header of one plain column cannot fail to be written to io.Discard
	}
	return w
}

// Median returns the run with the median wall time (the lower middle one of
// an even count), with Runs, WallMin and WallMax describing them all.
func Median(runs []Result) Result {
	if len(runs) == 0 {
		return Result{}
	}
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b Result) int { return cmp.Compare(a.Wall, b.Wall) })
	m := sorted[(len(sorted)-1)/2]
	m.Runs, m.WallMin, m.WallMax = len(sorted), sorted[0].Wall, sorted[len(sorted)-1].Wall
	return m
}

func runBulk(ctx context.Context, w Workload, world World, rows io.Reader, sink output.Writer, st *store.Store) (pipeline.Summary, error) {
	src, err := input.NewReader(rows, input.Options{})
	if err != nil {
		return pipeline.Summary{}, fmt.Errorf("input: %w", err)
	}
	r, err := resolve.New(resolve.Config{Servers: []string{world.DNSAddr()}})
	if err != nil {
		return pipeline.Summary{}, err
	}
	cfg := w.PipelineConfig(world.SMTPPort())
	if st != nil {
		cfg.Store = st
	}
	return pipeline.Run(ctx, cfg, r, src, sink)
}

// maxMismatches bounds the mismatching rows a Result lists.
const maxMismatches = 5

// checker compares every result with the verdict the world implies and
// passes it on. Both strategies write through it, from one goroutine at a
// time.
type checker struct {
	w          Workload
	next       output.Writer
	rows       int
	wrong      int
	mismatches []string
	verdicts   map[string]string

	// record (by row, 0-based) receives a hash of each row's output but for
	// its source; compare holds such hashes of an earlier run, and rows
	// unchanged since that run whose hash differs are counted in differs.
	record, compare []uint64
	differs         int
	seed            maphash.Seed
	buf             []byte

	now     func() time.Time // nil = the last row's time is not kept
	lastRow time.Time

	heapAt  int       // write the heap profile after this many rows
	heap    io.Writer // nil = no heap profile
	heapErr error
}

func (c *checker) Write(fields []string, r output.Result) error {
	c.rows++
	if c.now != nil {
		c.lastRow = c.now()
	}
	status, reason, ok := c.w.Expect(r.Email)
	if !ok || status != r.Status || reason != r.Reason {
		c.wrong++
		if len(c.mismatches) < maxMismatches {
			c.mismatches = append(c.mismatches, fmt.Sprintf("row %d %s: got %s/%s, want %s/%s", r.Row, r.Email, r.Status, r.Reason, status, reason))
		}
	}
	if c.verdicts != nil {
		c.verdicts[r.Email] = r.Status + "/" + r.Reason
	}
	if j := r.Row - 1; j >= 0 {
		switch {
		case j < len(c.record):
			c.record[j] = c.hash(&r)
		case j < len(c.compare) && !c.w.Changed(j) && c.compare[j] != c.hash(&r):
			c.differs++
			if len(c.mismatches) < maxMismatches {
				c.mismatches = append(c.mismatches, fmt.Sprintf("row %d %s: differs from the first run", r.Row, r.Email))
			}
		}
	}
	if c.heap != nil && c.rows == c.heapAt {
		runtime.GC() // the profile shows the heap as of the last GC
		c.heapErr = pprof.Lookup("heap").WriteTo(c.heap, 0)
	}
	return c.next.Write(fields, r)
}

func (c *checker) Flush() error { return c.next.Flush() }

// hash hashes what a row's output says, as written (server text cleaned,
// time in seconds), but for its row number and source: every field is
// copied into one buffer, hashed at once (the check is part of what a run
// is charged for, so it is kept cheap, not weak).
func (c *checker) hash(r *output.Result) uint64 {
	b := c.buf[:0]
	for _, s := range []string{r.Email, r.Status, r.Reason, r.EnhancedCode, output.CleanMessage(r.SMTPMessage),
		r.MXHost, r.Provider, r.Egress, r.TypoSuggestion} {
		b = append(b, s...)
		b = append(b, 0)
	}
	tri := func(b *bool) byte {
		switch {
		case b == nil:
			return 2
		case *b:
			return 1
		}
		return 0
	}
	flag := func(b bool) byte {
		if b {
			return 1
		}
		return 0
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(r.CheckedAt.Unix()))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.SMTPCode)<<32|uint64(r.Attempts))
	b = append(b, tri(r.CatchAll), tri(r.TLS), flag(r.Disposable), flag(r.Free), flag(r.Role))
	c.buf = b
	return maphash.Bytes(c.seed, b)
}
