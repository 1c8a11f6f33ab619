package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/verdict"
)

// Tests of issue 11 ("Reach, responsibly") at the engine: limits per
// operator across host names and egresses, pushback pauses, source
// addresses, refusals of our address, do-not-probe and the circuit
// breakers, each counted by the simulated servers.

// fleet is n mail hosts of one operator and a domain served by each: host
// i is hostName(i) on 127.0.<net>.(10+i) and serves "d<i>.<label>.test"
// with mailboxes ok0..ok9 (see addressesCSV). behaviour is copied into
// every host.
type fleet struct {
	hosts, domains []string
}

func newFleet(w *mailsim.World, n int, net int, label string, hostName func(i int) string, behaviour mailsim.Host) fleet {
	var f fleet
	for i := range n {
		h := behaviour
		h.Name, h.IP = hostName(i), fmt.Sprintf("127.0.%d.%d", net, 10+i)
		dom := fmt.Sprintf("d%d.%s.test", i, label)
		var boxes []string
		for j := range 10 {
			boxes = append(boxes, fmt.Sprintf("ok%d", j))
		}
		w.Hosts = append(w.Hosts, h)
		w.Domains = append(w.Domains, mailsim.Domain{Name: dom, MX: []mailsim.MX{{Preference: 10, Host: h.Name}}, Mailboxes: boxes})
		f.hosts = append(f.hosts, h.Name)
		f.domains = append(f.domains, dom)
	}
	return f
}

// connections sums the connections the fleet's hosts accepted.
func (f fleet) connections(sim *mailsim.Sim) int {
	n := 0
	for _, h := range f.hosts {
		n += sim.Connections(h)
	}
	return n
}

// touched is how many of the fleet's hosts accepted a connection.
func (f fleet) touched(sim *mailsim.Sim) int {
	n := 0
	for _, h := range f.hosts {
		if sim.Connections(h) > 0 {
			n++
		}
	}
	return n
}

func operatorTable(t *testing.T, yaml string) *operator.Table {
	t.Helper()
	tab, err := operator.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// tenantsTable is a user's operator table: every *.tenants.test host is
// run by one operator that takes 3 sessions at once, and pauses 1m when it
// pushes back.
const tenantsTable = `
operators:
  - name: tenants
    display: Tenants Inc.
    mx: ["*.tenants.test"]
    sessions: 3
    rcpt_per_second: 0
    backoff: 1m
`

// resultLog collects the rows a run has written so far (Config.OnResult).
type resultLog struct {
	mu   sync.Mutex
	rows []output.Result
}

func (l *resultLog) add(r output.Result) {
	l.mu.Lock()
	l.rows = append(l.rows, r)
	l.mu.Unlock()
}

// count is how many rows written so far have an address at domain.
func (l *resultLog) count(domain string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.rows {
		if strings.HasSuffix(r.Email, "@"+domain) {
			n++
		}
	}
	return n
}

// Many tenant host names of one operator share its sessions: the servers
// never see more of them open at once than the operator's limit, whatever
// the number of host names, for a user's table and for the built-in
// Microsoft 365 entry.
func TestOperatorSessionsAcrossTenantHosts(t *testing.T) {
	tests := []struct {
		name     string
		table    string // "" = the built-in table
		provider string
		limit    int
		hostName func(i int) string
	}{
		{"user table", tenantsTable, "tenants", 3, func(i int) string { return fmt.Sprintf("t%d.tenants.test", i) }},
		{"microsoft 365", "", "microsoft", 8, func(i int) string { return fmt.Sprintf("d%d-fleet-test.mail.protection.outlook.com", i) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w mailsim.World
			// Each RCPT takes a while, so that sessions overlap and the
			// limit is what keeps their number down.
			f := newFleet(&w, 12, 50, "fleet", tc.hostName, mailsim.Host{RcptDelay: 50 * time.Millisecond})
			h := newHarness(t, w)
			if tc.table != "" {
				h.cfg.Operators = operatorTable(t, tc.table)
			}
			h.cfg.NoCatchAllCheck = true
			h.cfg.MaxConnectionsPerHost = 4
			h.cfg.NewConnectionBacklog = 1 // a second connection per host as soon as two addresses wait
			h.cfg.RcptPerConnection = 2    // many short sessions
			watch := h.sim.WatchConcurrency(f.hosts...)
			rows, _ := h.run(addressesCSV(4, f.domains...))
			checkEveryRowOnce(t, rows, 4*len(f.domains))
			checkStatuses(t, rows)
			for _, r := range rows {
				if r["provider"] != tc.provider {
					t.Errorf("%s: provider %q, want %q", r["email"], r["provider"], tc.provider)
				}
			}
			if got := watch.Max(); got != tc.limit {
				t.Errorf("at most %d sessions open at once to the operator's %d hosts, want %d (its limit, reached)",
					got, len(f.hosts), tc.limit)
			}
			if got := f.touched(h.sim); got != len(f.hosts) {
				t.Errorf("%d of %d hosts were connected to", got, len(f.hosts))
			}
		})
	}
}

// While one operator holds all the sessions it allows (its hosts are slow
// to answer), hosts of other operators are served: only the operator's
// own hosts wait.
func TestOperatorAtItsLimitHoldsUpNoOther(t *testing.T) {
	var w mailsim.World
	// The tenants' hosts never answer a RCPT while the test runs.
	f := newFleet(&w, 6, 51, "stuck", func(i int) string { return fmt.Sprintf("t%d.tenants.test", i) },
		mailsim.Host{RcptDelay: time.Hour})
	other := newFleet(&w, 3, 52, "other", func(i int) string { return fmt.Sprintf("mx%d.other.test", i) }, mailsim.Host{})
	h := newHarness(t, w)
	h.cfg.Operators = operatorTable(t, tenantsTable)
	h.cfg.NoCatchAllCheck = true
	var log resultLog
	h.cfg.OnResult = log.add
	watch := h.sim.WatchConcurrency(f.hosts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := h.start(ctx, addressesCSV(3, append(slices.Clone(f.domains), other.domains...)...))
	waitFor(t, "3 sessions open to the tenants", func() bool { return watch.Open() == 3 })
	for _, d := range other.domains {
		waitFor(t, "the rows of "+d, func() bool { return log.count(d) == 3 })
	}
	if got := watch.Open(); got != 3 {
		t.Errorf("%d sessions open to the tenants, want 3", got)
	}
	if got := f.connections(h.sim); got != 3 {
		t.Errorf("%d connections to the tenants' hosts, want 3: the others wait for the operator's sessions", got)
	}
	cancel()
	rows, _, err := wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want cancelled", err)
	}
	for _, r := range rows {
		if strings.Contains(r["email"], ".other.test") {
			if r["status"] != "deliverable" {
				t.Errorf("%s: %s/%s", r["email"], r["status"], r["reason"])
			}
		}
	}
	if got := watch.Max(); got != 3 {
		t.Errorf("peak %d sessions to the tenants, want 3", got)
	}
}

// An operator that pushes back (421) more than the budget's share pauses:
// none of its hosts gets a connection until the pause is over, also those
// never asked before; a host of another operator goes on meanwhile.
func TestPushbackPausesEveryHostOfTheOperator(t *testing.T) {
	var w mailsim.World
	// EHLO and MAIL pass, the first RCPT of every connection gets 421.
	f := newFleet(&w, 6, 53, "busy", func(i int) string { return fmt.Sprintf("t%d.tenants.test", i) },
		mailsim.Host{Close421After: 2})
	other := newFleet(&w, 1, 54, "calm", func(i int) string { return fmt.Sprintf("mx%d.calm.test", i) }, mailsim.Host{})
	h, fc := newFakeClockHarness(t, w)
	h.cfg.Operators = operatorTable(t, strings.Replace(tenantsTable, "sessions: 3", "sessions: 1", 1))
	// One session's pushback is enough to pause (half the window).
	budget := egress.NewLocalBudget(egress.BudgetConfig{Clock: fc, PushbackWindow: 2, MaxPause: 2 * time.Minute})
	h.cfg.Budget = budget
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.MaxAttempts = 2
	h.cfg.NoCatchAllCheck = true
	var log resultLog
	h.cfg.OnResult = log.add
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	wait := h.start(ctx, addressesCSV(2, append(slices.Clone(f.domains), other.domains...)...))

	waitFor(t, "the operator's pause", func() bool { return !budget.PausedUntil("tenants").IsZero() })
	until := budget.PausedUntil("tenants")
	if d := until.Sub(fc.Now()); d != time.Minute {
		t.Errorf("paused for %v, want the operator's backoff 1m", d)
	}
	// The other operator is not paused.
	waitFor(t, "the rows of "+other.domains[0], func() bool { return log.count(other.domains[0]) == 2 })

	// Up to the last moment of the pause, the operator's hosts see the
	// session that pushed back and at most one more: the worker that
	// ended it hands its session on before it reports the pushback
	// (worker.go), so one session may slip in before the pause is
	// decided; it sees the pause and quits without asking. Every other
	// host waits, though its own back-off (1s) is long over.
	fc.Advance(time.Minute - time.Millisecond)
	waitForTimer(t, fc, 2)
	atEnd := f.connections(h.sim)
	if touched := f.touched(h.sim); atEnd > 2 || touched > 2 {
		t.Fatalf("%d connections to %d of the operator's %d hosts during its pause, want at most 2", atEnd, touched, len(f.hosts))
	}
	fc.Advance(time.Millisecond)
	waitFor(t, "a connection after the pause", func() bool { return f.connections(h.sim) > atEnd })

	rows, err := finishBusyHost(t, fc, wait)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkEveryRowOnce(t, rows, 2*(len(f.domains)+1))
	for _, r := range rows {
		if strings.Contains(r["email"], ".busy.test") && (r["status"] != "unknown" || r["smtp_code"] != "421") {
			t.Errorf("%s: %s/%s code %s, want unknown after 421", r["email"], r["status"], r["reason"], r["smtp_code"])
		}
	}
	if got := f.touched(h.sim); got != len(f.hosts) {
		t.Errorf("%d of %d hosts asked in the end", got, len(f.hosts))
	}
}

// sourceIPs are the source addresses of the egress tests: loopback
// addresses the kernel lets any socket bind.
var sourceIPs = []string{"127.0.0.101", "127.0.0.102", "127.0.0.103"}

func newEgressPool(t *testing.T, ips ...string) *egress.Pool {
	t.Helper()
	p, err := egress.New(egress.Config{SourceIPs: ips})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newRecordingHarness is newHarness with the servers remembering who
// asked about each recipient.
func newRecordingHarness(t *testing.T, w mailsim.World) *harness {
	t.Helper()
	return newHarnessOpts(t, w, mailsim.Options{RecordRecipients: true})
}

// askedBy is who asked host about addr, and how often.
func askedBy(h *harness, host, addr string) map[string]int {
	return h.sim.RecipientClients(host, addr)
}

// Connections rotate over the source addresses; the servers see each
// session come from one of them, in turn; every row names the egress
// that asked its address, which is the client the server saw; and the
// operator's session limit holds for all egresses together.
func TestSourceAddressesRotateWithinOperatorLimits(t *testing.T) {
	var w mailsim.World
	f := newFleet(&w, 4, 55, "rot", func(i int) string { return fmt.Sprintf("t%d.tenants.test", i) },
		mailsim.Host{RcptDelay: 30 * time.Millisecond})
	h := newRecordingHarness(t, w)
	h.cfg.Operators = operatorTable(t, strings.Replace(tenantsTable, "sessions: 3", "sessions: 2", 1))
	h.cfg.Egress = newEgressPool(t, sourceIPs...)
	h.cfg.NoCatchAllCheck = true
	h.cfg.MaxConnectionsPerHost = 3
	h.cfg.NewConnectionBacklog = 1
	h.cfg.RcptPerConnection = 3
	watch := h.sim.WatchConcurrency(f.hosts...)
	const perDomain = 12
	rows, sum := h.run(addressesCSV(perDomain, f.domains...))
	checkEveryRowOnce(t, rows, perDomain*len(f.domains))
	checkStatuses(t, rows)

	perIP := map[string]int{}
	for _, host := range f.hosts {
		n := 0
		for _, ip := range sourceIPs {
			c := h.sim.ConnectionsFrom(host, ip)
			perIP[ip] += c
			n += c
		}
		if all := h.sim.Connections(host); n != all {
			t.Errorf("%s: %d connections from the source addresses, %d in all", host, n, all)
		}
	}
	total := 0
	for _, n := range perIP {
		total += n
	}
	if total != sum.Connections || total < 2*len(sourceIPs) {
		t.Fatalf("%d connections seen by the servers, %d in the summary: want equal, and several per address", total, sum.Connections)
	}
	// Rotation per connection: the counts differ by at most one.
	counts := slices.Collect(maps.Values(perIP))
	if slices.Max(counts)-slices.Min(counts) > 1 {
		t.Errorf("connections per source address %v: not rotated", perIP)
	}
	if got := watch.Max(); got != 2 {
		t.Errorf("at most %d sessions at once to the operator from %d egresses, want its limit 2", got, len(sourceIPs))
	}
	for _, r := range rows {
		host := r["mx_host"]
		by := askedBy(h, host, r["email"])
		if len(by) != 1 || by[r["egress"]] != 1 {
			t.Errorf("%s: egress column %q, but %s was asked by %v", r["email"], r["egress"], host, by)
		}
	}
}

// blockWorld is the operator "blk" (*.blk.test, one session at a time):
// mx1.blk.test serves blk1.test and refuses the clients blocked with a
// Spamhaus-style 554 5.7.1 (at the greeting, or at each RCPT); mx2.blk.test
// serves blk2.test and refuses nobody.
func blockWorld(blocked []string, atRcpt bool) mailsim.World {
	var boxes []string
	for j := range 10 {
		boxes = append(boxes, fmt.Sprintf("ok%d", j))
	}
	return mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx1.blk.test", IP: "127.0.56.10", BlockClients: blocked, BlockAtRcpt: atRcpt},
			{Name: "mx2.blk.test", IP: "127.0.56.11"},
		},
		Domains: []mailsim.Domain{
			{Name: "blk1.test", MX: []mailsim.MX{{Preference: 10, Host: "mx1.blk.test"}}, Mailboxes: boxes},
			{Name: "blk2.test", MX: []mailsim.MX{{Preference: 10, Host: "mx2.blk.test"}}, Mailboxes: boxes},
		},
	}
}

const blkTable = `
operators:
  - name: blk
    mx: ["*.blk.test"]
    sessions: 1
    rcpt_per_second: 0
`

// refusalLog records Config.OnRefused calls, and what mx2.blk.test had
// seen from the refused egress at that moment.
type refusalLog struct {
	mu    sync.Mutex
	calls []string
	mx2   map[string]int // refused egress -> its connections to mx2 when refused
}

func newBlockHarness(t *testing.T, blocked []string, atRcpt bool) (*harness, *refusalLog) {
	t.Helper()
	h := newRecordingHarness(t, blockWorld(blocked, atRcpt))
	h.cfg.Operators = operatorTable(t, blkTable)
	h.cfg.Egress = newEgressPool(t, sourceIPs[:2]...)
	h.cfg.NoCatchAllCheck = true
	h.cfg.NoPositiveControl = true
	h.cfg.MaxConnectionsPerHost = 1
	h.cfg.RcptPerTransaction = 5
	h.cfg.RcptPerConnection = 5
	log := &refusalLog{mx2: map[string]int{}}
	h.cfg.OnRefused = func(eg, op, reason string) {
		log.mu.Lock()
		defer log.mu.Unlock()
		log.calls = append(log.calls, eg+" by "+op+": "+reason)
		// The operator has one session at a time: nothing from eg to
		// mx2 is in flight now.
		log.mx2[eg] = h.sim.ConnectionsFrom("mx2.blk.test", eg)
	}
	return h, log
}

// A host that refuses one egress with a Spamhaus-style 5.7.1: that egress
// asks the operator (all its hosts) nothing more; what it was refused
// stays unknown/policy_block and is not asked again from the other egress,
// which goes on with everything else; the refusal is recorded once.
func TestRefusedEgressStopsAskingTheOperator(t *testing.T) {
	for _, atRcpt := range []bool{false, true} {
		name := "at the greeting"
		if atRcpt {
			name = "at RCPT"
		}
		t.Run(name, func(t *testing.T) {
			const perDomain = 20
			blocked, free := sourceIPs[0], sourceIPs[1]
			h, log := newBlockHarness(t, []string{blocked}, atRcpt)
			// blk2.test takes one session: whichever host comes first,
			// the refused egress reaches mx1 within its first two.
			rows, _ := h.run(addressesCSV(perDomain, "blk1.test") + strings.TrimPrefix(addressesCSV(3, "blk2.test"), "email\n"))
			checkEveryRowOnce(t, rows, perDomain+3)

			if got := h.sim.ConnectionsFrom("mx1.blk.test", blocked); got != 1 {
				t.Errorf("%d connections from the refused egress to the refusing host, want 1", got)
			}
			if len(log.calls) != 1 || !strings.HasPrefix(log.calls[0], blocked+" by blk: ") {
				t.Errorf("OnRefused calls %q, want one for %s by blk", log.calls, blocked)
			}
			refusals := h.cfg.Egress.Refusals()
			if len(refusals) != 1 || refusals[0].Egress != blocked || refusals[0].Operator != "blk" || refusals[0].Reason == "" {
				t.Errorf("Refusals() = %+v", refusals)
			}
			if seen, ok := log.mx2[blocked]; ok {
				if got := h.sim.ConnectionsFrom("mx2.blk.test", blocked); got != seen {
					t.Errorf("the refused egress connected to the operator's other host after the refusal (%d, %d before)", got, seen)
				}
			}
			refused := 0
			var neverAsked []string
			for _, r := range rows {
				by := askedBy(h, r["mx_host"], r["email"])
				switch {
				case r["reason"] == verdict.ReasonPolicyBlock && len(by) == 0:
					// Refused without being asked: the refusal of one
					// egress was taken for the host's.
					neverAsked = append(neverAsked, r["email"])
				case r["reason"] == verdict.ReasonPolicyBlock:
					refused++
					if r["egress"] != blocked || r["smtp_code"] != "554" || !atRcpt {
						t.Errorf("%s: policy_block from egress %q code %s; only RCPTs refused at %s are", r["email"], r["egress"], r["smtp_code"], blocked)
					}
					if len(by) != 1 || by[blocked] != 1 {
						t.Errorf("%s was refused, then asked again: %v", r["email"], by)
					}
				case r["status"] == "deliverable" || r["status"] == "undeliverable":
					if len(by) != 1 || by[r["egress"]] != 1 {
						t.Errorf("%s: egress %q, asked by %v", r["email"], r["egress"], by)
					}
					if r["mx_host"] == "mx1.blk.test" && r["egress"] != free {
						t.Errorf("%s answered by mx1 through %q", r["email"], r["egress"])
					}
				default:
					t.Errorf("%s: %s/%s (egress %q): every address is either refused with its egress or verified by the other",
						r["email"], r["status"], r["reason"], r["egress"])
				}
			}
			if len(neverAsked) > 0 {
				t.Errorf("%d addresses are unknown/policy_block without ever being asked (e.g. %s): the greeting that refused %s "+
					"gave the host up for every egress instead of going on from %s", len(neverAsked), neverAsked[0], blocked, free)
			}
			if atRcpt && refused != 5 {
				t.Errorf("%d addresses refused, want the 5 of the one transaction asked from %s", refused, blocked)
			}
		})
	}
}

// Once every egress has been refused by the operator, its remaining
// addresses are unknown/policy_block without another connection.
func TestEveryEgressRefused(t *testing.T) {
	for _, atRcpt := range []bool{false, true} {
		name := "at the greeting"
		if atRcpt {
			name = "at RCPT"
		}
		t.Run(name, func(t *testing.T) {
			const perDomain = 20
			h, log := newBlockHarness(t, sourceIPs[:2], atRcpt)
			rows, _ := h.run(addressesCSV(perDomain, "blk1.test"))
			checkEveryRowOnce(t, rows, perDomain)
			for _, ip := range sourceIPs[:2] {
				if got := h.sim.ConnectionsFrom("mx1.blk.test", ip); got != 1 {
					t.Errorf("%d connections from %s, want 1: each egress is refused once, then asks no more", got, ip)
				}
			}
			if got := h.sim.Connections("mx1.blk.test"); got != 2 {
				t.Errorf("%d connections, want 2", got)
			}
			if len(log.calls) != 2 {
				t.Errorf("OnRefused calls %q, want one per egress", log.calls)
			}
			asked := 0
			for _, r := range rows {
				if r["status"] != "unknown" || r["reason"] != verdict.ReasonPolicyBlock {
					t.Errorf("%s: %s/%s, want unknown/policy_block", r["email"], r["status"], r["reason"])
				}
				by := askedBy(h, "mx1.blk.test", r["email"])
				switch {
				case len(by) == 0:
					if r["egress"] != "" {
						t.Errorf("%s: never asked, but egress %q", r["email"], r["egress"])
					}
				case len(by) == 1 && by[r["egress"]] == 1:
					asked++
				default:
					t.Errorf("%s: egress %q, asked by %v", r["email"], r["egress"], by)
				}
			}
			if want := 0; atRcpt {
				if want = 10; asked != want {
					t.Errorf("%d addresses asked, want %d (one transaction per egress)", asked, want)
				}
			} else if asked != want {
				t.Errorf("%d addresses asked, want none (refused at the greeting)", asked)
			}
		})
	}
}

// Domains and operators on the do-not-probe list are unknown/skipped and
// nothing is asked of them: no connection, no MX lookup of a listed domain
// (or a domain under it), no address lookup of a listed operator's host.
func TestDoNotProbe(t *testing.T) {
	w := mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx.skip.test", IP: "127.0.57.10"},
			{Name: "mx1.shy.test", IP: "127.0.57.11"},
			{Name: "mx.fine.test", IP: "127.0.57.12"},
		},
		Domains: []mailsim.Domain{
			{Name: "skip.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.skip.test"}}, Mailboxes: []string{"ok0", "ok1"}},
			{Name: "sub.skip.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.skip.test"}}, Mailboxes: []string{"ok0", "ok1"}},
			{Name: "shyco.test", MX: []mailsim.MX{{Preference: 10, Host: "mx1.shy.test"}}, Mailboxes: []string{"ok0", "ok1"}},
			{Name: "fine.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.fine.test"}}, Mailboxes: []string{"ok0", "ok1"}},
		},
	}
	h := newHarness(t, w)
	h.cfg.Operators = operatorTable(t, "operators:\n  - name: shy\n    mx: [\"*.shy.test\"]\n")
	h.cfg.DoNotProbe = DoNotProbe{Domains: map[string]bool{"skip.test": true}, Operators: map[string]bool{"shy": true}}
	rows, sum := h.run(addressesCSV(2, "skip.test", "sub.skip.test", "shyco.test", "fine.test"))
	checkEveryRowOnce(t, rows, 8)
	for _, r := range rows {
		if strings.HasSuffix(r["email"], "@fine.test") {
			continue
		}
		if r["status"] != "unknown" || r["reason"] != verdict.ReasonSkipped || r["attempts"] != "0" || r["egress"] != "" || r["smtp_code"] != "" {
			t.Errorf("%s: %s/%s attempts %s egress %q code %q, want unknown/skipped, never asked",
				r["email"], r["status"], r["reason"], r["attempts"], r["egress"], r["smtp_code"])
		}
	}
	checkStatuses(t, filterRows(rows, "@fine.test"))
	for _, host := range []string{"mx.skip.test", "mx1.shy.test"} {
		if got := h.sim.Connections(host); got != 0 {
			t.Errorf("%d connections to %s", got, host)
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if got := h.sim.DNSQueries(host, qt); got != 0 {
				t.Errorf("%d %s queries for the address of %s", got, dns.TypeToString[qt], host)
			}
		}
	}
	for _, dom := range []string{"skip.test", "sub.skip.test"} {
		for _, qt := range []uint16{dns.TypeMX, dns.TypeA, dns.TypeAAAA} {
			if got := h.sim.DNSQueries(dom, qt); got != 0 {
				t.Errorf("%d %s queries for the listed domain %s", got, dns.TypeToString[qt], dom)
			}
		}
	}
	if got := h.sim.DNSQueries("shyco.test", dns.TypeMX); got == 0 {
		t.Error("shyco.test's MX was not looked up: its operator could not have been known")
	}
	if sum.ByReason[verdict.ReasonSkipped] != 6 || sum.Connections != 1 {
		t.Errorf("summary: %d skipped, %d connections; want 6 and 1", sum.ByReason[verdict.ReasonSkipped], sum.Connections)
	}
}

func filterRows(rows []row, suffix string) []row {
	var out []row
	for _, r := range rows {
		if strings.HasSuffix(r["email"], suffix) {
			out = append(out, r)
		}
	}
	return out
}

// The circuit breakers stop a run whose MX hosts cannot be reached at TCP
// (port 25 blocked) or whose domains come back NXDOMAIN (a lying
// resolver) with a *TrippedError; what was decided is written.
func TestBreakersStopTheRun(t *testing.T) {
	t.Run("hosts", func(t *testing.T) {
		var w mailsim.World
		down := newFleet(&w, 25, 58, "down", func(i int) string { return fmt.Sprintf("mx%d.down.test", i) }, mailsim.Host{Down: true})
		up := newFleet(&w, 2, 59, "up", func(i int) string { return fmt.Sprintf("mx%d.up.test", i) }, mailsim.Host{})
		h := newHarness(t, w)
		h.cfg.HostBreaker = newBreaker(t, 20)
		h.cfg.DNSWorkers = 4
		rows, sum, err := h.start(context.Background(), addressesCSV(1, append(down.domains, up.domains...)...))()
		var te *TrippedError
		if !errors.As(err, &te) || te.What != "hosts" || te.Failed < 18 || te.Seen < 20 {
			t.Fatalf("Run: %v, want a TrippedError of the hosts breaker", err)
		}
		if !strings.Contains(err.Error(), "port 25") || !strings.Contains(err.Error(), "--proxy") {
			t.Errorf("message %q does not say what to do", err)
		}
		written := 0
		for _, n := range sum.ByStatus {
			written += n
		}
		if len(rows) != written {
			t.Errorf("%d rows written, summary counts %v", len(rows), sum.ByStatus)
		}
		if len(rows) >= 27 {
			t.Errorf("%d rows: the run did not stop early", len(rows))
		}
	})
	t.Run("nxdomain", func(t *testing.T) {
		var w mailsim.World
		up := newFleet(&w, 2, 60, "real", func(i int) string { return fmt.Sprintf("mx%d.real.test", i) }, mailsim.Host{})
		h := newHarness(t, w)
		h.cfg.DomainBreaker = newBreaker(t, 50)
		h.cfg.DNSWorkers = 4
		var doms []string
		for i := range 80 {
			doms = append(doms, fmt.Sprintf("gone%d.test", i))
		}
		rows, _, err := h.start(context.Background(), addressesCSV(1, append(up.domains, doms...)...))()
		var te *TrippedError
		if !errors.As(err, &te) || te.What != "domains" || te.Seen < 50 {
			t.Fatalf("Run: %v, want a TrippedError of the NXDOMAIN breaker", err)
		}
		if !strings.Contains(err.Error(), "resolver") {
			t.Errorf("message %q does not name the resolver", err)
		}
		if len(rows) >= 82 {
			t.Errorf("%d rows: the run did not stop early", len(rows))
		}
	})
}

func newBreaker(t *testing.T, minSample int) *egress.Breaker {
	t.Helper()
	b, err := egress.NewBreaker(egress.BreakerConfig{MinSample: minSample, Threshold: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
