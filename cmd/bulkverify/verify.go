package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/signals"
)

// runFlags are the flags of the commands that process a whole file
// (verify, find) beyond the shared ones.
type runFlags struct {
	output, format, progress string
	summary                  string
	report                   string // --report FILE.html
	resume, keepOrder        bool
	shared                   *sharedFlags
	signals                  *signals.Set // the run's lists, loaded by runJob
}

func newRunFlagSet(name, usageLine string, stderr io.Writer) (*flag.FlagSet, *runFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rf := &runFlags{}
	fs.StringVar(&rf.output, "o", "-", "output file (`FILE`, \"-\" = stdout)")
	fs.StringVar(&rf.output, "output", "-", "same as -o")
	fs.StringVar(&rf.format, "format", "csv", "output format: csv or jsonl")
	fs.StringVar(&rf.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), on, off")
	fs.BoolVar(&rf.resume, "resume", false, "continue an interrupted run: keep the complete rows of the -o file, verify only the rest")
	fs.BoolVar(&rf.keepOrder, "keep-order", false, "write rows in input order (rows decided early wait in a temporary file)")
	fs.StringVar(&rf.summary, "summary", "", "also write the summary as JSON to `FILE`")
	fs.StringVar(&rf.report, "report", "", "also write a self-contained HTML report of the run to `FILE`")
	rf.shared = addSharedFlags(fs)
	addPreflightFlag(fs, rf.shared)
	over := &rf.shared.over
	fs.StringVar(&over.Input.Column, "column", over.Input.Column, "name of the input `column` to read (default: detect)")
	fs.IntVar(&over.Limits.MaxConnections, "max-connections", over.Limits.MaxConnections, "simultaneous SMTP connections in total")
	fs.IntVar(&over.Limits.MaxConnectionsPerMX, "max-per-mx", over.Limits.MaxConnectionsPerMX, "simultaneous SMTP connections per MX host")
	fs.IntVar(&over.Limits.RcptPerTransaction, "rcpt-per-transaction", over.Limits.RcptPerTransaction, "RCPT TO per transaction before RSET")
	fs.IntVar(&over.Limits.RcptPerConnection, "rcpt-per-connection", over.Limits.RcptPerConnection, "RCPT TO per connection before reconnecting")
	fs.Float64Var(&over.Limits.RcptPerSecondPerMX, "rcpt-rate", over.Limits.RcptPerSecondPerMX, "RCPT TO per second per MX host (0 = unlimited)")
	fs.DurationVar(&over.Retry.MaxWait, "max-wait", over.Retry.MaxWait, "longest total wait for delayed retries of one address (0 = no retries)")
	fs.BoolVar(&over.Output.FormulaSafe, "formula-safe", over.Output.FormulaSafe, "escape every CSV cell a spreadsheet would run as a formula, input columns and addresses included")
	fs.StringVar(&over.Signals.DisposableFile, "disposable-list", over.Signals.DisposableFile, "`FILE` of disposable domains, one per line (extends the built-in list; signals.disposable_mode)")
	fs.StringVar(&over.Signals.FreeFile, "free-list", over.Signals.FreeFile, "`FILE` of free webmail domains, one per line (extends the built-in list; signals.free_mode)")
	fs.StringVar(&over.Signals.RoleFile, "role-list", over.Signals.RoleFile, "`FILE` of role local parts, one per line (extends the built-in list; signals.role_mode)")
	addStoreRunFlags(fs, rf.shared)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs, rf
}

// oneArgument parses the flags of a command that takes exactly one argument
// (what names it for the message). When ok is false the command ends with
// code: the help was asked for, or the call was wrong and has been told so.
func oneArgument(fs *flag.FlagSet, args []string, what string, stderr io.Writer) (arg string, code int, ok bool) {
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return "", exitOK, false
	}
	if err != nil {
		return "", exitUsage, false // the flag package has printed the problem
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "bulkverify %s: want exactly one %s, got %d\n", fs.Name(), what, len(positional))
		fs.Usage()
		return "", exitUsage, false
	}
	return positional[0], exitOK, true
}

// noArguments parses the flags of a command that takes no argument (cmd
// names it in the message). When ok is false the command ends with code:
// the help was asked for, or the call was wrong and has been told so.
func noArguments(fs *flag.FlagSet, args []string, cmd string, stderr io.Writer) (code int, ok bool) {
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK, false
	}
	if err != nil {
		return exitUsage, false // the flag package has printed the problem
	}
	if len(positional) != 0 {
		fmt.Fprintf(stderr, "bulkverify %s: takes no arguments, got %q\n", cmd, positional)
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// parseInterspersed lets flags come after the input file, as in
// "bulkverify verify leads.csv -o results.csv", which the flag package
// alone does not allow.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func runVerify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, rf := newRunFlagSet("verify", "bulkverify verify [flags] INPUT.csv", stderr)
	natsURL := fs.String("nats", "", "coordinate a cluster job: workers on NATS JetStream at `URL` do the probing (see \"bulkverify worker\"; default: probe here)")
	return runFile(ctx, fs, rf, args, stdin, stdout, stderr, func(ctx context.Context, cfg configs.Config) job {
		if *natsURL != "" {
			return clusterVerifyJob(cfg, rf, *natsURL, stderr)
		}
		return job{
			input:   input.Options{Column: cfg.Input.Column},
			command: "verify",
			run: func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, stdout io.Writer, tick func(report.Row)) (sum pipeline.Summary, err error) {
				out, err := openSink[output.Result](rf, src.Header(), stdout, pcfg.TempDir, csvOptions(cfg))
				if err != nil {
					return sum, err
				}
				defer func() {
					if cerr := out.close(); cerr != nil && err == nil {
						err = fmt.Errorf("writing %s: %w", rf.output, cerr)
					}
				}()
				pcfg.Skip = out.done.Has
				pcfg.Checkpoint = out.sync
				pcfg.OnResult = func(r output.Result) { tick(reportRow(r)) }
				return pipeline.Run(ctx, pcfg, res, src, out.sink)
			},
		}
	})
}

// job is what differs between the commands that process a whole file.
type job struct {
	input   input.Options
	run     func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, stdout io.Writer, tick func(report.Row)) (pipeline.Summary, error)
	command string // "verify" or "find", for the report
	err     error  // a problem found while preparing the job (e.g. a bad patterns file)
	// wrapInput, when set, wraps the input as it is read (verify --nats
	// hashes it to name its job).
	wrapInput func(io.Reader) io.Reader
	// prepare, when set, may change the config after the resolver is made
	// and before the run is prepared (verify --nats: its own preflight, no
	// local store).
	prepare func(ctx context.Context, cfg *configs.Config, res *resolve.Resolver, stderr io.Writer) error
}

// runFile parses the flags and runs the job that makeJob builds over the one
// input file named on the command line, with the progress bar, the summary
// and the exit code every such command has.
func runFile(ctx context.Context, fs *flag.FlagSet, rf *runFlags, args []string, stdin io.Reader, stdout, stderr io.Writer,
	makeJob func(context.Context, configs.Config) job) int {
	inPath, code, ok := oneArgument(fs, args, "input file", stderr)
	if !ok {
		return code
	}
	err := runJob(ctx, rf, fs, inPath, stdin, stdout, stderr, makeJob)
	if err != nil && exitCode(ctx, err) != exitInterrupted { // an interruption has had its say
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
	}
	return exitCode(ctx, err)
}

func runJob(ctx context.Context, rf *runFlags, fs *flag.FlagSet, inPath string, stdin io.Reader, stdout, stderr io.Writer,
	makeJob func(context.Context, configs.Config) job) error {
	cfg, err := rf.shared.config(fs)
	if err != nil {
		return err
	}
	if rf.format != "csv" && rf.format != "jsonl" {
		return usageError{fmt.Errorf("unknown --format %q (want csv or jsonl)", rf.format)}
	}
	if rf.signals, err = loadSignals(cfg, time.Now(), stderr); err != nil {
		return err
	}
	j := makeJob(ctx, cfg)
	if j.err != nil {
		return j.err
	}

	stopSandbox, err := rf.shared.prepare(ctx, &cfg, stderr)
	if err != nil {
		return err
	}
	defer stopSandbox()

	in, closeIn, err := openInput(inPath, stdin)
	if err != nil {
		return usageError{err}
	}
	defer closeIn()
	if j.wrapInput != nil {
		in = j.wrapInput(in)
	}
	src, err := input.NewReader(in, j.input)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", inPath, err)}
	}

	res, err := newResolver(cfg)
	if err != nil {
		return err
	}
	if j.prepare != nil {
		if err := j.prepare(ctx, &cfg, res, stderr); err != nil {
			return err
		}
	}

	if rf.resume && rf.output == "-" {
		return usageError{errors.New("--resume needs an output file (-o FILE): it continues that file")}
	}
	pcfg := pipelineConfig(cfg)
	pcfg.Signals = rf.signals
	rt, err := prepareRun(ctx, cfg, &pcfg, res, stderr)
	if err != nil {
		return err
	}
	st, err := openRunStore(cfg.Store)
	if err != nil {
		return err
	}
	if st != nil {
		defer func() {
			if err := st.Close(); err != nil {
				fmt.Fprintf(stderr, "bulkverify: warning: closing the verdict store %s: %v (the output is complete; the verdicts of this run's last second may not be remembered)\n", st.Path(), err)
			}
		}()
		pcfg.Store = st
		pcfg.StoreNamespaces = runNamespaces(cfg.Store)
		pcfg.Refresh = cfg.Store.Refresh
		pcfg.RefusalMemory = cfg.Store.RefusalMemory
		pcfg.OnStoreError = func(err error) {
			fmt.Fprintf(stderr, "bulkverify: warning: the verdict store %s failed: %v; this run goes on without it (its output is complete, but what it learns is not remembered)\n", st.Path(), err)
		}
	}
	bar := newProgress(rf.progress, stderr)
	pcfg.OnTotal = bar.start
	var tally report.Tally
	started := time.Now()
	summary, runErr := j.run(ctx, pcfg, res, src, stdout, func(r report.Row) {
		bar.row()
		if rf.report != "" {
			tally.Add(r)
		}
	})
	bar.finish()
	summary.Refusals = rt.pool.Refusals()
	if rf.report != "" {
		data := reportData(j.command, inPath, started, summary, &tally, cfg, rf.signals)
		summary.Report = &data
		if err := report.WriteFile(rf.report, data); err != nil && runErr == nil {
			runErr = fmt.Errorf("writing the report: %w", err)
		}
	}
	var pe *input.ParseError
	var he *input.HeaderError
	var re *output.RecoverError
	if errors.As(runErr, &pe) || errors.As(runErr, &he) || errors.As(runErr, &re) {
		runErr = usageError{fmt.Errorf("%s: %w", inPath, runErr)}
	}
	printSummary(stderr, summary)
	if rf.summary != "" {
		if err := writeSummary(rf.summary, summary); err != nil && runErr == nil {
			runErr = err
		}
	}
	switch {
	case ctx.Err() == nil:
	case rf.output != "-":
		fmt.Fprintf(stderr, "interrupted: the rows decided so far are in %s; to finish, run the same command with --resume\n", rf.output)
	default:
		fmt.Fprintln(stderr, "interrupted: the rows decided so far were written")
	}
	return runErr
}

func pipelineConfig(cfg configs.Config) pipeline.Config {
	return pipeline.Config{
		Probe:                 probeConfig(cfg),
		SMTPPort:              cfg.SMTP.Port,
		IdleTimeout:           cfg.SMTP.IdleTimeout,
		MaxConnections:        cfg.Limits.MaxConnections,
		MaxConnectionsPerHost: cfg.Limits.MaxConnectionsPerMX,
		NewConnectionBacklog:  cfg.Limits.NewConnectionBacklog,
		RcptPerTransaction:    cfg.Limits.RcptPerTransaction,
		RcptPerConnection:     cfg.Limits.RcptPerConnection,
		MaxAttempts:           cfg.Limits.MaxAttempts,
		DNSWorkers:            cfg.DNS.Workers,
		RcptRate:              cfg.Limits.RcptPerSecondPerMX,
		CommandPause:          cfg.Limits.CommandPause,
		RetryDelay:            cfg.Retry.Delay,
		RetryRounds:           cfg.Retry.Rounds,
		MaxWait:               cfg.Retry.MaxWait,
		NoCatchAllCheck:       !cfg.SMTP.CatchAllCheck,
		NoPositiveControl:     !cfg.SMTP.PositiveControl,
		ControlThreshold:      cfg.SMTP.ControlMin,
		MemoryRows:            cfg.Limits.MemoryRows,
		TempDir:               cfg.Limits.TempDir,
	}
}

func openInput(path string, stdin io.Reader) (io.Reader, func(), error) {
	if path == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// sinkFile is an opened output: the writer of rows, the rows it already
// holds (when resuming), and how to make it durable and close it.
type sinkFile[T output.Row[T]] struct {
	sink  output.RowWriter[T]
	done  *output.Done
	sync  func() error
	close func() error
}

// openSink opens the output for rows of T: stdout, a new file, or with
// --resume the existing file after recovering its complete rows; with
// --keep-order, behind a writer that restores input order.
func openSink[T output.Row[T]](rf *runFlags, header []string, stdout io.Writer, tempDir string, csvOpts []output.CSVOption) (*sinkFile[T], error) {
	out := &sinkFile[T]{done: &output.Done{}, sync: func() error { return nil }, close: func() error { return nil }}
	var w io.Writer = stdout
	fresh := true
	switch {
	case rf.output == "-":
	case rf.resume:
		if st, err := os.Stat(rf.output); err == nil && !st.Mode().IsRegular() {
			return nil, usageError{fmt.Errorf("--resume needs a regular file to continue; %s is not one", rf.output)}
		}
		f, done, isFresh, err := output.Recover(rf.output, rf.format, output.CSVHeader[T](header, csvOpts...))
		if err != nil {
			return nil, err
		}
		w, out.done, fresh = f, done, isFresh
		out.sync, out.close = syncer(f), f.Close
	default:
		f, err := os.Create(rf.output)
		if err != nil {
			// Exit 1, as the README says of an output that cannot be
			// written: the command line was right.
			return nil, fmt.Errorf("writing %s: %w", rf.output, err)
		}
		w, out.sync, out.close = f, syncer(f), f.Close
	}
	var err error
	switch {
	case rf.format == "jsonl":
		out.sink, err = output.NewJSONLOf[T](w, header)
	case fresh:
		out.sink, err = output.NewCSVOf[T](w, header, csvOpts...)
	default:
		out.sink, err = output.AppendCSVOf[T](w, header, csvOpts...)
	}
	if err == nil && rf.keepOrder {
		var ordered *output.Ordered[T]
		ordered, err = output.NewOrdered(out.sink, tempDir, out.done)
		if err == nil {
			closeFile := out.close
			out.sink = ordered
			out.close = func() error {
				ordered.Close()
				return closeFile()
			}
		}
	}
	if err != nil {
		out.close()
		return nil, fmt.Errorf("writing %s: %w", rf.output, err)
	}
	return out, nil
}

// csvOptions are the CSV writer options cfg asks for.
func csvOptions(cfg configs.Config) []output.CSVOption {
	if cfg.Output.FormulaSafe {
		return []output.CSVOption{output.FormulaSafe()}
	}
	return nil
}

// syncer makes f durable at each checkpoint when it is a regular file. A
// device (/dev/null, /dev/stdout), a pipe or a FIFO (-o >(gzip > out.gz))
// has nothing to sync to, and fsync fails on them: the rows are still
// written, and that is all durability can mean there.
func syncer(f *os.File) func() error {
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return func() error { return nil }
	}
	return f.Sync
}

func writeSummary(path string, s pipeline.Summary) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the summary: %w", err)
	}
	return nil
}

func printSummary(w io.Writer, s pipeline.Summary) {
	if s.Rows == 0 && len(s.ByStatus) == 0 {
		return
	}
	conns := fmt.Sprintf("%d SMTP connections", s.Connections)
	if s.Distributed {
		conns = "probed by the cluster's workers (bulkverify cluster status)"
	}
	fmt.Fprintf(w, "%d rows, %d addresses, %d domains, %d MX hosts, %s, %s\n",
		s.Rows, s.Addresses, s.Domains, s.MXHosts, conns, s.Duration.Round(time.Millisecond))
	if s.Stored > 0 {
		fmt.Fprintf(w, "  %s decided now, %d reused from the verdict store (source=stored)\n", plural(s.Probed, "row"), s.Stored)
	}
	fmt.Fprintf(w, "  %s\n", countsLine(s.ByStatus))
	fmt.Fprintf(w, "  reasons: %s\n", countsLine(s.ByReason))
	for _, r := range s.Refusals {
		fmt.Fprintf(w, "  REFUSED: %s refused egress %s (%s): not asked again from it this run\n", r.Operator, r.Egress, r.Reason)
	}
}

// plural is "1 row", "2 rows".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func countsLine(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// progress is the optional progress bar; every method is a no-op when it is off.
// Its methods are called from one goroutine (pipeline.Config.OnTotal's and
// OnResult's).
type progress struct {
	w     io.Writer
	on    bool
	bar   *progressbar.ProgressBar
	early int // rows written before the total was known (answered by the store)
}

func newProgress(mode string, stderr io.Writer) *progress {
	on := mode == "on"
	if mode == "auto" {
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			on = true
		}
	}
	return &progress{w: stderr, on: on}
}

func (p *progress) start(total int) {
	if !p.on {
		return
	}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("verifying"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	if p.early > 0 {
		p.bar.Add(p.early)
	}
}

func (p *progress) row() {
	switch {
	case p.bar != nil:
		p.bar.Add(1)
	case p.on:
		p.early++
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
