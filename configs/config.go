package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/store"
)

//go:embed bulkverify.yaml
var defaultYAML []byte

// Config is every setting bulkverify reads from a config file. The field
// comments live in bulkverify.yaml, which is the user-facing documentation.
type Config struct {
	SMTP    SMTP    `yaml:"smtp"`
	Limits  Limits  `yaml:"limits"`
	Retry   Retry   `yaml:"retry"`
	DNS     DNS     `yaml:"dns"`
	Input   Input   `yaml:"input"`
	Output  Output  `yaml:"output"`
	Egress  Egress  `yaml:"egress"`
	Signals Signals `yaml:"signals"`
	Replies Replies `yaml:"replies"`
	Store   Store   `yaml:"store"`
	Cluster Cluster `yaml:"cluster"`

	Operators  Operators  `yaml:"operators"`
	DoNotProbe DoNotProbe `yaml:"do_not_probe"`
}

// Operators names a user's table of mail operators.
type Operators struct {
	File string `yaml:"file"`
}

// DoNotProbe lists what must not be asked anything.
type DoNotProbe struct {
	Domains   []string `yaml:"domains"`
	Operators []string `yaml:"operators"`
	File      string   `yaml:"file"`
}

// Replies holds the settings of the reading of servers' replies.
type Replies struct {
	File string `yaml:"file"`
}

// SMTP holds the settings of the probing SMTP client.
type SMTP struct {
	HeloName        string        `yaml:"helo_name"`
	MailFrom        string        `yaml:"mail_from"`
	Port            int           `yaml:"port"`
	ConnectTimeout  time.Duration `yaml:"connect_timeout"`
	GreetingTimeout time.Duration `yaml:"greeting_timeout"`
	CommandTimeout  time.Duration `yaml:"command_timeout"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	TLS             string        `yaml:"tls"`
	CatchAllCheck   bool          `yaml:"catch_all_check"`
	PositiveControl bool          `yaml:"positive_control"`
	ControlMin      int           `yaml:"positive_control_min"`
}

// Limits holds the politeness and concurrency bounds.
type Limits struct {
	MaxConnections       int           `yaml:"max_connections"`
	MaxConnectionsPerMX  int           `yaml:"max_connections_per_mx"`
	NewConnectionBacklog int           `yaml:"new_connection_backlog"`
	RcptPerTransaction   int           `yaml:"rcpt_per_transaction"`
	RcptPerConnection    int           `yaml:"rcpt_per_connection"`
	MaxAttempts          int           `yaml:"max_attempts"`
	RcptPerSecondPerMX   float64       `yaml:"rcpt_per_second_per_mx"`
	CommandPause         time.Duration `yaml:"command_pause"`
	MemoryRows           int           `yaml:"memory_rows"`
	TempDir              string        `yaml:"temp_dir"`
	PushbackWindow       int           `yaml:"pushback_window"`
	PushbackShare        float64       `yaml:"pushback_share"`
	PushbackMaxPause     time.Duration `yaml:"pushback_max_pause"`
}

// Retry holds the delayed-retry schedule for temporary answers.
type Retry struct {
	Delay   time.Duration `yaml:"delay"`
	Rounds  int           `yaml:"rounds"`
	MaxWait time.Duration `yaml:"max_wait"`
}

// DNS holds the resolver settings.
type DNS struct {
	Resolver  string        `yaml:"resolver"`
	Timeout   time.Duration `yaml:"timeout"`
	Attempts  int           `yaml:"attempts"`
	CacheSize int           `yaml:"cache_size"`
	Workers   int           `yaml:"workers"`
}

// Output holds the settings of the result writers.
type Output struct {
	FormulaSafe bool `yaml:"formula_safe"`
}

// Input holds the settings of the CSV reader.
type Input struct {
	Column string `yaml:"column"`
}

// Egress holds where connections leave from (source addresses, SOCKS5
// proxies), the preflights and circuit breakers of a run, and what
// `bulkverify doctor` checks.
type Egress struct {
	SourceIPs            []string          `yaml:"source_ips"`
	Proxies              []string          `yaml:"proxies"`
	FailureThreshold     int               `yaml:"failure_threshold"`
	CoolDown             time.Duration     `yaml:"cool_down"`
	MaxCoolDown          time.Duration     `yaml:"max_cool_down"`
	Preflight            bool              `yaml:"preflight"`
	PreflightTimeout     time.Duration     `yaml:"preflight_timeout"`
	CanaryDomains        []string          `yaml:"canary_domains"`
	DNSCanaryDomains     []string          `yaml:"dns_canary_domains"`
	BreakerMinHosts      int               `yaml:"breaker_min_hosts"`
	BreakerHostShare     float64           `yaml:"breaker_host_failure_share"`
	BreakerMinDomains    int               `yaml:"breaker_min_domains"`
	BreakerNXDomainShare float64           `yaml:"breaker_nxdomain_share"`
	BreakerWindow        int               `yaml:"breaker_window"`
	PublicAddresses      map[string]string `yaml:"public_addresses"`
	PublicAddressNames   []string          `yaml:"public_address_names"`
	DNSBLZones           []string          `yaml:"dnsbl_zones"`
	SpamhausDQSKey       string            `yaml:"spamhaus_dqs_key"`
}

// Signals holds the settings of the offline list-cleaning signals
// (disposable, free and role lists, typo suggestions). The modes are
// "extend" or "replace", as the signals package names them.
type Signals struct {
	DisposableFile   string        `yaml:"disposable_file"`
	DisposableMode   string        `yaml:"disposable_mode"`
	DisposableMaxAge time.Duration `yaml:"disposable_max_age"`
	FreeFile         string        `yaml:"free_file"`
	FreeMode         string        `yaml:"free_mode"`
	RoleFile         string        `yaml:"role_file"`
	RoleMode         string        `yaml:"role_mode"`
	Typos            bool          `yaml:"typos"`
}

// Store holds the settings of the verdict store (package store).
type Store struct {
	Enabled          bool                     `yaml:"enabled"`
	Path             string                   `yaml:"path"`
	Namespace        string                   `yaml:"namespace"`
	SharedNamespaces []string                 `yaml:"shared_namespaces"`
	Retention        time.Duration            `yaml:"retention"`
	Fresh            map[string]time.Duration `yaml:"fresh"`
	FreshReasons     map[string]time.Duration `yaml:"fresh_reasons"`
	CatchAllFresh    time.Duration            `yaml:"catch_all_fresh"`
	RefusalMemory    time.Duration            `yaml:"refusal_memory"`
	MaxAge           time.Duration            `yaml:"max_age"`
	Refresh          bool                     `yaml:"refresh"`
}

// DefaultYAML returns the documented default configuration file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default returns the built-in defaults, which are exactly bulkverify.yaml.
func Default() Config {
	c, err := parse(Config{}, defaultYAML)
	if err != nil {
		// The file is embedded at build time and covered by tests.
		panic("configs: embedded bulkverify.yaml is invalid: " + err.Error())
	}
	return c
}

// Load reads the config file at path over the defaults: options the file
// leaves out keep their default. Unknown keys are an error, so a typo does not
// silently fall back to a default.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	c, err := parse(Default(), data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func parse(base Config, data []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&base); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	if err := base.Validate(); err != nil {
		return Config{}, err
	}
	return base, nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	positive := []struct {
		name  string
		value int64
	}{
		{"smtp.port", int64(c.SMTP.Port)},
		{"smtp.connect_timeout", int64(c.SMTP.ConnectTimeout)},
		{"smtp.greeting_timeout", int64(c.SMTP.GreetingTimeout)},
		{"smtp.command_timeout", int64(c.SMTP.CommandTimeout)},
		{"limits.max_connections", int64(c.Limits.MaxConnections)},
		{"limits.max_connections_per_mx", int64(c.Limits.MaxConnectionsPerMX)},
		{"limits.new_connection_backlog", int64(c.Limits.NewConnectionBacklog)},
		{"limits.rcpt_per_transaction", int64(c.Limits.RcptPerTransaction)},
		{"limits.rcpt_per_connection", int64(c.Limits.RcptPerConnection)},
		{"limits.max_attempts", int64(c.Limits.MaxAttempts)},
		{"dns.timeout", int64(c.DNS.Timeout)},
		{"dns.attempts", int64(c.DNS.Attempts)},
		{"dns.cache_size", int64(c.DNS.CacheSize)},
		{"dns.workers", int64(c.DNS.Workers)},
		{"limits.memory_rows", int64(c.Limits.MemoryRows)},
		{"smtp.positive_control_min", int64(c.SMTP.ControlMin)},
		{"limits.pushback_window", int64(c.Limits.PushbackWindow)},
		{"limits.pushback_max_pause", int64(c.Limits.PushbackMaxPause)},
		{"egress.failure_threshold", int64(c.Egress.FailureThreshold)},
		{"egress.cool_down", int64(c.Egress.CoolDown)},
		{"egress.max_cool_down", int64(c.Egress.MaxCoolDown)},
		{"egress.preflight_timeout", int64(c.Egress.PreflightTimeout)},
		{"egress.breaker_min_hosts", int64(c.Egress.BreakerMinHosts)},
		{"egress.breaker_min_domains", int64(c.Egress.BreakerMinDomains)},
		{"egress.breaker_window", int64(c.Egress.BreakerWindow)},
	}
	for _, p := range positive {
		if p.value <= 0 {
			return fmt.Errorf("%s must be positive", p.name)
		}
	}
	if c.SMTP.Port > 65535 {
		return fmt.Errorf("smtp.port %d is not a TCP port", c.SMTP.Port)
	}
	nonNegative := []struct {
		name  string
		value float64
	}{
		{"smtp.idle_timeout", float64(c.SMTP.IdleTimeout)},
		{"limits.rcpt_per_second_per_mx", c.Limits.RcptPerSecondPerMX},
		{"limits.command_pause", float64(c.Limits.CommandPause)},
		{"retry.delay", float64(c.Retry.Delay)},
		{"retry.rounds", float64(c.Retry.Rounds)},
		{"retry.max_wait", float64(c.Retry.MaxWait)},
		{"signals.disposable_max_age", float64(c.Signals.DisposableMaxAge)},
	}
	for _, n := range nonNegative {
		if n.value < 0 {
			return fmt.Errorf("%s must not be negative", n.name)
		}
	}
	switch c.SMTP.TLS {
	case "opportunistic", "require", "off":
	default:
		return fmt.Errorf("smtp.tls is %q; want opportunistic, require or off", c.SMTP.TLS)
	}
	if c.Limits.PushbackShare <= 0 || c.Limits.PushbackShare > 1 {
		return fmt.Errorf("limits.pushback_share %v is not a share between 0 (excluded) and 1", c.Limits.PushbackShare)
	}
	for _, m := range []struct{ name, value string }{
		{"signals.disposable_mode", c.Signals.DisposableMode},
		{"signals.free_mode", c.Signals.FreeMode},
		{"signals.role_mode", c.Signals.RoleMode},
	} {
		if m.value != "extend" && m.value != "replace" {
			return fmt.Errorf("%s is %q; want extend or replace", m.name, m.value)
		}
	}
	if err := c.Cluster.validate(); err != nil {
		return err
	}
	if err := c.Egress.validate(); err != nil {
		return err
	}
	return c.Store.validate()
}

// validate checks the egress section without touching the network, and
// without reading the environment variables proxy URLs may refer to.
func (e Egress) validate() error {
	if e.MaxCoolDown < e.CoolDown {
		return fmt.Errorf("egress.max_cool_down %v is shorter than egress.cool_down %v", e.MaxCoolDown, e.CoolDown)
	}
	for _, share := range []struct {
		name  string
		value float64
	}{
		{"egress.breaker_host_failure_share", e.BreakerHostShare},
		{"egress.breaker_nxdomain_share", e.BreakerNXDomainShare},
	} {
		if share.value <= 0 || share.value > 1 {
			return fmt.Errorf("%s %v is not a share between 0 (excluded) and 1", share.name, share.value)
		}
	}
	for _, s := range e.SourceIPs {
		if err := egress.CheckSourceIP(s); err != nil {
			return fmt.Errorf("egress.source_ips: %w", err)
		}
	}
	for _, p := range e.Proxies {
		if err := egress.CheckProxy(p); err != nil {
			return fmt.Errorf("egress.proxies: %w", err)
		}
	}
	for name, a := range e.PublicAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("egress.public_addresses: %q for %s is not an IP address", a, name)
		}
	}
	for _, n := range e.PublicAddressNames {
		if _, _, _, err := egress.ParseAddressName(n); err != nil {
			return fmt.Errorf("egress.public_address_names: %w", err)
		}
	}
	for _, list := range []struct {
		name  string
		items []string
	}{
		{"egress.canary_domains", e.CanaryDomains},
		{"egress.dns_canary_domains", e.DNSCanaryDomains},
		{"egress.dnsbl_zones", e.DNSBLZones},
	} {
		for _, d := range list.items {
			if d == "" || strings.ContainsAny(d, " \t/@") {
				return fmt.Errorf("%s: %q is not a domain name", list.name, d)
			}
		}
	}
	return nil
}

func (s Store) validate() error {
	if err := store.ValidateNamespace(s.Namespace); err != nil {
		return fmt.Errorf("store.namespace: %w", err)
	}
	for _, ns := range s.SharedNamespaces {
		if err := store.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("store.shared_namespaces: %w", err)
		}
	}
	if s.Retention <= 0 {
		return errors.New("store.retention must be positive")
	}
	if s.CatchAllFresh < 0 || s.MaxAge < 0 || s.RefusalMemory < 0 {
		return errors.New("store.catch_all_fresh, store.max_age and store.refusal_memory must not be negative")
	}
	statuses := store.DefaultByStatus()
	for status, d := range s.Fresh {
		if _, ok := statuses[status]; !ok {
			return fmt.Errorf("store.fresh: unknown status %q (want deliverable, undeliverable, risky, unknown or invalid)", status)
		}
		if d < 0 {
			return fmt.Errorf("store.fresh.%s must not be negative", status)
		}
	}
	for reason, d := range s.FreshReasons {
		if d < 0 {
			return fmt.Errorf("store.fresh_reasons.%s must not be negative", reason)
		}
	}
	return nil
}

// Options returns the store options these settings mean.
func (s Store) Options() store.Options {
	return store.Options{
		Retention: s.Retention,
		Freshness: store.Freshness{
			ByStatus: s.Fresh,
			ByReason: s.FreshReasons,
			CatchAll: s.CatchAllFresh,
			MaxAge:   s.MaxAge,
			Refresh:  s.Refresh,
		},
	}
}
