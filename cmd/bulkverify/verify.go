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
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// verifyFlags are the flags of "bulkverify verify". Flags that the user set
// override the config file; the rest leave it alone.
type verifyFlags struct {
	output, format, configPath, progress string
	sandbox                              bool

	cfg configs.Config // config file values, overridden by set flags
}

func newVerifyFlagSet(stderr io.Writer) (*flag.FlagSet, *verifyFlags, *configs.Config) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vf := &verifyFlags{}
	// Flag values land in over; only the ones the user set are copied into
	// the loaded config afterwards.
	over := configs.Default()
	fs.StringVar(&vf.output, "o", "-", "output file (`FILE`, \"-\" = stdout)")
	fs.StringVar(&vf.output, "output", "-", "same as -o")
	fs.StringVar(&vf.format, "format", "csv", "output format: csv or jsonl")
	fs.StringVar(&vf.configPath, "config", os.Getenv("BULKVERIFY_CONFIG"), "config `FILE` (default $BULKVERIFY_CONFIG; see \"bulkverify config\")")
	fs.StringVar(&vf.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), on, off")
	fs.BoolVar(&vf.sandbox, "sandbox", false, "verify against the built-in simulated mail world (no internet needed)")
	fs.StringVar(&over.Input.Column, "column", over.Input.Column, "name of the address `column` (default: detect)")
	fs.StringVar(&over.DNS.Resolver, "resolver", over.DNS.Resolver, "DNS resolver `host:port` (default: /etc/resolv.conf)")
	fs.StringVar(&over.SMTP.HeloName, "helo", over.SMTP.HeloName, "`name` sent in EHLO/HELO (default: host name)")
	fs.StringVar(&over.SMTP.MailFrom, "mail-from", over.SMTP.MailFrom, "envelope sender `address` for MAIL FROM (default: null sender <>)")
	fs.IntVar(&over.SMTP.Port, "port", over.SMTP.Port, "SMTP `port` of the mail exchangers")
	fs.DurationVar(&over.SMTP.ConnectTimeout, "connect-timeout", over.SMTP.ConnectTimeout, "TCP connect timeout")
	fs.DurationVar(&over.SMTP.CommandTimeout, "timeout", over.SMTP.CommandTimeout, "time allowed for each SMTP reply")
	fs.IntVar(&over.Limits.MaxConnections, "max-connections", over.Limits.MaxConnections, "simultaneous SMTP connections in total")
	fs.IntVar(&over.Limits.MaxConnectionsPerMX, "max-per-mx", over.Limits.MaxConnectionsPerMX, "simultaneous SMTP connections per MX host")
	fs.IntVar(&over.Limits.RcptPerTransaction, "rcpt-per-transaction", over.Limits.RcptPerTransaction, "RCPT TO per transaction before RSET")
	fs.IntVar(&over.Limits.RcptPerConnection, "rcpt-per-connection", over.Limits.RcptPerConnection, "RCPT TO per connection before reconnecting")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify verify [flags] INPUT.csv\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs, vf, &over
}

// overlay copies the flags the user set from over into cfg.
func overlay(fs *flag.FlagSet, over, cfg *configs.Config) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "column":
			cfg.Input.Column = over.Input.Column
		case "resolver":
			cfg.DNS.Resolver = over.DNS.Resolver
		case "helo":
			cfg.SMTP.HeloName = over.SMTP.HeloName
		case "mail-from":
			cfg.SMTP.MailFrom = over.SMTP.MailFrom
		case "port":
			cfg.SMTP.Port = over.SMTP.Port
		case "connect-timeout":
			cfg.SMTP.ConnectTimeout = over.SMTP.ConnectTimeout
		case "timeout":
			cfg.SMTP.CommandTimeout = over.SMTP.CommandTimeout
		case "max-connections":
			cfg.Limits.MaxConnections = over.Limits.MaxConnections
		case "max-per-mx":
			cfg.Limits.MaxConnectionsPerMX = over.Limits.MaxConnectionsPerMX
		case "rcpt-per-transaction":
			cfg.Limits.RcptPerTransaction = over.Limits.RcptPerTransaction
		case "rcpt-per-connection":
			cfg.Limits.RcptPerConnection = over.Limits.RcptPerConnection
		}
	})
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
	fs, vf, over := newVerifyFlagSet(stderr)
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // the flag package has printed the problem
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "bulkverify verify: want exactly one input file, got %d\n", len(positional))
		fs.Usage()
		return exitUsage
	}
	err = verify(ctx, vf, fs, over, positional[0], stdin, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify: %v\n", err)
	}
	return exitCode(ctx, err)
}

func verify(ctx context.Context, vf *verifyFlags, fs *flag.FlagSet, over *configs.Config, inPath string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	cfg := configs.Default()
	if vf.configPath != "" {
		var err error
		if cfg, err = configs.Load(vf.configPath); err != nil {
			return usageError{err}
		}
	}
	overlay(fs, over, &cfg)
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if vf.format != "csv" && vf.format != "jsonl" {
		return usageError{fmt.Errorf("unknown --format %q (want csv or jsonl)", vf.format)}
	}

	if vf.sandbox {
		sim, err := mailsim.Start(ctx, mailsim.Example(), mailsim.Options{})
		if err != nil {
			return fmt.Errorf("starting the sandbox mail world: %w", err)
		}
		defer sim.Close()
		cfg.DNS.Resolver = sim.DNSAddr()
		cfg.SMTP.Port = sim.SMTPPort()
		if cfg.SMTP.HeloName == "" {
			cfg.SMTP.HeloName = "sandbox.bulkverify.test"
		}
		fmt.Fprintf(stderr, "sandbox: simulated mail world with DNS on %s and SMTP on port %d\n", sim.DNSAddr(), sim.SMTPPort())
	}
	if cfg.SMTP.HeloName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return usageError{errors.New("cannot tell the host name for HELO; set smtp.helo_name or --helo")}
		}
		cfg.SMTP.HeloName = host
	}

	in, closeIn, err := openInput(inPath, stdin)
	if err != nil {
		return usageError{err}
	}
	defer closeIn()
	src, err := input.NewReader(in, input.Options{Column: cfg.Input.Column})
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", inPath, err)}
	}

	resolverCfg := resolve.Config{Timeout: cfg.DNS.Timeout, Attempts: cfg.DNS.Attempts, CacheSize: cfg.DNS.CacheSize}
	if cfg.DNS.Resolver != "" {
		resolverCfg.Servers = []string{cfg.DNS.Resolver}
	}
	res, err := resolve.New(resolverCfg)
	if err != nil {
		return fmt.Errorf("DNS resolver: %w", err)
	}

	out, closeOut, err := openOutput(vf.output, stdout)
	if err != nil {
		return usageError{err}
	}
	var sink output.Writer
	if vf.format == "jsonl" {
		sink, err = output.NewJSONL(out, src.Header())
	} else {
		sink, err = output.NewCSV(out, src.Header())
	}
	if err != nil {
		closeOut()
		return fmt.Errorf("writing %s: %w", vf.output, err)
	}

	pcfg := pipelineConfig(cfg)
	bar := newProgress(vf.progress, stderr)
	pcfg.OnTotal = bar.start
	pcfg.OnResult = bar.row
	summary, runErr := pipeline.Run(ctx, pcfg, res, src, sink)
	bar.finish()
	if err := closeOut(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing %s: %w", vf.output, err)
	}
	var pe *input.ParseError
	if errors.As(runErr, &pe) {
		runErr = usageError{fmt.Errorf("%s: %w", inPath, runErr)}
	}
	printSummary(stderr, summary)
	return runErr
}

func pipelineConfig(cfg configs.Config) pipeline.Config {
	return pipeline.Config{
		Probe: probe.Config{
			HeloName:        cfg.SMTP.HeloName,
			MailFrom:        cfg.SMTP.MailFrom,
			ConnectTimeout:  cfg.SMTP.ConnectTimeout,
			GreetingTimeout: cfg.SMTP.GreetingTimeout,
			CommandTimeout:  cfg.SMTP.CommandTimeout,
		},
		SMTPPort:              cfg.SMTP.Port,
		IdleTimeout:           cfg.SMTP.IdleTimeout,
		MaxConnections:        cfg.Limits.MaxConnections,
		MaxConnectionsPerHost: cfg.Limits.MaxConnectionsPerMX,
		NewConnectionBacklog:  cfg.Limits.NewConnectionBacklog,
		RcptPerTransaction:    cfg.Limits.RcptPerTransaction,
		RcptPerConnection:     cfg.Limits.RcptPerConnection,
		MaxAttempts:           cfg.Limits.MaxAttempts,
		DNSWorkers:            cfg.DNS.Workers,
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

func (p *progress) row(output.Result) {
	if p.bar != nil {
		p.bar.Add(1)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
