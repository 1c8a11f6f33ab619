package benchmarks

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/signals"
)

// Workload is one benchmark world and the limits both strategies run under.
//
// The world has Domains domains "d<i>.test", each with one MX record naming
// one of Hosts hosts "mx<k>.test". Domains are shared out over hosts by a
// Zipf law of exponent Skew (host k gets a share proportional to
// 1/(k+1)^Skew, every host at least one domain), so a few hosts serve many
// domains, as the big providers' MX hosts do; Skew 0 shares them evenly.
// Row j of the input is "u<j/Domains>@d<j%Domains>.test", so consecutive rows
// go to different domains, and local parts with an even number exist. Every
// CatchAllEvery-th domain accepts every local part.
type Workload struct {
	Name          string
	Addresses     int
	Domains       int
	Hosts         int
	Skew          float64
	CatchAllEvery int    // 0 = no accept-all domains
	Seed          uint64 // shuffles which domain lands on which host

	RTT time.Duration // every SMTP reply and DNS answer is delayed this long

	MaxConnections        int // in total; also the naive strategy's number of workers
	MaxConnectionsPerHost int
	RcptPerTransaction    int
	RcptPerConnection     int
	NoCatchAllCheck       bool
	MemoryRows            int // bulkverify holds about this many rows in memory, partitions the rest on disk; 0 = no limit

	// OperatorSessions, when positive, puts every host under one operator
	// of the operator table ("bench-operator", hosts *.test) that allows
	// this many sessions at once from the whole of a run, or of a cluster:
	// the budget test.
	OperatorSessions int
	// UnitSize and UnitsPerWorker shape a cluster run (strategies
	// cluster-N): addresses per unit at most (0 = 2000) and units a worker
	// probes at once (0 = 4 × MaxConnections).
	UnitSize       int
	UnitsPerWorker int

	// Store runs bulkverify with a verdict store (a new file of its own).
	Store bool
	// Rerun (with Store): bulkverify runs twice against the same world and
	// store, first over the list, then over the list with every
	// ChangeEvery-th row changed to a new address; the second run is the
	// one measured.
	Rerun       bool
	ChangeEvery int
	// Signals runs bulkverify with the built-in signals (disposable, free,
	// role, typo), as the CLI does by default.
	Signals bool
}

// L1 is the latency-bound workload of issue 6: 20,000 addresses over 400
// domains on 80 MX hosts, 20 ms round trips, two connections per host.
func L1() Workload {
	return Workload{
		Name: "L1", Addresses: 20000, Domains: 400, Hosts: 80, Skew: 1, CatchAllEvery: 20, Seed: 1,
		RTT:            20 * time.Millisecond,
		MaxConnections: 64, MaxConnectionsPerHost: 2, RcptPerTransaction: 50, RcptPerConnection: 500,
		MemoryRows: defaultMemoryRows,
	}
}

// L3 is the cluster's latency-bound workload (issue 13): 10,000 addresses
// at 1,000 independent hosts (a domain each), 50 ms round trips, and a
// worker's whole session budget of 8 connections as the binding limit, so
// that more workers (each with its own budget) go faster, and CPU time
// stays far below the wall time even with four workers on two cores.
func L3() Workload {
	return Workload{
		Name: "L3", Addresses: 10000, Domains: 1000, Hosts: 1000, Skew: 0, CatchAllEvery: 20, Seed: 3,
		RTT:            50 * time.Millisecond,
		MaxConnections: 8, MaxConnectionsPerHost: 2, RcptPerTransaction: 50, RcptPerConnection: 500,
		MemoryRows: defaultMemoryRows,
	}
}

// B1 is the cluster's budget test (issue 13): 8,000 addresses whose 40 MX
// hosts all belong to one operator that allows 4 sessions at once,
// however many workers ask; 20 ms round trips. The operator's budget, not
// a worker's, is the binding limit: more workers must not mean more
// sessions, nor more speed.
func B1() Workload {
	return Workload{
		Name: "B1", Addresses: 8000, Domains: 80, Hosts: 40, Skew: 0, CatchAllEvery: 20, Seed: 5,
		RTT:            20 * time.Millisecond,
		MaxConnections: 64, MaxConnectionsPerHost: 4, RcptPerTransaction: 50, RcptPerConnection: 100,
		MemoryRows: defaultMemoryRows, OperatorSessions: 4, UnitSize: 200,
	}
}

// defaultMemoryRows is the CLI's default limits.memory_rows.
const defaultMemoryRows = 1000000

// C1 is the CPU-bound workload of issue 6: 1,000,000 addresses over 10,000
// domains, no latency. Domains are spread evenly over 100 hosts so that the
// per-host connection cap is not what limits it.
func C1() Workload {
	return Workload{
		Name: "C1", Addresses: 1000000, Domains: 10000, Hosts: 100, Skew: 0, CatchAllEvery: 20, Seed: 1,
		MaxConnections: 64, MaxConnectionsPerHost: 2, RcptPerTransaction: 50, RcptPerConnection: 500,
		MemoryRows: defaultMemoryRows,
	}
}

// C2 is the bounded-memory workload of issue 12: C1 ten times over, 10
// million addresses over 100,000 domains, with the CLI's default memory
// limit, so that the input is partitioned on disk.
func C2() Workload {
	w := C1()
	w.Name, w.Addresses, w.Domains = "C2", 10000000, 100000
	return w
}

// C1Store is C1 with the verdict store on (an empty one): what remembering
// every verdict costs.
func C1Store() Workload {
	w := C1()
	w.Name, w.Store = "C1-store", true
	return w
}

// C1Signals is C1 with the built-in signals computed for every address:
// what the facts that need no network cost.
func C1Signals() Workload {
	w := C1()
	w.Name, w.Signals = "C1-signals", true
	return w
}

// C1Rerun is C1 run twice on one store, the second time with 5% of the rows
// changed: the nightly re-check of a customer table.
func C1Rerun() Workload {
	w := C1()
	w.Name, w.Store, w.Rerun, w.ChangeEvery = "C1-rerun", true, true, 20
	return w
}

// maxHosts is how many host addresses 127.77.a.b the world can number.
const maxHosts = 250 * 250

// ErrBadWorkload is wrapped by Validate's errors.
var ErrBadWorkload = errors.New("benchmarks: bad workload")

// Validate reports a workload that cannot be built or run.
func (w Workload) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrBadWorkload, w.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case w.Addresses < 1:
		return bad("addresses %d < 1", w.Addresses)
	case w.Domains < 1 || w.Domains > w.Addresses:
		return bad("domains %d must be between 1 and the number of addresses %d", w.Domains, w.Addresses)
	case w.Hosts < 1 || w.Hosts > w.Domains || w.Hosts > maxHosts:
		return bad("hosts %d must be between 1 and min(domains %d, %d)", w.Hosts, w.Domains, maxHosts)
	case w.Skew < 0 || math.IsNaN(w.Skew) || math.IsInf(w.Skew, 0):
		return bad("skew %v must be a finite number >= 0", w.Skew)
	case w.CatchAllEvery < 0:
		return bad("catch-all-every %d < 0", w.CatchAllEvery)
	case w.RTT < 0:
		return bad("negative RTT %v", w.RTT)
	case w.MaxConnections < 1 || w.MaxConnectionsPerHost < 1:
		return bad("connection limits must be >= 1")
	case w.RcptPerTransaction < 1 || w.RcptPerConnection < 1:
		return bad("recipient limits must be >= 1")
	case w.MemoryRows < 0:
		return bad("memory-rows %d < 0", w.MemoryRows)
	case w.Rerun && (!w.Store || w.ChangeEvery < 1):
		return bad("a rerun needs the store and change-every >= 1")
	case w.OperatorSessions < 0 || w.UnitSize < 0 || w.UnitsPerWorker < 0:
		return bad("operator sessions, unit size and units per worker must be >= 0")
	}
	return nil
}

// HostName is the name of host k.
func HostName(k int) string { return "mx" + strconv.Itoa(k) + ".test" }

// DomainName is the name of domain i.
func DomainName(i int) string { return "d" + strconv.Itoa(i) + ".test" }

// hostIP numbers host k inside 127.77.0.0/16, clear of the 127.0.0.x
// addresses tests and the sandbox use.
func hostIP(k int) string {
	return "127.77." + strconv.Itoa(1+k/250) + "." + strconv.Itoa(1+k%250)
}

// DomainsPerHost is how many domains each host serves: the Zipf shares,
// rounded by largest remainder, with at least one domain per host.
func (w Workload) DomainsPerHost() []int {
	weights := make([]float64, w.Hosts)
	sum := 0.0
	for k := range weights {
		weights[k] = 1 / math.Pow(float64(k+1), w.Skew)
		sum += weights[k]
	}
	// Every host gets one domain first; the rest goes by share.
	counts := make([]int, w.Hosts)
	rest := w.Domains - w.Hosts
	type rem struct {
		k    int
		frac float64
	}
	rems := make([]rem, w.Hosts)
	given := 0
	for k := range counts {
		exact := float64(rest) * weights[k] / sum
		whole := int(math.Floor(exact))
		counts[k] = 1 + whole
		given += whole
		rems[k] = rem{k, exact - float64(whole)}
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.frac > b.frac:
			return -1
		case a.frac < b.frac:
			return 1
		}
		return a.k - b.k
	})
	for i := 0; given < rest; i++ {
		counts[rems[i%len(rems)].k]++
		given++
	}
	return counts
}

// HostOfDomain maps each domain to its host, the hosts' shares shuffled over
// the domains so that a big host's domains are spread through the input.
func (w Workload) HostOfDomain() []int {
	counts := w.DomainsPerHost()
	hostOf := make([]int, 0, w.Domains)
	for k, n := range counts {
		for range n {
			hostOf = append(hostOf, k)
		}
	}
	rng := rand.New(rand.NewPCG(w.Seed, 0x62756c6b))
	rng.Shuffle(len(hostOf), func(i, j int) { hostOf[i], hostOf[j] = hostOf[j], hostOf[i] })
	return hostOf
}

// addressesOf is how many input rows domain i has.
func (w Workload) addressesOf(i int) int {
	n := w.Addresses / w.Domains
	if i < w.Addresses%w.Domains {
		n++
	}
	return n
}

func (w Workload) catchAll(i int) bool {
	return w.CatchAllEvery > 0 && i%w.CatchAllEvery == w.CatchAllEvery-1
}

// World builds the simulated world of the workload.
func (w Workload) World() mailsim.World {
	hostOf := w.HostOfDomain()
	world := mailsim.World{
		Domains: make([]mailsim.Domain, w.Domains),
		Hosts:   make([]mailsim.Host, w.Hosts),
	}
	for k := range world.Hosts {
		world.Hosts[k] = mailsim.Host{Name: HostName(k), IP: hostIP(k)}
	}
	for i := range world.Domains {
		d := mailsim.Domain{
			Name:     DomainName(i),
			MX:       []mailsim.MX{{Preference: 10, Host: HostName(hostOf[i])}},
			CatchAll: w.catchAll(i),
		}
		if !d.CatchAll {
			n := w.addressesOf(i)
			d.Mailboxes = make([]string, 0, (n+1)/2)
			for u := 0; u < n; u += 2 {
				d.Mailboxes = append(d.Mailboxes, "u"+strconv.Itoa(u))
				if w.ChangeEvery > 0 {
					d.Mailboxes = append(d.Mailboxes, "w"+strconv.Itoa(u)) // the changed rows' addresses
				}
			}
		}
		world.Domains[i] = d
	}
	return world
}

// Email is the address of input row j (0-based).
func (w Workload) Email(j int) string {
	return "u" + strconv.Itoa(j/w.Domains) + "@" + DomainName(j%w.Domains)
}

// Expect is the verdict the world implies for an address of the workload:
// status and reason as bulkverify writes them. ok is false for an address
// the workload does not generate.
func (w Workload) Expect(email string) (status, reason string, ok bool) {
	// u<n>@d<i>.test, or w<n>@... in a rerun; parsed by hand: every row of
	// a run is checked, and the check should cost little.
	if len(email) == 0 || !(email[0] == 'u' || w.ChangeEvery > 0 && email[0] == 'w') {
		return "", "", false
	}
	u, rest := leadingNumber(email[1:])
	if !strings.HasPrefix(rest, "@d") {
		return "", "", false
	}
	i, rest := leadingNumber(rest[2:])
	if rest != ".test" || u < 0 || i < 0 || i >= w.Domains || u >= w.addressesOf(i) {
		return "", "", false
	}
	switch {
	case w.catchAll(i) && !w.NoCatchAllCheck:
		return output.StatusRisky, pipeline.ReasonAcceptAll, true
	case w.catchAll(i) || u%2 == 0:
		return output.StatusDeliverable, pipeline.ReasonAccepted, true
	}
	return output.StatusUndeliverable, pipeline.ReasonMailboxUnknown, true
}

// leadingNumber reads the decimal number s starts with (at most 9 digits);
// -1 when it does not start with one.
func leadingNumber(s string) (int, string) {
	n, i := 0, 0
	for ; i < len(s) && i < 9 && '0' <= s[i] && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
	}
	if i == 0 {
		return -1, s
	}
	return n, s[i:]
}

// RecipientsPerHost is how many RCPT commands bulkverify must send to each
// host: its domains' addresses plus, with the catch-all check, one made-up
// address per domain.
func (w Workload) RecipientsPerHost() []int {
	hostOf := w.HostOfDomain()
	r := make([]int, w.Hosts)
	for i, k := range hostOf {
		r[k] += w.addressesOf(i)
		if !w.NoCatchAllCheck {
			r[k]++
		}
	}
	return r
}

// Rows returns the input CSV, generated as it is read: a header "email" and
// one row per address, so that a million rows never sit in memory here.
func (w Workload) Rows() io.Reader {
	return &rowReader{w: w, buf: []byte("email\n")}
}

// ChangedRows is Rows with every ChangeEvery-th row (rows j with j %
// ChangeEvery == 0, 0-based) at a new address of the same domain,
// "w<j/Domains>@d<j%Domains>.test".
func (w Workload) ChangedRows() io.Reader {
	return &rowReader{w: w, buf: []byte("email\n"), changed: true}
}

// Changed reports whether input row j (0-based) of ChangedRows differs
// from Rows.
func (w Workload) Changed(j int) bool { return w.ChangeEvery > 0 && j%w.ChangeEvery == 0 }

type rowReader struct {
	w       Workload
	j       int    // next row to generate
	buf     []byte // generated, not yet read
	changed bool
}

func (r *rowReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.j < r.w.Addresses {
		if r.changed && r.w.Changed(r.j) {
			r.buf = append(r.buf, 'w')
		} else {
			r.buf = append(r.buf, 'u')
		}
		r.buf = strconv.AppendInt(r.buf, int64(r.j/r.w.Domains), 10)
		r.buf = append(r.buf, "@d"...)
		r.buf = strconv.AppendInt(r.buf, int64(r.j%r.w.Domains), 10)
		r.buf = append(r.buf, ".test\n"...)
		r.j++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[:copy(r.buf, r.buf[n:])]
	return n, nil
}

// probeConfig is the SMTP client configuration of both strategies: generous
// timeouts, so that only the simulated latency sets the pace.
func probeConfig() probe.Config {
	return probe.Config{
		HeloName:        "bench.bulkverify.test",
		MailFrom:        "verify@bulkverify.test",
		ConnectTimeout:  10 * time.Second,
		GreetingTimeout: 30 * time.Second,
		CommandTimeout:  30 * time.Second,
	}
}

// PipelineConfig is the bulkverify configuration the workload runs with:
// the CLI's defaults except the limits of the workload, no RCPT rate limit
// and no delayed retries (the world has no temporary failures). Spill files
// go to the system's temporary directory.
func (w Workload) PipelineConfig(smtpPort int) pipeline.Config {
	return pipeline.Config{
		Probe:                 probeConfig(),
		SMTPPort:              smtpPort,
		IdleTimeout:           2 * time.Second,
		MaxConnections:        w.MaxConnections,
		MaxConnectionsPerHost: w.MaxConnectionsPerHost,
		NewConnectionBacklog:  50,
		RcptPerTransaction:    w.RcptPerTransaction,
		RcptPerConnection:     w.RcptPerConnection,
		MaxAttempts:           3,
		DNSWorkers:            32,
		RcptRate:              0,
		RetryDelay:            0,
		NoCatchAllCheck:       w.NoCatchAllCheck,
		MemoryRows:            w.MemoryRows,
		Operators:             w.operators(),
		Signals:               w.signals(),
	}
}

// signals is the workload's signal set: the built-in one, or none.
func (w Workload) signals() *signals.Set {
	if !w.Signals {
		return nil
	}
	return signals.Default()
}

// operators is the operator table of the workload: the built-in one, or
// with OperatorSessions one operator that runs every host.
func (w Workload) operators() *operator.Table {
	if w.OperatorSessions <= 0 {
		return nil
	}
	t, err := operator.Parse([]byte(fmt.Sprintf(`operators:
  - name: bench-operator
    display: the benchmark's one operator
    mx: ["*.test"]
    sessions: %d
    rcpt_per_second: 0
    backoff: 1m
`, w.OperatorSessions)))
	if err != nil {
		panic(err) // a table of one well-formed entry
	}
	return t
}
