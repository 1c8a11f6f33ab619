package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// world is the simulated mail world most tests here run against.
func world() mailsim.World {
	return mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx1.acme.test", IP: "127.0.0.11"},
			{Name: "mx2.acme.test", IP: "127.0.0.12"},
			{Name: "mx.provider.test", IP: "127.0.0.13"},
			{Name: "dead.failover.test", IP: "127.0.0.14", Down: true},
			{Name: "live.failover.test", IP: "127.0.0.15"},
			{Name: "dead.only.test", IP: "127.0.0.16", Down: true},
			{Name: "implicit.test", IP: "127.0.0.17"},
		},
		Domains: []mailsim.Domain{
			{
				Name:      "acme.test",
				MX:        []mailsim.MX{{Preference: 20, Host: "mx2.acme.test"}, {Preference: 10, Host: "mx1.acme.test"}},
				Mailboxes: []string{"alice", "bob"},
				Replies: map[string]mailsim.Reply{
					"full":    {Code: 552, Enhanced: "5.2.2", Message: "mailbox full"},
					"blocked": {Code: 550, Enhanced: "5.7.1", Message: "rejected by policy"},
					"later":   {Code: 451, Enhanced: "4.3.0", Message: "local error in processing"},
				},
			},
			{Name: "one.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, Mailboxes: []string{"ann"}},
			{Name: "two.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, Mailboxes: []string{"ben"}},
			{Name: "three.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.provider.test"}}, Mailboxes: []string{"cat"}},
			{
				Name:      "failover.test",
				MX:        []mailsim.MX{{Preference: 10, Host: "dead.failover.test"}, {Preference: 20, Host: "live.failover.test"}},
				Mailboxes: []string{"eve"},
			},
			{Name: "down.test", MX: []mailsim.MX{{Preference: 10, Host: "dead.only.test"}}},
			{Name: "implicit.test", A: []string{"127.0.0.17"}, Mailboxes: []string{"ivan"}},
			{Name: "nullmx.test", NullMX: true},
			{Name: "broken.test", ServFail: true},
			{Name: "dangling.test", MX: []mailsim.MX{{Preference: 10, Host: "nowhere.dangling.test"}}},
		},
	}
}

type harness struct {
	t   *testing.T
	sim *mailsim.Sim
	cfg Config
}

// Timeouts of the harness only guard against hangs: generous, so that a
// loaded machine never turns a slow reply into a "timeout" verdict. Tests
// that mean to hit a timeout set their own.
const (
	probeTimeout = 30 * time.Second
	runTimeout   = 60 * time.Second // a whole Run; longer than any one timeout
)

func newHarness(t *testing.T, w mailsim.World) *harness {
	t.Helper()
	return newHarnessOpts(t, w, mailsim.Options{})
}

// newFakeClockHarness is newHarness on a fake clock that drives both the
// pipeline's retry schedule and back-off (Config.Clock) and the servers'
// greylisting (Options.Now): time moves only when the test advances it.
func newFakeClockHarness(t *testing.T, w mailsim.World) (*harness, *clockwork.FakeClock) {
	t.Helper()
	fc := clockwork.NewFakeClock()
	h := newHarnessOpts(t, w, mailsim.Options{Now: fc.Now})
	h.cfg.Clock = fc
	return h, fc
}

func newHarnessOpts(t *testing.T, w mailsim.World, opts mailsim.Options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, err := mailsim.Start(ctx, w, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return &harness{t: t, sim: sim, cfg: Config{
		Probe: probe.Config{
			HeloName:        "probe.bulkverify.test",
			MailFrom:        "verify@bulkverify.test",
			ConnectTimeout:  probeTimeout,
			GreetingTimeout: probeTimeout,
			CommandTimeout:  probeTimeout,
		},
		SMTPPort: sim.SMTPPort(),
		// A connection waits this long for addresses of its host that are
		// still being resolved; long, so that a slow DNS answer on a
		// loaded machine does not cost a second connection.
		IdleTimeout: 5 * time.Second,
	}}
}

// resolver asks the world's DNS server. Its timeout only guards against a
// hang; no test here waits for a DNS timeout.
func (h *harness) resolver() *resolve.Resolver {
	h.t.Helper()
	res, err := resolve.New(resolve.Config{Servers: []string{h.sim.DNSAddr()}, Timeout: 10 * time.Second, Attempts: 2})
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// row is one output row as a map from column name to value.
type row map[string]string

// run verifies csvText and returns the output rows and the summary.
func (h *harness) run(csvText string) ([]row, Summary) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	rows, sum, err := h.start(ctx, csvText)()
	if err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	if got := h.sim.TotalCommands("DATA"); got != 0 {
		h.t.Errorf("the servers saw DATA %d times", got)
	}
	return rows, sum
}

// start runs the verification of csvText in the background and returns a
// func that waits for it (failing the test if it has not ended within
// runTimeout, whatever ctx says) and returns its rows, summary and error.
func (h *harness) start(ctx context.Context, csvText string) func() ([]row, Summary, error) {
	h.t.Helper()
	res := h.resolver()
	src, err := input.NewReader(strings.NewReader(csvText), input.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	out := &lockedBuffer{}
	sink, err := output.NewCSV(out, src.Header())
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.cfg
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Run(ctx, cfg, res, src, sink)
		done <- result{sum, err}
	}()
	return func() ([]row, Summary, error) {
		h.t.Helper()
		select {
		case r := <-done:
			return parseRows(h.t, bytes.NewBufferString(out.String())), r.sum, r.err
		case <-time.After(runTimeout):
			h.t.Fatalf("Run has not returned after %v", runTimeout)
			return nil, Summary{}, nil
		}
	}
}

// lockedBuffer is a bytes.Buffer that a test may read while Run writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// byEmail indexes rows by the raw input column "email"; duplicates keep the last.
func byEmail(rows []row) map[string]row {
	m := map[string]row{}
	for _, r := range rows {
		m[r["email"]] = r
	}
	return m
}

// checkEveryRowOnce asserts that rows 1..n each appear exactly once.
func checkEveryRowOnce(t *testing.T, rows []row, n int) {
	t.Helper()
	seen := map[int]int{}
	for _, r := range rows {
		i, err := strconv.Atoi(r["row"])
		if err != nil {
			t.Fatalf("bad row column %q", r["row"])
		}
		seen[i]++
	}
	for i := 1; i <= n; i++ {
		if seen[i] != 1 {
			t.Errorf("input row %d appears %d times in the output", i, seen[i])
		}
	}
	if len(rows) != n {
		t.Errorf("%d output rows for %d input rows", len(rows), n)
	}
}

func TestStatuses(t *testing.T) {
	h := newHarness(t, world())
	input := "name,email\n" +
		"a,alice@acme.test\n" +
		"b,nobody@acme.test\n" +
		"c,full@acme.test\n" +
		"d,blocked@acme.test\n" +
		"e,later@acme.test\n" +
		"f,not-an-address\n" +
		"g,someone@nonexistent.test\n" +
		"h,someone@nullmx.test\n" +
		"i,ivan@implicit.test\n" +
		"j,eve@failover.test\n" +
		"k,someone@down.test\n" +
		"l,someone@broken.test\n" +
		"m,someone@dangling.test\n" +
		"n,Bob@ACME.test\n" +
		"o,a@[127.0.0.1]\n"
	rows, sum := h.run(input)
	checkEveryRowOnce(t, rows, 15)
	got := map[string]row{}
	for _, r := range rows {
		got[r["name"]] = r
	}
	tests := []struct {
		name, status, reason, code, enhanced, mx string
	}{
		{"a", "deliverable", "accepted", "250", "2.0.0", "mx1.acme.test"},
		{"b", "undeliverable", "mailbox_unknown", "550", "5.1.1", "mx1.acme.test"},
		{"c", "risky", "mailbox_full", "552", "5.2.2", "mx1.acme.test"},
		{"d", "unknown", "policy_block", "550", "5.7.1", "mx1.acme.test"},
		{"e", "unknown", "temporary_failure", "451", "4.3.0", "mx1.acme.test"},
		{"f", "invalid", "syntax", "", "", ""},
		{"g", "invalid", "nxdomain", "", "", ""},
		{"h", "invalid", "null_mx", "", "", ""},
		{"i", "deliverable", "accepted", "250", "2.0.0", "implicit.test"},
		{"j", "deliverable", "accepted", "250", "2.0.0", "live.failover.test"},
		{"k", "unknown", "connection_failed", "", "", "dead.only.test"},
		{"l", "unknown", "dns_error", "", "", ""},
		{"m", "undeliverable", "mx_unresolvable", "", "", "nowhere.dangling.test"},
		{"n", "deliverable", "accepted", "250", "2.0.0", "mx1.acme.test"},
		{"o", "invalid", "address_literal", "", "", ""},
	}
	for _, tt := range tests {
		r := got[tt.name]
		if r["status"] != tt.status || r["reason"] != tt.reason || r["smtp_code"] != tt.code ||
			r["enhanced_code"] != tt.enhanced || r["mx_host"] != tt.mx {
			t.Errorf("row %s (%s): got %s/%s code=%q enh=%q mx=%q, want %s/%s code=%q enh=%q mx=%q",
				tt.name, r["email"], r["status"], r["reason"], r["smtp_code"], r["enhanced_code"], r["mx_host"],
				tt.status, tt.reason, tt.code, tt.enhanced, tt.mx)
		}
	}
	if e := got["n"]["result_email"]; e != "Bob@acme.test" { // the input has an email column too
		t.Errorf("normalised email = %q, want domain lower-cased and local part kept", e)
	}
	if sum.Rows != 15 || sum.ByStatus["deliverable"] != 4 {
		t.Errorf("summary %+v", sum)
	}
	if n := h.sim.Connections("mx2.acme.test"); n != 0 {
		t.Errorf("backup MX of acme.test got %d connections while the primary was up", n)
	}
}

func TestOneConnectionPerDomain(t *testing.T) {
	h := newHarness(t, world())
	h.cfg.NoPositiveControl = true // counted: the addresses' own RCPTs
	var b strings.Builder
	b.WriteString("email\n")
	const n = 40
	for i := range n {
		fmt.Fprintf(&b, "user%d@acme.test\n", i)
	}
	rows, sum := h.run(b.String())
	checkEveryRowOnce(t, rows, n)
	if got := h.sim.Connections("mx1.acme.test"); got != 1 {
		t.Errorf("%d addresses at one domain used %d connections, want 1", n, got)
	}
	if got := h.sim.Commands("mx1.acme.test", "RCPT"); got != n+1 {
		t.Errorf("server saw %d RCPT, want %d (one per address, one catch-all check)", got, n+1)
	}
	if got := h.sim.Commands("mx1.acme.test", "MAIL"); got != 1 {
		t.Errorf("server saw %d MAIL, want 1", got)
	}
	if got := h.sim.DNSQueries("acme.test", dns.TypeMX); got != 1 {
		t.Errorf("%d MX queries for acme.test, want 1", got)
	}
	if sum.Connections != 1 {
		t.Errorf("summary counts %d connections", sum.Connections)
	}
}

func TestDomainsSharingAnMXShareItsConnection(t *testing.T) {
	h := newHarness(t, world())
	var b strings.Builder
	b.WriteString("email\n")
	// 45 addresses and 3 catch-all checks stay under the backlog (50) that
	// would justify a second connection.
	for i := range 14 {
		for _, d := range []string{"one.test", "two.test", "three.test"} {
			fmt.Fprintf(&b, "u%d@%s\n", i, d)
		}
	}
	b.WriteString("ann@one.test\nben@two.test\ncat@three.test\n")
	rows, _ := h.run(b.String())
	checkEveryRowOnce(t, rows, 45)
	if got := h.sim.Connections("mx.provider.test"); got != 1 {
		t.Errorf("3 domains on one MX host used %d connections, want 1", got)
	}
	for _, d := range []string{"one.test", "two.test", "three.test"} {
		if got := h.sim.DNSQueries(d, dns.TypeMX); got != 1 {
			t.Errorf("%d MX queries for %s, want 1", got, d)
		}
	}
	if got := h.sim.DNSQueries("mx.provider.test", dns.TypeA); got != 1 {
		t.Errorf("%d A queries for the shared MX host, want 1 (cached)", got)
	}
	e := byEmail(rows)
	for _, addr := range []string{"ann@one.test", "ben@two.test", "cat@three.test"} {
		if e[addr]["status"] != "deliverable" {
			t.Errorf("%s: %s", addr, e[addr]["status"])
		}
	}
	if e["u3@two.test"]["status"] != "undeliverable" {
		t.Errorf("u3@two.test: %s", e["u3@two.test"]["status"])
	}
}

func TestTransactionAndConnectionCaps(t *testing.T) {
	tests := []struct {
		name                           string
		addresses, perTxn, perConn     int
		wantConns, wantMail, wantRsets int
	}{
		// One more RCPT than addresses: the domain's catch-all check.
		{"one transaction", 29, 50, 500, 1, 1, 0},
		{"RSET between transactions", 119, 50, 500, 1, 3, 2},
		{"new connection after the per-connection cap", 119, 50, 50, 3, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, world())
			h.cfg.NoPositiveControl = true // counted: the addresses' own RCPTs
			h.cfg.MaxConnectionsPerHost = 1
			h.cfg.RcptPerTransaction = tt.perTxn
			h.cfg.RcptPerConnection = tt.perConn
			var b strings.Builder
			b.WriteString("email\n")
			for i := range tt.addresses {
				fmt.Fprintf(&b, "user%d@acme.test\n", i)
			}
			rows, _ := h.run(b.String())
			checkEveryRowOnce(t, rows, tt.addresses)
			host := "mx1.acme.test"
			if got := h.sim.Connections(host); got != tt.wantConns {
				t.Errorf("connections = %d, want %d", got, tt.wantConns)
			}
			if got := h.sim.Commands(host, "MAIL"); got != tt.wantMail {
				t.Errorf("MAIL = %d, want %d", got, tt.wantMail)
			}
			if got := h.sim.Commands(host, "RSET"); got != tt.wantRsets {
				t.Errorf("RSET = %d, want %d", got, tt.wantRsets)
			}
			if got := h.sim.Commands(host, "RCPT"); got != tt.addresses+1 {
				t.Errorf("RCPT = %d, want %d", got, tt.addresses+1)
			}
			if got := h.sim.Commands(host, "QUIT"); got != tt.wantConns {
				t.Errorf("QUIT = %d, want one per connection (%d)", got, tt.wantConns)
			}
		})
	}
}

func TestServerRecipientLimit(t *testing.T) {
	w := world()
	w.Hosts[0].MaxRecipients = 7 // mx1.acme.test answers 452 4.5.3 after 7 accepted RCPT
	for i := range 30 {
		w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("user%d", i))
	}
	h := newHarness(t, w)
	h.cfg.NoPositiveControl = true // counted: the addresses' own RCPTs
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 30 {
		fmt.Fprintf(&b, "user%d@acme.test\n", i)
	}
	b.WriteString("alice@acme.test\n")
	rows, _ := h.run(b.String())
	checkEveryRowOnce(t, rows, 31)
	for _, r := range rows {
		if r["status"] != "deliverable" {
			t.Errorf("%s: %s/%s %s, want deliverable", r["email"], r["status"], r["reason"], r["smtp_code"])
		}
	}
	if got := h.sim.Connections("mx1.acme.test"); got != 1 {
		t.Errorf("connections = %d, want 1", got)
	}
	// The first pipelined batch carries 32 recipients (31 + the refused
	// catch-all check): 7 accepted, 24 refused with 452, so the limit is
	// first taken as 8 recipients; the next transaction (8 sent) narrows it
	// to 7, and the rest go 7, 7, 3. Without learning, every transaction
	// would overshoot again.
	if got := h.sim.Commands("mx1.acme.test", "RCPT"); got != 32+8+7+7+3 {
		t.Errorf("RCPT = %d, want %d", got, 32+8+7+7+3)
	}
	if got := h.sim.Commands("mx1.acme.test", "MAIL"); got != 5 {
		t.Errorf("MAIL = %d, want 5", got)
	}
}

func TestDuplicatesProbedOnce(t *testing.T) {
	h := newHarness(t, world())
	rows, sum := h.run("email\nalice@acme.test\nALICE@acme.TEST\nalice@acme.test\nbob@acme.test\nalice@acme.test.\n")
	checkEveryRowOnce(t, rows, 5)
	// alice@acme.test, alice@acme.test. and alice@acme.TEST are one address;
	// ALICE@ differs in its local part, which RFC 5321 lets the server tell apart.
	if got := h.sim.Commands("mx1.acme.test", "RCPT"); got != 4 {
		t.Errorf("RCPT = %d, want 3 addresses + 1 catch-all check (duplicates asked once)", got)
	}
	if sum.Addresses != 3 {
		t.Errorf("summary addresses = %d, want 3", sum.Addresses)
	}
	for _, r := range rows {
		if r["status"] != "deliverable" {
			t.Errorf("row %s %s: %s", r["row"], r["email"], r["status"])
		}
	}
}

func TestCancelledRunStops(t *testing.T) {
	w := world()
	w.Hosts[0].RcptDelay = time.Hour // a tarpit: only the cancellation can end its wait
	h := newHarness(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop once the fast domain is written and the tarpit holds a RCPT.
	h.cfg.OnResult = func(r output.Result) {
		go func() {
			waitFor(t, "a RCPT at the tarpit", func() bool { return h.sim.Commands("mx1.acme.test", "RCPT") > 0 })
			cancel()
		}()
	}
	// start's guard (runTimeout) fails the test if Run waits for the tarpit.
	rows, _, err := h.start(ctx, "email\nalice@acme.test\nann@one.test\n")()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v, want context.Canceled", err)
	}
	if len(rows) != 1 || rows[0]["email"] != "ann@one.test" || rows[0]["status"] != "deliverable" {
		t.Errorf("want exactly the result decided before cancelling (ann@one.test, deliverable), got %v", rows)
	}
}

// waitFor polls cond until it holds; after runTimeout it fails the test
// (Errorf: it may run outside the test's goroutine) and returns false.
func waitFor(t *testing.T, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(runTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("waited %v for %s", runTimeout, what)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Past MemoryRows the rows spill to partition files; every row still comes
// out exactly once with the verdict it would have had in memory.
// memoryBound is how many addresses a run with MemoryRows m holds in
// memory at most, as memory.go documents it, when no host queue is read
// back from disk.
func memoryBound(m int) int { return m + m/4 }

func TestSpillKeepsEveryRow(t *testing.T) {
	w := world()
	for i := range 100 {
		w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("user%d", i))
	}
	h := newHarness(t, w)
	h.cfg.MemoryRows = 40
	h.cfg.TempDir = t.TempDir()
	h.cfg.NoPositiveControl = true // counted: the addresses' own RCPTs
	var b strings.Builder
	b.WriteString("email,n\n")
	n := 0
	add := func(addr string) {
		n++
		fmt.Fprintf(&b, "%s,%d\n", addr, n)
	}
	for i := range 200 { // one domain far bigger than a partition's share
		add(fmt.Sprintf("user%d@acme.test", i%150))
	}
	for i := range 30 {
		add(fmt.Sprintf("u%d@one.test", i))
		add(fmt.Sprintf("u%d@two.test", i))
	}
	add("ann@one.test")
	add("not an address")
	add("someone@nonexistent.test")
	// The same rows all in memory, on a world of their own: what the
	// spilled run is held to.
	hu := newHarness(t, w)
	hu.cfg.NoPositiveControl = true
	_, unbounded := hu.run(b.String())

	rows, sum := h.run(b.String())
	checkEveryRowOnce(t, rows, n)
	for _, r := range rows {
		var want string
		switch {
		case r["email"] == "not an address":
			want = "invalid"
		case strings.HasSuffix(r["email"], "nonexistent.test"):
			want = "invalid"
		case r["email"] == "ann@one.test":
			want = "deliverable"
		case strings.HasSuffix(r["email"], "@acme.test"):
			want = "undeliverable"
			var i int
			fmt.Sscanf(r["email"], "user%d@", &i)
			if i < 100 {
				want = "deliverable"
			}
		default:
			want = "undeliverable"
		}
		if r["status"] != want {
			t.Errorf("row %s %s: %s/%s, want %s", r["row"], r["email"], r["status"], r["reason"], want)
		}
	}
	if sum.Rows != n {
		t.Errorf("summary rows %d, want %d", sum.Rows, n)
	}
	// The rows did spill: the input was loaded in several partitions, and
	// never more than the limit's share of it was in memory at once.
	if sum.Memory.Partitions < 2 {
		t.Errorf("%d partitions: the rows did not spill", sum.Memory.Partitions)
	}
	if limit := memoryBound(h.cfg.MemoryRows); sum.Memory.PeakAddresses > limit {
		t.Errorf("%d addresses in memory at once, want at most %d", sum.Memory.PeakAddresses, limit)
	}
	// No more connections than in memory: the partitions are loaded into
	// the same engine, whose connections carry over.
	if sum.Connections > unbounded.Connections || h.sim.TotalConnections() > hu.sim.TotalConnections() {
		t.Errorf("%d connections (%d seen by the servers), want at most the %d (%d) of the run in memory",
			sum.Connections, h.sim.TotalConnections(), unbounded.Connections, hu.sim.TotalConnections())
	}
	// One catch-all check per domain, although acme.test was spread over
	// the partitions: 150 addresses plus one check.
	if got := h.sim.Commands("mx1.acme.test", "RCPT") + h.sim.Commands("mx2.acme.test", "RCPT"); got != 151 {
		t.Errorf("acme.test's MX hosts saw %d RCPT, want 151 (one per distinct address, one catch-all check)", got)
	}
	if sum.MXHosts != 2 {
		t.Errorf("summary counts %d MX hosts, want 2 however many spill files used them", sum.MXHosts)
	}
	if got := h.sim.DNSQueries("one.test", dns.TypeMX); got != 1 {
		t.Errorf("one.test's MX was asked %d times across partitions, want 1 (its rows stay together; the cache serves the rest)", got)
	}
	if entries, _ := os.ReadDir(h.cfg.TempDir); len(entries) != 0 {
		t.Errorf("spill files left behind: %d", len(entries))
	}
}
