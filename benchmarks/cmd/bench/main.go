// Command bench runs the benchmark workloads of package benchmarks against
// the simulated mail world and prints the figures as Markdown tables.
//
//	go run ./benchmarks/cmd/bench                      # L1 (bulkverify and naive) and C1 (bulkverify), default sizes
//	go run ./benchmarks/cmd/bench -workloads L1 -l1.rtt 50ms
//	go run ./benchmarks/cmd/bench -workloads C1 -c1.addresses 200000 -cpuprofile /tmp/prof
//
// Every run happens in a fresh child process (this binary re-executed with
// -child), so that each run's peak RSS is its own; -inprocess runs them in
// this process instead. -world-process moves the simulated world into one
// more process (-serve), so that CPU time and RSS are bulkverify's alone.
// See benchmarks/README.md for what the columns mean.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/benchmarks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// job is one run, as handed to a child process.
type job struct {
	Workload   benchmarks.Workload `json:"workload"`
	Strategy   benchmarks.Strategy `json:"strategy"`
	CPUProfile string              `json:"cpu_profile,omitempty"`
	MemProfile string              `json:"mem_profile,omitempty"`
	// WorldProcess runs the simulated world in a process of its own, so
	// that CPU time and RSS are the strategy's alone.
	WorldProcess bool `json:"world_process,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	l1, c1, c2 := benchmarks.L1(), benchmarks.C1(), benchmarks.C2()
	l3, b1 := benchmarks.L3(), benchmarks.B1()
	l1.Flags(fs, "l1.")
	c1.Flags(fs, "c1.")
	c2.Flags(fs, "c2.")
	l3.Flags(fs, "l3.")
	b1.Flags(fs, "b1.")
	workloads := fs.String("workloads", "L1,C1", "workloads to run, comma-separated: L1, C1, C1-store (C1 with the verdict store), C1-signals (C1 with the built-in signals), C1-rerun (C1 twice on one store, 5% of rows changed the second time), L1-rerun (the same on L1, 20 ms round trips), C2 (10M rows), L3 and B1 (the cluster's: 1, 2, 4 workers)")
	l1Strategies := fs.String("l1.strategies", "bulkverify,naive", "strategies run on L1: bulkverify, naive, bulkverify-socks5 (through an in-process SOCKS5 proxy), cluster-N (N workers on NATS JetStream)")
	l3Strategies := fs.String("l3.strategies", "cluster-1,cluster-2,cluster-4", "strategies run on L3")
	b1Strategies := fs.String("b1.strategies", "cluster-1,cluster-2,cluster-4", "strategies run on B1")
	c1Strategies := fs.String("c1.strategies", "bulkverify", "strategies run on C1")
	c1Sweep := fs.String("c1.sweep", "100000", "more C1 sizes (addresses, comma-separated) run with bulkverify, for RSS per row; \"\" = none")
	inprocess := fs.Bool("inprocess", false, "run in this process instead of one child process per run")
	profDir := fs.String("cpuprofile", "", "directory to write a CPU profile of every run to (labelled side=mailsim / side=client)")
	memDir := fs.String("memprofile", "", "directory to write a heap profile of every run to, taken when half the rows are written")
	jsonPath := fs.String("json", "", "file to write the results to as JSON as well")
	timeout := fs.Duration("timeout", 2*time.Hour, "give up after this long")
	count := fs.Int("count", 1, "run each job this many times and report the median by wall time")
	interleave := fs.Bool("interleave", false, "with -count: run every job once, then every job again, ... (a machine whose load drifts then slows the jobs compared alike)")
	worldProcess := fs.Bool("world-process", false, "run the simulated world in a process of its own (CPU and RSS then split between the two)")
	child := fs.String("child", "", "internal: run this job (JSON) and print its result as JSON")
	serve := fs.String("serve", "", "internal: serve this workload's world (JSON) on stdin/stdout")
	clusterWorker := fs.String("cluster-worker", "", "internal: run a cluster worker (JSON spec) until stdin ends")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *serve != "" {
		var w benchmarks.Workload
		err := json.Unmarshal([]byte(*serve), &w)
		if err == nil {
			err = benchmarks.ServeWorld(ctx, w, os.Stdin, stdout)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench: world:", err)
			return 1
		}
		return 0
	}
	if *clusterWorker != "" {
		if err := runClusterWorker(ctx, *clusterWorker); err != nil {
			fmt.Fprintln(stderr, "bench: cluster worker:", err)
			return 1
		}
		return 0
	}
	if *child != "" {
		if err := runChild(ctx, *child, stdout); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		return 0
	}

	jobs, err := plan(*workloads, l1, c1, c2, l3, b1, *l1Strategies, *c1Strategies, *c1Sweep, *l3Strategies, *b1Strategies)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	for _, dir := range []string{*profDir, *memDir} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	failed := false
	runs := make([][]benchmarks.Result, len(jobs))
	runOne := func(i int) error {
		j := &jobs[i]
		var res benchmarks.Result
		var err error
		if *inprocess {
			res, err = runJob(ctx, *j)
		} else {
			res, err = spawn(ctx, *j, stderr)
		}
		if err != nil {
			return err
		}
		tl := res.Timeline
		fmt.Fprintf(stderr, "bench:   %s/%s: %v wall (first RCPT %v, last RCPT %v, last row %v), %d connections, %d wrong verdicts\n",
			j.Workload.Name, j.Strategy, res.Wall.Round(time.Millisecond), tl.FirstRCPT.Round(time.Millisecond),
			tl.LastRCPT.Round(time.Millisecond), tl.LastRow.Round(time.Millisecond), res.Connections, res.Wrong)
		if res.Wrong > 0 {
			fmt.Fprintf(stderr, "bench: %s/%s gave %d wrong verdicts, e.g. %v\n", res.Workload, res.Strategy, res.Wrong, res.Mismatches)
			failed = true
		}
		runs[i] = append(runs[i], res)
		return nil
	}
	for i := range jobs {
		j := &jobs[i]
		j.WorldProcess = *worldProcess
		name := fmt.Sprintf("%s-%d-%s", j.Workload.Name, j.Workload.Addresses, j.Strategy)
		if *profDir != "" {
			j.CPUProfile = filepath.Join(*profDir, name+".cpu.pprof")
		}
		if *memDir != "" {
			j.MemProfile = filepath.Join(*memDir, name+".heap.pprof")
		}
		fmt.Fprintf(stderr, "bench: %s with %s\n", j.Workload.Describe(), j.Strategy)
	}
	// Every job's n-th run before any job's (n+1)-th, with -interleave: a
	// machine whose load drifts (shared with others) then slows the jobs
	// compared alike, and their ratios stand.
	if *interleave {
		for range max(*count, 1) {
			for i := range jobs {
				if err := runOne(i); err != nil {
					fmt.Fprintln(stderr, "bench:", err)
					return 1
				}
			}
		}
	} else {
		for i := range jobs {
			for range max(*count, 1) {
				if err := runOne(i); err != nil {
					fmt.Fprintln(stderr, "bench:", err)
					return 1
				}
			}
		}
	}
	var results []benchmarks.Result
	for _, rs := range runs {
		if len(rs) == 1 {
			results = append(results, rs[0])
		} else {
			results = append(results, benchmarks.Median(rs))
		}
	}

	var b strings.Builder
	writeMachine(&b)
	b.WriteString("\nWorkloads:\n\n")
	seen := map[string]bool{}
	for _, j := range jobs {
		if d := j.Workload.Describe(); !seen[d] {
			seen[d] = true
			b.WriteString("- " + d + "\n")
		}
	}
	b.WriteString("\n")
	_ = benchmarks.WriteTable(&b, results)
	b.WriteString("\n")
	_ = benchmarks.WriteComparison(&b, results)
	b.WriteString("\n")
	_ = benchmarks.WriteProxyComparison(&b, results)
	writeMarginal(&b, results)
	b.WriteString("\n")
	_ = benchmarks.WriteStoreAndMemory(&b, results)
	_ = benchmarks.WriteClusterComparison(&b, results)
	fmt.Fprint(stdout, b.String())

	if *jsonPath != "" {
		data, err := json.MarshalIndent(results, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonPath, data, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

// plan lists the runs: each selected workload with its strategies, then the
// C1 sweep sizes.
func plan(workloads string, l1, c1, c2, l3, b1 benchmarks.Workload, l1s, c1s, sweep, l3s, b1s string) ([]job, error) {
	var jobs []job
	add := func(w benchmarks.Workload, strategies string) error {
		if err := w.Validate(); err != nil {
			return err
		}
		for _, s := range splitList(strategies) {
			st, err := benchmarks.ParseStrategy(s)
			if err != nil {
				return err
			}
			jobs = append(jobs, job{Workload: w, Strategy: st})
		}
		return nil
	}
	for _, name := range splitList(workloads) {
		switch strings.ToUpper(name) {
		case "L1":
			if err := add(l1, l1s); err != nil {
				return nil, err
			}
		case "C1":
			for _, s := range splitList(sweep) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("bad -c1.sweep size %q", s)
				}
				if n == c1.Addresses {
					continue
				}
				w := c1
				w.Addresses = n
				w.Domains = min(w.Domains, n)
				w.Hosts = min(w.Hosts, w.Domains)
				if err := add(w, string(benchmarks.Bulk)); err != nil {
					return nil, err
				}
			}
			if err := add(c1, c1s); err != nil {
				return nil, err
			}
		case "C1-STORE":
			w := c1
			w.Name, w.Store = "C1-store", true
			if err := add(w, string(benchmarks.Bulk)); err != nil {
				return nil, err
			}
		case "C1-SIGNALS":
			w := c1
			w.Name, w.Signals = benchmarks.C1Signals().Name, true
			if err := add(w, string(benchmarks.Bulk)); err != nil {
				return nil, err
			}
		case "C1-RERUN":
			w := c1
			rerun := benchmarks.C1Rerun()
			w.Name, w.Store, w.Rerun, w.ChangeEvery = rerun.Name, true, true, rerun.ChangeEvery
			if err := add(w, string(benchmarks.Bulk)); err != nil {
				return nil, err
			}
		case "L1-RERUN":
			w := l1
			w.Name, w.Store, w.Rerun, w.ChangeEvery = "L1-rerun", true, true, benchmarks.C1Rerun().ChangeEvery
			if err := add(w, string(benchmarks.Bulk)); err != nil {
				return nil, err
			}
		case "C2":
			if err := add(c2, string(benchmarks.Bulk)); err != nil {
				return nil, err
			}
		case "L3":
			if err := add(l3, l3s); err != nil {
				return nil, err
			}
		case "B1":
			if err := add(b1, b1s); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown workload %q (want L1, C1, C1-store, C1-rerun, C2, L3 or B1)", name)
		}
	}
	if len(jobs) == 0 {
		return nil, errors.New("nothing to run")
	}
	return jobs, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// spawn runs j in a child process and reads its result.
func spawn(ctx context.Context, j job, stderr io.Writer) (benchmarks.Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return benchmarks.Result{}, err
	}
	spec, err := json.Marshal(j)
	if err != nil {
		return benchmarks.Result{}, err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, "-child", string(spec))
	cmd.Stdout = &out
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return benchmarks.Result{}, fmt.Errorf("%s/%s: child: %w", j.Workload.Name, j.Strategy, err)
	}
	var res benchmarks.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return benchmarks.Result{}, fmt.Errorf("%s/%s: reading the child's result: %w", j.Workload.Name, j.Strategy, err)
	}
	return res, nil
}

func runChild(ctx context.Context, spec string, stdout io.Writer) error {
	var j job
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		return fmt.Errorf("bad job: %w", err)
	}
	res, err := runJob(ctx, j)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// runJob runs j in this process, with profiles if asked; a cluster's
// workers run in processes of their own (this binary, -cluster-worker).
func runJob(ctx context.Context, j job) (benchmarks.Result, error) {
	opts := benchmarks.RunOptions{StartWorker: spawnWorker}
	if j.MemProfile != "" {
		f, err := os.Create(j.MemProfile)
		if err != nil {
			return benchmarks.Result{}, err
		}
		defer f.Close()
		opts.HeapProfile = f
	}
	if j.CPUProfile != "" {
		f, err := os.Create(j.CPUProfile)
		if err != nil {
			return benchmarks.Result{}, err
		}
		defer f.Close()
		// From the start of the measured run: not the world's start, not
		// the first run of a rerun.
		var profErr error
		opts.OnStart = func() { profErr = pprof.StartCPUProfile(f) }
		defer func() {
			if profErr == nil {
				pprof.StopCPUProfile()
			}
		}()
	}
	if !j.WorldProcess {
		return benchmarks.Run(ctx, j.Workload, j.Strategy, opts)
	}
	return runAgainstWorldProcess(ctx, j, opts)
}

// runAgainstWorldProcess starts the job's world in a child process (this
// binary with -serve) and runs the strategy here against it.
func runAgainstWorldProcess(ctx context.Context, j job, opts benchmarks.RunOptions) (benchmarks.Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return benchmarks.Result{}, err
	}
	spec, err := json.Marshal(j.Workload)
	if err != nil {
		return benchmarks.Result{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "-serve", string(spec))
	cmd.Stderr = os.Stderr
	toWorld, err := cmd.StdinPipe()
	if err != nil {
		return benchmarks.Result{}, err
	}
	fromWorld, err := cmd.StdoutPipe()
	if err != nil {
		return benchmarks.Result{}, err
	}
	if err := cmd.Start(); err != nil {
		return benchmarks.Result{}, err
	}
	world, err := benchmarks.RemoteWorld(fromWorld, toWorld)
	var res benchmarks.Result
	if err == nil {
		res, err = benchmarks.RunAgainst(ctx, j.Workload, j.Strategy, world, opts)
	}
	_ = toWorld.Close() // the world closes when its input ends
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("world process: %w", werr)
	}
	return res, err
}

func writeMachine(b *strings.Builder) {
	model := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel := "unknown"
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	fmt.Fprintf(b, "Machine: %d CPUs (GOMAXPROCS %d), %s, %s/%s, Linux %s, %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), model, runtime.GOOS, runtime.GOARCH, kernel, runtime.Version())
}

// writeMarginal reports, for bulkverify runs of one workload at several
// sizes, the extra peak RSS per extra row between consecutive sizes.
func writeMarginal(b *strings.Builder, results []benchmarks.Result) {
	byName := map[string][]benchmarks.Result{}
	for _, r := range results {
		if r.Strategy == benchmarks.Bulk && r.PeakRSS > 0 {
			byName[r.Workload] = append(byName[r.Workload], r)
		}
	}
	header := false
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		rs := byName[name]
		slices.SortFunc(rs, func(a, b benchmarks.Result) int { return a.Rows - b.Rows })
		for i := 1; i < len(rs); i++ {
			lo, hi := rs[i-1], rs[i]
			if hi.Rows == lo.Rows {
				continue
			}
			if !header {
				b.WriteString("\n| workload | rows | peak RSS MiB | extra peak RSS per extra row |\n|---|--:|--:|--:|\n")
				header = true
			}
			per := (float64(hi.PeakRSS) - float64(lo.PeakRSS)) / float64(hi.Rows-lo.Rows)
			fmt.Fprintf(b, "| %s | %d → %d | %.0f → %.0f | %.0f B |\n", name, lo.Rows, hi.Rows,
				float64(lo.PeakRSS)/(1<<20), float64(hi.PeakRSS)/(1<<20), per)
		}
	}
}

// spawnWorker starts a cluster worker in a process of its own: this binary
// with -cluster-worker. It stops when its stdin is closed.
func spawnWorker(ctx context.Context, spec benchmarks.WorkerSpec) (func() (time.Duration, error), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-cluster-worker", string(data))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (time.Duration, error) {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var cpu time.Duration
			if cmd.ProcessState != nil {
				cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			return cpu, err
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			return 0, fmt.Errorf("worker %s did not stop within 60s", spec.ID)
		}
	}, nil
}

// runClusterWorker serves one cluster worker until its stdin ends (its
// parent closed it, or died).
func runClusterWorker(ctx context.Context, specJSON string) error {
	var spec benchmarks.WorkerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("bad worker spec: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return benchmarks.ServeClusterWorker(ctx, spec)
}
