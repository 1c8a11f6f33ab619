package pipeline

import (
	"context"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/store"
	"github.com/bulkverify/bulkverify/verdict"
)

// Config is everything one run needs besides its input, output and resolver.
type Config struct {
	Probe                 probe.Config
	Replies               *verdict.Table // reads servers' replies; nil = verdict.Default()
	SMTPPort              int            // port of the mail exchangers, 25 on the internet
	IdleTimeout           time.Duration  // how long an idle connection waits for more work before QUIT
	MaxConnections        int            // simultaneous SMTP connections in total
	MaxConnectionsPerHost int            // simultaneous SMTP connections to one MX host
	NewConnectionBacklog  int            // another connection to a host only while more than this many addresses per open connection wait
	RcptPerTransaction    int            // RCPT per MAIL transaction before RSET
	RcptPerConnection     int            // RCPT per connection before QUIT and reconnect
	MaxAttempts           int            // tries per address when connections fail under it
	DNSWorkers            int            // domains resolved in parallel

	RetryDelay      time.Duration // first delayed retry of a temporary answer (4xx, greylisting); doubles each round; 0 = no retries
	RetryRounds     int           // delayed retry rounds per address
	MaxWait         time.Duration // an address waits at most this long, in total, for retries
	RcptRate        float64       // RCPT commands per second per MX host not in the operator table; 0 = unlimited
	CommandPause    time.Duration // pause before each command (or pipelined batch)
	NoCatchAllCheck bool          // skip the one-RCPT-per-domain accept-all check
	// NoPositiveControl leaves out the RCPT postmaster@ added to a
	// transaction that asks ControlThreshold or more addresses of one
	// domain, which tells a server refusing everything from one refusing
	// mailboxes.
	NoPositiveControl bool
	ControlThreshold  int // addresses of one domain in a transaction that call for a positive control; 0 = 10

	// Operators groups MX hosts under the operators that run them: the
	// limits, the back-off and refusals of our egress apply per operator,
	// across its host names. nil = operator.Default(). A host in no entry
	// is its own operator, with MaxConnectionsPerHost and RcptRate.
	Operators *operator.Table
	// Budget hands out each operator's sessions and RCPT rate; nil = a
	// LocalBudget of this run. A cluster passes one its workers share.
	Budget egress.Budget
	// CatchAllShare, when set, asks each domain's accept-all question once
	// among every engine that shares it (a cluster's workers): a domain
	// another engine is checking waits for its answer, held acceptances
	// included, instead of asking again (catchallshare.go). nil = each run
	// asks for itself.
	CatchAllShare CatchAllShare
	// Egress is where connections leave from (source addresses, SOCKS5
	// proxies) and who refused which; nil = Probe.Dial from the system's
	// address.
	Egress *egress.Pool
	// DoNotProbe names domains and operators nothing may be asked of.
	DoNotProbe DoNotProbe
	// HostBreaker, fed each MX host's TCP outcome, and DomainBreaker, fed
	// each domain's NXDOMAIN, stop the run when they trip (port 25 blocked
	// mid-run, a resolver that started lying); nil = off.
	HostBreaker, DomainBreaker *egress.Breaker
	// Signals computes the facts about each address that need no network;
	// nil = none.
	Signals *signals.Set
	// OnRefused is called once for each egress an operator refused (its
	// reply said our address is blocked), from a worker goroutine.
	OnRefused func(egressName, operator, reason string)

	// MemoryRows bounds memory: an input of at most this many rows is
	// grouped in memory at once; a bigger one is partitioned by domain on
	// disk and loaded a part at a time into the same engine, and a host
	// that falls behind keeps the tail of its queue on disk. About 1.25 ×
	// MemoryRows addresses are in memory at most (memory.go). 0 = no limit.
	MemoryRows int
	TempDir    string // where partition and queue files go; "" = the system's

	// Store remembers verdicts between runs: a fresh stored verdict is
	// written (source "stored") instead of probing its address, a fresh
	// catch-all answer spares the domain's check, and every probed verdict,
	// catch-all answer and what was learnt about MX hosts is written back.
	// nil = no store.
	Store *store.Store
	// StoreNamespaces are the namespaces verdicts are read from: the run's
	// own first, where its verdicts are written, then shared ones; nil =
	// store.DefaultNamespace alone.
	StoreNamespaces []string
	// Refresh probes every address even when the store holds a fresh
	// verdict (the store is still written).
	Refresh bool
	// RefusalMemory is how long a refusal of one of our egresses, stored by
	// an earlier run, keeps that egress from asking the operator again; 0 =
	// 24 hours (knowledge.go says why).
	RefusalMemory time.Duration
	// OnStoreError is called once, from any goroutine, when writing to or
	// reading from the store fails; the run goes on without it.
	OnStoreError func(error)

	Skip          func(row int) bool // rows to leave out: already in the output of an earlier run
	FlushInterval time.Duration      // results are flushed (and Checkpoint called) at least this often; 0 = 1s
	Checkpoint    func() error       // after each periodic flush, e.g. fsync of the output file

	// Clock drives the delayed-retry schedule, how long a failed host is
	// skipped and the back-off after pushback, so tests can move time
	// instead of waiting for it; nil = the real clock. Idle timeouts and
	// SMTP deadlines stay on real time.
	Clock clockwork.Clock
	Now   func() time.Time // when a verdict was reached (checked_at); nil = Clock.Now
	// OnTotal is called once, when the input has been read, and OnResult
	// for every row written, both from one goroutine (the writer's): rows
	// answered by the store are written as the input is read, so some
	// may come before the total.
	OnTotal  func(rows int)
	OnResult func(output.Result)
}

func (c *Config) setDefaults() {
	if c.Replies == nil {
		c.Replies = verdict.Default()
	}
	if c.Operators == nil {
		c.Operators = operator.Default()
	}
	if c.SMTPPort == 0 {
		c.SMTPPort = 25
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 64
	}
	if c.MaxConnectionsPerHost <= 0 {
		c.MaxConnectionsPerHost = 2
	}
	if c.NewConnectionBacklog <= 0 {
		c.NewConnectionBacklog = 50
	}
	if c.RcptPerTransaction <= 0 {
		c.RcptPerTransaction = 50
	}
	if c.RcptPerConnection <= 0 {
		c.RcptPerConnection = 500
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.ControlThreshold <= 0 {
		c.ControlThreshold = 10
	}
	if c.DNSWorkers <= 0 {
		c.DNSWorkers = 32
	}
	if c.RetryRounds < 0 {
		c.RetryRounds = 0
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Budget == nil {
		c.Budget = egress.NewLocalBudget(egress.BudgetConfig{Clock: c.Clock})
	}
	if c.Now == nil {
		c.Now = c.Clock.Now
	}
	if c.RefusalMemory <= 0 {
		c.RefusalMemory = defaultRefusalMemory
	}
	if c.Store != nil && len(c.StoreNamespaces) == 0 {
		c.StoreNamespaces = []string{store.DefaultNamespace}
	}
}

// DoNotProbe names what a run must not ask anything of, because someone
// asked us not to: their addresses are unknown/skipped and nothing connects
// to them.
type DoNotProbe struct {
	Domains   map[string]bool // a domain and every domain under it (lower-case, ASCII)
	Operators map[string]bool // operator names, as the operator table names them
}

// domain reports whether name or a domain it is under is listed.
func (d DoNotProbe) domain(name string) bool {
	if len(d.Domains) == 0 {
		return false
	}
	for {
		if d.Domains[name] {
			return true
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return false
		}
		name = name[i+1:]
	}
}

// Summary counts what one run did.
type Summary struct {
	Rows        int `json:"rows"`        // rows read this run
	Skipped     int `json:"skipped"`     // rows left out because an earlier run decided them
	Probed      int `json:"probed"`      // rows decided by this run (probed, looked up, or judged by their syntax)
	Stored      int `json:"stored"`      // rows answered from the store without probing
	Addresses   int `json:"addresses"`   // distinct addresses probed or judged
	Domains     int `json:"domains"`     // distinct domains
	MXHosts     int `json:"mx_hosts"`    // hosts at least one connection was established to
	Connections int `json:"connections"` // SMTP sessions established
	// Distributed: the probing was done by a cluster's workers (Distribute),
	// which hold the connection counts, not this process.
	Distributed bool           `json:"distributed,omitempty"`
	ByStatus    map[string]int `json:"by_status"`
	ByReason    map[string]int `json:"by_reason"`
	Duration    time.Duration  `json:"duration_ns"`
	// Memory says how memory was kept bounded.
	Memory MemoryStats `json:"memory"`
	// StoreError is why the store stopped being used during the run, if
	// it did (the run went on without it).
	StoreError string `json:"store_error,omitempty"`
	// Hosts is what happened at each MX host.
	Hosts []HostSummary `json:"hosts,omitempty"`
	// Refusals are the egresses operators refused (their replies said our
	// address is blocked); the caller that owns the egress pool fills it.
	Refusals []egress.Refusal `json:"refusals,omitempty"`
	// Report is the data of the run's HTML report, when one was made: the
	// numbers it shows.
	Report *report.Data `json:"report,omitempty"`
}

// Run verifies every row of src and writes one result per row to sink. It
// returns when every row is written, or when ctx is cancelled or a fatal
// error happens; in both of those cases what was decided is still written.
func Run(ctx context.Context, cfg Config, res *resolve.Resolver, src *input.Reader, sink output.Writer) (Summary, error) {
	cfg.setDefaults()
	start := time.Now()
	sum := Summary{ByStatus: map[string]int{}, ByReason: map[string]int{}, Memory: MemoryStats{Limit: cfg.MemoryRows}}

	// A write error stops the probing at once (the writer still drains, so
	// nothing blocks): there is no point asking what cannot be written.
	ctx, stopProbing := context.WithCancel(ctx)
	defer stopProbing()
	verdicts := make(chan Verdict, 256)
	ready := make(chan []readyRow, 16)
	e := newEngine(ctx, cfg, res, verdicts)
	total := make(chan int, 1)
	free := make(chan []readyRow, cap(ready))
	w := &writer{cfg: &e.cfg, sink: sink, sum: &sum, mem: e.mem, store: e.sink, stopProbing: stopProbing, total: total, free: free}
	werr := make(chan error, 1)
	go func() { werr <- w.run(verdicts, ready) }()

	l := newLoader(&e.cfg, e, ready, &sum)
	l.total, l.free = total, free
	lerr := l.run(ctx, src)
	close(ready)
	stats := e.end()
	close(verdicts)
	err := <-werr

	e.sink.flush()
	sum.Connections = stats.Connections
	sum.MXHosts = len(stats.MXHosts)
	sum.Hosts = stats.Hosts
	sum.Memory.PeakAddresses = int(e.mem.peak.Load())
	sum.Memory.Spilled = int(e.mem.spilt.Load())
	if serr := e.sink.error(); serr != nil {
		sum.StoreError = serr.Error()
	}
	sum.Duration = time.Since(start)
	switch {
	case lerr != nil:
		return sum, lerr
	case err != nil:
		return sum, err
	case stats.Err != nil:
		return sum, stats.Err
	}
	return sum, ctx.Err()
}
