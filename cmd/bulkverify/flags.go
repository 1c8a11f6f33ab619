package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/store"
	"github.com/bulkverify/bulkverify/verdict"
)

// sharedFlags are the flags every command that talks to mail servers has:
// the config file, the sandbox and the SMTP/DNS settings. Flags the user set
// override the config file; the rest leave it alone.
type sharedFlags struct {
	configPath  string
	sandbox     bool
	noPreflight bool
	noStore     bool           // --no-store (verify, find)
	over        configs.Config // flag values; copied into the config only when set
}

func addSharedFlags(fs *flag.FlagSet) *sharedFlags {
	sf := &sharedFlags{over: configs.Default()}
	over := &sf.over
	fs.StringVar(&sf.configPath, "config", os.Getenv("BULKVERIFY_CONFIG"), "config `FILE` (default $BULKVERIFY_CONFIG; see \"bulkverify config\")")
	fs.BoolVar(&sf.sandbox, "sandbox", false, "use the built-in simulated mail world (no internet needed)")
	fs.StringVar(&over.DNS.Resolver, "resolver", over.DNS.Resolver, "DNS resolver `host:port` (default: /etc/resolv.conf)")
	fs.StringVar(&over.SMTP.HeloName, "helo", over.SMTP.HeloName, "`name` sent in EHLO/HELO (default: host name)")
	fs.StringVar(&over.SMTP.MailFrom, "mail-from", over.SMTP.MailFrom, "envelope sender `address` for MAIL FROM (default: null sender <>)")
	fs.IntVar(&over.SMTP.Port, "port", over.SMTP.Port, "SMTP `port` of the mail exchangers")
	fs.DurationVar(&over.SMTP.ConnectTimeout, "connect-timeout", over.SMTP.ConnectTimeout, "TCP connect timeout")
	fs.DurationVar(&over.SMTP.CommandTimeout, "timeout", over.SMTP.CommandTimeout, "time allowed for each SMTP reply")
	fs.StringVar(&over.SMTP.TLS, "tls", over.SMTP.TLS, "STARTTLS: opportunistic, require or off")
	fs.Var((*listFlag)(&over.Egress.Proxies), "proxy", "send through the SOCKS5 proxy `socks5://[user:password@]host:port` (repeatable; replaces egress.proxies; ${NAME} reads a secret from the environment)")
	fs.Var((*listFlag)(&over.Egress.SourceIPs), "source-ip", "send from the local `address` (repeatable, connections rotate; replaces egress.source_ips)")
	fs.StringVar(&over.Operators.File, "operators", over.Operators.File, "your table of mail operators and their limits, over the built-in one (`FILE`; see \"bulkverify operators\")")
	fs.StringVar(&over.Replies.File, "replies", over.Replies.File, "your rules for reading replies, tried before the built-in ones (`FILE`; see \"bulkverify replies\")")
	return sf
}

// addPreflightFlag adds --no-preflight, for the commands that run a list.
func addPreflightFlag(fs *flag.FlagSet, sf *sharedFlags) {
	fs.BoolVar(&sf.noPreflight, "no-preflight", false, "skip the DNS and port-25 checks before the list (egress.preflight)")
}

// listFlag is a repeatable string flag: each use adds one value.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// config loads the config file and overlays the flags the user set.
func (sf *sharedFlags) config(fs *flag.FlagSet) (configs.Config, error) {
	cfg := configs.Default()
	if sf.configPath != "" {
		var err error
		if cfg, err = configs.Load(sf.configPath); err != nil {
			return cfg, usageError{err}
		}
	}
	over := &sf.over
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
		case "tls":
			cfg.SMTP.TLS = over.SMTP.TLS
		case "replies":
			cfg.Replies.File = over.Replies.File
		case "max-wait":
			cfg.Retry.MaxWait = over.Retry.MaxWait
		case "rcpt-rate":
			cfg.Limits.RcptPerSecondPerMX = over.Limits.RcptPerSecondPerMX
		case "max-connections":
			cfg.Limits.MaxConnections = over.Limits.MaxConnections
		case "max-per-mx":
			cfg.Limits.MaxConnectionsPerMX = over.Limits.MaxConnectionsPerMX
		case "rcpt-per-transaction":
			cfg.Limits.RcptPerTransaction = over.Limits.RcptPerTransaction
		case "rcpt-per-connection":
			cfg.Limits.RcptPerConnection = over.Limits.RcptPerConnection
		case "operators":
			cfg.Operators.File = over.Operators.File
		case "formula-safe":
			cfg.Output.FormulaSafe = over.Output.FormulaSafe
		case "proxy":
			cfg.Egress.Proxies = over.Egress.Proxies
		case "source-ip":
			cfg.Egress.SourceIPs = over.Egress.SourceIPs
		case "no-preflight":
			cfg.Egress.Preflight = !sf.noPreflight
		case "disposable-list":
			cfg.Signals.DisposableFile = over.Signals.DisposableFile
		case "free-list":
			cfg.Signals.FreeFile = over.Signals.FreeFile
		case "role-list":
			cfg.Signals.RoleFile = over.Signals.RoleFile
		case "store":
			cfg.Store.Path = over.Store.Path
		case "no-store":
			cfg.Store.Enabled = !sf.noStore
		case "store-namespace":
			cfg.Store.Namespace = over.Store.Namespace
		case "max-age":
			cfg.Store.MaxAge = over.Store.MaxAge
		case "refresh":
			cfg.Store.Refresh = over.Store.Refresh
		}
	})
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	// A mistake in the replies file is found before any server is asked.
	if _, err := replyTable(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// replyTable loads the table that reads servers' replies: the built-in rules
// with the user's file (replies.file, --replies) over them.
func replyTable(cfg configs.Config) (*verdict.Table, error) {
	t, err := verdict.Load(cfg.Replies.File)
	if err != nil {
		return nil, usageError{err}
	}
	return t, nil
}

// prepare starts the sandbox when asked (pointing DNS and SMTP at it) and
// fills in the HELO name. The returned func stops the sandbox.
func (sf *sharedFlags) prepare(ctx context.Context, cfg *configs.Config, stderr io.Writer) (func(), error) {
	stop := func() {}
	if sf.sandbox {
		sim, err := mailsim.Start(ctx, mailsim.Example(), mailsim.Options{})
		if err != nil {
			return stop, fmt.Errorf("starting the sandbox mail world: %w", err)
		}
		stop = func() { sim.Close() }
		cfg.DNS.Resolver = sim.DNSAddr()
		cfg.SMTP.Port = sim.SMTPPort()
		sandboxEgress(&cfg.Egress)
		if cfg.SMTP.HeloName == "" {
			cfg.SMTP.HeloName = "sandbox.bulkverify.test"
		}
		if cfg.Store.Path == "" {
			// The simulated world's verdicts stay out of the real store,
			// but in one of their own, so that a second sandbox run shows
			// verdicts reused.
			if p, err := store.DefaultPath(); err == nil {
				cfg.Store.Path = filepath.Join(filepath.Dir(p), "sandbox-store.db")
			}
		}
		fmt.Fprintf(stderr, "sandbox: simulated mail world with DNS on %s and SMTP on port %d\n", sim.DNSAddr(), sim.SMTPPort())
	}
	if cfg.SMTP.HeloName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			stop()
			return func() {}, usageError{errors.New("cannot tell the host name for HELO; set smtp.helo_name or --helo")}
		}
		cfg.SMTP.HeloName = host
	}
	return stop, nil
}

func newResolver(cfg configs.Config) (*resolve.Resolver, error) {
	rc := resolve.Config{Timeout: cfg.DNS.Timeout, Attempts: cfg.DNS.Attempts, CacheSize: cfg.DNS.CacheSize}
	if cfg.DNS.Resolver != "" {
		rc.Servers = []string{cfg.DNS.Resolver}
	}
	res, err := resolve.New(rc)
	if err != nil {
		return nil, fmt.Errorf("DNS resolver: %w", err)
	}
	return res, nil
}

func probeConfig(cfg configs.Config) probe.Config {
	mode, err := probe.ParseTLSMode(cfg.SMTP.TLS)
	if err != nil {
		mode = probe.TLSOpportunistic // unreachable: Validate checked it
	}
	return probe.Config{
		TLS:             mode,
		HeloName:        cfg.SMTP.HeloName,
		MailFrom:        cfg.SMTP.MailFrom,
		ConnectTimeout:  cfg.SMTP.ConnectTimeout,
		GreetingTimeout: cfg.SMTP.GreetingTimeout,
		CommandTimeout:  cfg.SMTP.CommandTimeout,
	}
}

// sandboxEgress points the preflights and doctor at what the sandbox world
// publishes instead of the internet's providers and blocklists.
func sandboxEgress(e *configs.Egress) {
	w := mailsim.Example()
	e.CanaryDomains = []string{"acme.test", "globex.test", "catchall.test"}
	e.DNSCanaryDomains = e.CanaryDomains
	e.PublicAddressNames = []string{"TXT " + w.MyAddressName}
	e.DNSBLZones = nil
	for _, bl := range w.DNSBLs {
		e.DNSBLZones = append(e.DNSBLZones, bl.Zone)
	}
	e.SpamhausDQSKey = ""
}

// newPool builds the egress pool of a run from the config; it touches no
// network. Proxy secrets written ${NAME} are read from the environment.
func newPool(cfg configs.Config) (*egress.Pool, error) {
	p, err := egress.New(egress.Config{
		SourceIPs:        cfg.Egress.SourceIPs,
		Proxies:          cfg.Egress.Proxies,
		FailureThreshold: cfg.Egress.FailureThreshold,
		CoolDown:         cfg.Egress.CoolDown,
		MaxCoolDown:      cfg.Egress.MaxCoolDown,
		LookupEnv:        os.LookupEnv,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return p, nil
}
