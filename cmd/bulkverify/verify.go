package main

import (
	"context"
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
	"github.com/bulkverify/bulkverify/resolve"
)

// runFlags are the flags of the commands that process a whole file
// (verify, find) beyond the shared ones.
type runFlags struct {
	output, format, progress string
	shared                   *sharedFlags
}

func newRunFlagSet(name, usageLine string, stderr io.Writer) (*flag.FlagSet, *runFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rf := &runFlags{}
	fs.StringVar(&rf.output, "o", "-", "output file (`FILE`, \"-\" = stdout)")
	fs.StringVar(&rf.output, "output", "-", "same as -o")
	fs.StringVar(&rf.format, "format", "csv", "output format: csv or jsonl")
	fs.StringVar(&rf.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), on, off")
	rf.shared = addSharedFlags(fs)
	over := &rf.shared.over
	fs.StringVar(&over.Input.Column, "column", over.Input.Column, "name of the input `column` to read (default: detect)")
	fs.IntVar(&over.Limits.MaxConnections, "max-connections", over.Limits.MaxConnections, "simultaneous SMTP connections in total")
	fs.IntVar(&over.Limits.MaxConnectionsPerMX, "max-per-mx", over.Limits.MaxConnectionsPerMX, "simultaneous SMTP connections per MX host")
	fs.IntVar(&over.Limits.RcptPerTransaction, "rcpt-per-transaction", over.Limits.RcptPerTransaction, "RCPT TO per transaction before RSET")
	fs.IntVar(&over.Limits.RcptPerConnection, "rcpt-per-connection", over.Limits.RcptPerConnection, "RCPT TO per connection before reconnecting")
	fs.Float64Var(&over.Limits.RcptPerSecondPerMX, "rcpt-rate", over.Limits.RcptPerSecondPerMX, "RCPT TO per second per MX host (0 = unlimited)")
	fs.DurationVar(&over.Retry.MaxWait, "max-wait", over.Retry.MaxWait, "longest total wait for delayed retries of one address (0 = no retries)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs, rf
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
	return runFile(ctx, fs, rf, args, stdin, stdout, stderr, func(ctx context.Context, cfg configs.Config) job {
		return job{
			input: input.Options{Column: cfg.Input.Column},
			run: func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, out io.Writer, tick func()) (pipeline.Summary, error) {
				sink, err := newRowWriter[output.Result](rf.format, out, src.Header())
				if err != nil {
					return pipeline.Summary{}, fmt.Errorf("writing %s: %w", rf.output, err)
				}
				pcfg.OnResult = func(output.Result) { tick() }
				return pipeline.Run(ctx, pcfg, res, src, sink)
			},
		}
	})
}

// job is what differs between the commands that process a whole file.
type job struct {
	input input.Options
	run   func(ctx context.Context, pcfg pipeline.Config, res *resolve.Resolver, src *input.Reader, out io.Writer, tick func()) (pipeline.Summary, error)
	err   error // a problem found while preparing the job (e.g. a bad patterns file)
}

// runFile parses the flags and runs the job that makeJob builds over the one
// input file named on the command line, with the progress bar, the summary
// and the exit code every such command has.
func runFile(ctx context.Context, fs *flag.FlagSet, rf *runFlags, args []string, stdin io.Reader, stdout, stderr io.Writer,
	makeJob func(context.Context, configs.Config) job) int {
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // the flag package has printed the problem
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "bulkverify %s: want exactly one input file, got %d\n", fs.Name(), len(positional))
		fs.Usage()
		return exitUsage
	}
	err = runJob(ctx, rf, fs, positional[0], stdin, stdout, stderr, makeJob)
	if err != nil {
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
	src, err := input.NewReader(in, j.input)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", inPath, err)}
	}

	res, err := newResolver(cfg)
	if err != nil {
		return err
	}

	out, closeOut, err := openOutput(rf.output, stdout)
	if err != nil {
		return usageError{err}
	}
	pcfg := pipelineConfig(cfg)
	bar := newProgress(rf.progress, stderr)
	pcfg.OnTotal = bar.start
	summary, runErr := j.run(ctx, pcfg, res, src, out, bar.row)
	bar.finish()
	if err := closeOut(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing %s: %w", rf.output, err)
	}
	var pe *input.ParseError
	var he *input.HeaderError
	if errors.As(runErr, &pe) || errors.As(runErr, &he) {
		runErr = usageError{fmt.Errorf("%s: %w", inPath, runErr)}
	}
	printSummary(stderr, summary)
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

func openOutput(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

func printSummary(w io.Writer, s pipeline.Summary) {
	if s.Rows == 0 && len(s.ByStatus) == 0 {
		return
	}
	fmt.Fprintf(w, "%d rows, %d addresses, %d domains, %d MX hosts, %d SMTP connections, %s\n",
		s.Rows, s.Addresses, s.Domains, s.MXHosts, s.Connections, s.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "  %s\n", countsLine(s.ByStatus))
	fmt.Fprintf(w, "  reasons: %s\n", countsLine(s.ByReason))
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
type progress struct {
	w   io.Writer
	on  bool
	bar *progressbar.ProgressBar
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
}

func (p *progress) row() {
	if p.bar != nil {
		p.bar.Add(1)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
