package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// sharedFlags are the flags every command that talks to mail servers has:
// the config file, the sandbox and the SMTP/DNS settings. Flags the user set
// override the config file; the rest leave it alone.
type sharedFlags struct {
	configPath string
	sandbox    bool
	noStore    bool           // --no-store (verify, find)
	over       configs.Config // flag values; copied into the config only when set
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
	return sf
}

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
	return cfg, nil
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
		if cfg.SMTP.HeloName == "" {
			cfg.SMTP.HeloName = "sandbox.bulkverify.test"
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
