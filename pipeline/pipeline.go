package pipeline

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/signals"
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

	MemoryRows int    // rows grouped in memory at once; beyond that, rows spill to temporary files; 0 = no limit
	TempDir    string // where spill files go; "" = the system's

	Skip          func(row int) bool // rows to leave out: already in the output of an earlier run
	FlushInterval time.Duration      // results are flushed (and Checkpoint called) at least this often; 0 = 1s
	Checkpoint    func() error       // after each periodic flush, e.g. fsync of the output file

	// Clock drives the delayed-retry schedule, how long a failed host is
	// skipped and the back-off after pushback, so tests can move time
	// instead of waiting for it; nil = the real clock. Idle timeouts and
	// SMTP deadlines stay on real time.
	Clock    clockwork.Clock
	Now      func() time.Time    // when a verdict was reached (checked_at); nil = Clock.Now
	OnTotal  func(rows int)      // called once, when the input has been read
	OnResult func(output.Result) // called for every row written, from one goroutine
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
	Rows        int            `json:"rows"`        // rows read this run
	Skipped     int            `json:"skipped"`     // rows left out because an earlier run decided them
	Addresses   int            `json:"addresses"`   // distinct addresses probed or judged
	Domains     int            `json:"domains"`     // distinct domains
	MXHosts     int            `json:"mx_hosts"`    // hosts at least one connection was established to
	Connections int            `json:"connections"` // SMTP sessions established
	ByStatus    map[string]int `json:"by_status"`
	ByReason    map[string]int `json:"by_reason"`
	Duration    time.Duration  `json:"duration_ns"`
	// Hosts is what happened at each MX host.
	Hosts []HostSummary `json:"hosts,omitempty"`
	// Refusals are the egresses operators refused (their replies said our
	// address is blocked); the caller that owns the egress pool fills it.
	Refusals []egress.Refusal `json:"refusals,omitempty"`
	// Report is the data of the run's HTML report, when one was made: the
	// numbers it shows.
	Report *report.Data `json:"report,omitempty"`

	hosts   map[string]bool // MX hosts counted, so that spill files do not count one twice
	hostIdx map[string]int  // index in Hosts by name
}

// addHostSummaries adds the figures of one engine run, merging a host seen
// in an earlier one (spill files).
func (s *Summary) addHostSummaries(hs []HostSummary) {
	if s.hostIdx == nil {
		s.hostIdx = map[string]int{}
	}
	for _, h := range hs {
		i, seen := s.hostIdx[h.Host]
		if !seen {
			s.hostIdx[h.Host] = len(s.Hosts)
			s.Hosts = append(s.Hosts, h)
			continue
		}
		x := &s.Hosts[i]
		x.Addresses += h.Addresses
		x.Connections += h.Connections
		x.RCPT += h.RCPT
		x.Replies4xx += h.Replies4xx
		x.Replies5xx += h.Replies5xx
		x.Greylisted += h.Greylisted
		x.PolicyBlocks += h.PolicyBlocks
		x.Undeliverable += h.Undeliverable
		x.Unknown += h.Unknown
		x.LatencyP50, x.LatencyP95 = max(x.LatencyP50, h.LatencyP50), max(x.LatencyP95, h.LatencyP95)
	}
}

func (s *Summary) addHosts(names []string) {
	if s.hosts == nil {
		s.hosts = map[string]bool{}
	}
	for _, n := range names {
		s.hosts[n] = true
	}
	s.MXHosts = len(s.hosts)
}

// rowRef is one input row waiting for the verdict on its address.
type rowRef struct {
	row    int
	fields []string
}

// rowRefs are the rows that asked for one address. Most addresses appear
// once, so the first row is held inline: no slice per address.
type rowRefs struct {
	first rowRef
	more  []rowRef
}

// each calls f for every row.
func (r rowRefs) each(f func(rowRef)) {
	f(r.first)
	for _, ref := range r.more {
		f(ref)
	}
}

// invalidRow is a row that holds no address worth probing.
type invalidRow struct {
	ref    rowRef
	raw    string
	reason string
}

// batch is the whole input, grouped.
type batch struct {
	rows    int
	skipped int
	invalid []invalidRow
	groups  []DomainGroup      // distinct addresses by domain, in order of first appearance
	byKey   map[string]rowRefs // address -> the rows that asked for it
}

// readAll groups the rows of src. With limit > 0 it stops once it holds more
// than limit rows and reports full: the caller spills instead.
func readAll(src recordSource, skip func(int) bool, limit int) (b batch, full bool, err error) {
	b = batch{byKey: map[string]rowRefs{}}
	domIdx := map[string]int{}
	for {
		if limit > 0 && b.rows-b.skipped > limit {
			return b, true, nil
		}
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			return b, false, nil
		}
		if err != nil {
			return b, false, fmt.Errorf("reading input: %w", err)
		}
		b.rows++
		if skip != nil && skip(rec.Row) {
			b.skipped++
			continue
		}
		ref := rowRef{row: rec.Row, fields: rec.Fields}
		addr, perr := input.ParseAddress(rec.Email)
		if rec.Ragged || perr != nil {
			inv := invalidRow{ref: ref, raw: rec.Email, reason: input.ReasonSyntax}
			var se *input.SyntaxError
			switch {
			case rec.Ragged:
				inv.reason = ReasonRaggedRow
			case errors.As(perr, &se):
				inv.reason = se.Reason
			}
			b.invalid = append(b.invalid, inv)
			continue
		}
		key := addr.String()
		if refs, ok := b.byKey[key]; ok {
			refs.more = append(refs.more, ref)
			b.byKey[key] = refs
			continue
		}
		b.byKey[key] = rowRefs{first: ref}
		i, ok := domIdx[addr.Domain]
		if !ok {
			i = len(b.groups)
			domIdx[addr.Domain] = i
			b.groups = append(b.groups, DomainGroup{Domain: addr.Domain})
		}
		b.groups[i].Addresses = append(b.groups[i].Addresses, addr)
	}
}
