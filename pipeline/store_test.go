package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/store"
)

// newTestClock is a clock the test moves: the pipeline's checked_at
// (Config.Now) and the store's freshness (store.Options.Now) both read it.
func newTestClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// openStore opens a store in a directory of the test's, on clock.
func openStore(t *testing.T, clock *clockwork.FakeClock, f store.Freshness) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"), store.Options{Now: clock.Now, Freshness: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeInput is a list with every kind of verdict the store keeps, a row
// without an address, and a duplicate.
const storeInput = "email,n\n" +
	"alice@acme.test,1\n" +
	"bob@acme.test,2\n" +
	"nobody@acme.test,3\n" +
	"full@acme.test,4\n" +
	"ann@one.test,5\n" +
	"ben@two.test,6\n" +
	"x@nullmx.test,7\n" +
	"x@nonexistent.test,8\n" +
	"not an address,9\n" +
	"alice@acme.test,10\n"

const storeInputRows = 10

// sameExceptSource reports the columns in which two runs' rows differ,
// other than source (and checked_at for rows decided again).
func sameExceptSource(t *testing.T, first, second []row, alsoCheckedAt bool) {
	t.Helper()
	byRow := map[string]row{}
	for _, r := range first {
		byRow[r["row"]] = r
	}
	for _, r := range second {
		f := byRow[r["row"]]
		for col, v := range r {
			if col == "source" || (col == "checked_at" && alsoCheckedAt) {
				continue
			}
			if f[col] != v {
				t.Errorf("row %s: %s is %q, was %q", r["row"], col, v, f[col])
			}
		}
	}
}

func sources(rows []row) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		m[r["source"]]++
	}
	return m
}

// A second run of the same list reuses every fresh verdict: nothing is
// asked of any server, the rows are those of the first run but for the
// source column, and checked_at is the first run's.
func TestStoreReusesFreshVerdicts(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, world())
	h.cfg.Store, h.cfg.Now = st, clock.Now

	first, sum1 := h.run(storeInput)
	checkEveryRowOnce(t, first, storeInputRows)
	if s := sources(first); s["probed"] != storeInputRows {
		t.Fatalf("first run sources %v, want every row probed", s)
	}
	if sum1.Probed != storeInputRows || sum1.Stored != 0 {
		t.Errorf("first run: %d probed, %d stored", sum1.Probed, sum1.Stored)
	}
	rcpt, mx := h.sim.TotalCommands("RCPT"), h.sim.DNSQueries("acme.test", dns.TypeMX)

	clock.Advance(time.Hour)
	second, sum2 := h.run(storeInput)
	checkEveryRowOnce(t, second, storeInputRows)
	if got := h.sim.TotalCommands("RCPT"); got != rcpt {
		t.Errorf("the second run sent %d RCPT, want none: every verdict was fresh", got-rcpt)
	}
	if got := h.sim.DNSQueries("acme.test", dns.TypeMX); got != mx {
		t.Errorf("the second run looked acme.test up again")
	}
	for _, r := range second {
		want := "stored"
		if r["email"] == "not an address" {
			want = "probed" // no address: judged again, nothing to store
		}
		if r["source"] != want {
			t.Errorf("row %s %s: source %q, want %q", r["row"], r["email"], r["source"], want)
		}
	}
	if sum2.Stored != storeInputRows-1 || sum2.Probed != 1 {
		t.Errorf("second run: %d stored, %d probed; want %d, 1", sum2.Stored, sum2.Probed, storeInputRows-1)
	}
	// Identical but for the source, and checked_at of the row judged again.
	var invalid []row
	var rest []row
	for _, r := range second {
		if r["email"] == "not an address" {
			invalid = append(invalid, r)
		} else {
			rest = append(rest, r)
		}
	}
	sameExceptSource(t, first, rest, false)
	sameExceptSource(t, first, invalid, true)
}

// A verdict gone stale is probed again; a domain whose catch-all answer is
// still fresh is not checked again, and one whose answer is stale is.
func TestStoreStaleAndCatchAll(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, world())
	h.cfg.Store, h.cfg.Now = st, clock.Now
	h.cfg.NoPositiveControl = true
	h.run("email\nalice@acme.test\nbob@acme.test\n")
	rcpt := h.sim.Commands("mx1.acme.test", "RCPT")
	if rcpt != 3 {
		t.Fatalf("first run: %d RCPT, want 2 and one catch-all check", rcpt)
	}

	// A day later: the two are fresh; a new address of the domain is asked
	// alone, without a catch-all check (its answer is 7 days fresh).
	clock.Advance(24 * time.Hour)
	rows, _ := h.run("email\nalice@acme.test\nbob@acme.test\ncarol@acme.test\n")
	if got := h.sim.Commands("mx1.acme.test", "RCPT") - rcpt; got != 1 {
		t.Errorf("a new address of a domain with a fresh catch-all answer cost %d RCPT, want 1", got)
	}
	if e := byEmail(rows); e["carol@acme.test"]["source"] != "probed" || e["alice@acme.test"]["source"] != "stored" ||
		e["carol@acme.test"]["catch_all"] != "false" {
		t.Errorf("rows %v", rows)
	}

	// 31 days later: everything is stale (30 days), the catch-all answer
	// too (7 days): all asked again, with a check.
	rcpt = h.sim.Commands("mx1.acme.test", "RCPT")
	clock.Advance(31 * 24 * time.Hour)
	rows, sum := h.run("email\nalice@acme.test\nbob@acme.test\n")
	if got := h.sim.Commands("mx1.acme.test", "RCPT") - rcpt; got != 3 {
		t.Errorf("stale verdicts cost %d RCPT, want 2 and a catch-all check", got)
	}
	if s := sources(rows); s["probed"] != 2 || sum.Stored != 0 {
		t.Errorf("stale verdicts: sources %v, summary stored %d", s, sum.Stored)
	}
}

// --refresh probes everything and still writes; --max-age caps freshness.
func TestStoreRefreshAndMaxAge(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, world())
	h.cfg.Store, h.cfg.Now = st, clock.Now
	h.run(storeInput)
	rcpt := h.sim.TotalCommands("RCPT")

	clock.Advance(time.Minute)
	h.cfg.Refresh = true
	rows, sum := h.run(storeInput)
	if got := h.sim.TotalCommands("RCPT") - rcpt; got != rcpt {
		t.Errorf("--refresh sent %d RCPT, want %d, as the first run", got, rcpt)
	}
	if sum.Stored != 0 || sources(rows)["probed"] != storeInputRows {
		t.Errorf("--refresh: %d stored, sources %v", sum.Stored, sources(rows))
	}
	v, err := st.Get(context.Background(), []string{store.DefaultNamespace}, "alice@acme.test")
	if err != nil || !v.CheckedAt.Equal(clock.Now()) {
		t.Errorf("--refresh did not write its verdict: %+v %v (want checked at %v)", v, err, clock.Now())
	}

	// A store whose freshness is capped at 30 minutes: an hour later,
	// everything is probed again.
	clock2 := newTestClock()
	st2 := openStore(t, clock2, store.Freshness{MaxAge: 30 * time.Minute})
	h2 := newHarness(t, world())
	h2.cfg.Store, h2.cfg.Now = st2, clock2.Now
	h2.run(storeInput)
	rcpt = h2.sim.TotalCommands("RCPT")
	clock2.Advance(10 * time.Minute)
	if _, sum := h2.run(storeInput); sum.Stored == 0 || h2.sim.TotalCommands("RCPT") != rcpt {
		t.Errorf("10 minutes later, within --max-age: %d stored, %d RCPT more", sum.Stored, h2.sim.TotalCommands("RCPT")-rcpt)
	}
	clock2.Advance(time.Hour)
	if _, sum := h2.run(storeInput); sum.Stored != 0 || h2.sim.TotalCommands("RCPT") != 2*rcpt {
		t.Errorf("past --max-age: %d stored, %d RCPT more, want 0 stored and %d RCPT", sum.Stored, h2.sim.TotalCommands("RCPT")-rcpt, rcpt)
	}
}

// Verdicts are read only from the run's own namespace and the shared ones
// it names.
func TestStoreNamespaces(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, world())
	h.cfg.Store, h.cfg.Now = st, clock.Now
	in := "email\nalice@acme.test\nann@one.test\n"

	h.cfg.StoreNamespaces = []string{"acme"}
	h.run(in)
	rcpt := h.sim.TotalCommands("RCPT")

	h.cfg.StoreNamespaces = []string{"globex"}
	if _, sum := h.run(in); sum.Stored != 0 || h.sim.TotalCommands("RCPT") == rcpt {
		t.Errorf("another namespace reused %d verdicts", sum.Stored)
	}
	rcpt = h.sim.TotalCommands("RCPT")

	h.cfg.StoreNamespaces = []string{"initech", "acme"} // acme shared with it
	if _, sum := h.run(in); sum.Stored != 2 || h.sim.TotalCommands("RCPT") != rcpt {
		t.Errorf("a shared namespace: %d stored, %d RCPT more", sum.Stored, h.sim.TotalCommands("RCPT")-rcpt)
	}
	// Written to the run's own namespace only: initech has nothing yet.
	h.cfg.StoreNamespaces = []string{"initech"}
	if _, sum := h.run(in); sum.Stored != 0 {
		t.Errorf("verdicts read from a shared namespace were written to the run's own: %d stored", sum.Stored)
	}
}

// A store that fails is reported once and the run goes on without it.
func TestStoreFailureDoesNotStopTheRun(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, world())
	h.cfg.Store, h.cfg.Now = st, clock.Now
	var reported []error
	var mu sync.Mutex
	h.cfg.OnStoreError = func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}
	rows, sum := h.run(storeInput)
	checkEveryRowOnce(t, rows, storeInputRows)
	if len(reported) != 1 {
		t.Errorf("the store's failure was reported %d times, want once: %v", len(reported), reported)
	}
	if sum.StoreError == "" || sum.Probed != storeInputRows {
		t.Errorf("summary: store error %q, %d probed", sum.StoreError, sum.Probed)
	}
}

// What a host taught us about its limits is remembered: the next run keeps
// to them from its first transaction on.
func TestStoreRemembersRecipientLimits(t *testing.T) {
	w := mailsim.World{
		Hosts:   []mailsim.Host{{Name: "mx.capped.test", IP: "127.0.0.59", MaxRecipients: 4}},
		Domains: []mailsim.Domain{{Name: "capped.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.capped.test"}}}},
	}
	var first, second strings.Builder
	first.WriteString("email\n")
	second.WriteString("email\n")
	for i := range 20 {
		w.Domains[0].Mailboxes = append(w.Domains[0].Mailboxes, fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i))
		fmt.Fprintf(&first, "a%d@capped.test\n", i)
		fmt.Fprintf(&second, "b%d@capped.test\n", i)
	}
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	run := func(in string) ([]row, Summary) {
		h := newHarness(t, w)
		h.cfg.Store, h.cfg.Now = st, clock.Now
		h.cfg.NoPositiveControl, h.cfg.NoCatchAllCheck = true, true
		return h.run(in)
	}
	if _, sum := run(first.String()); sum.Hosts[0].Replies4xx == 0 {
		t.Fatal("the first run was never refused for too many recipients: nothing to learn")
	}
	info, err := st.MX(context.Background(), "mx.capped.test")
	if err != nil || info.RcptPerTransaction != 4 {
		t.Fatalf("stored MX knowledge %+v, %v; want 4 recipients per transaction", info, err)
	}
	// A new run, other addresses: no refusal at all.
	rows, sum := run(second.String())
	checkEveryRowOnce(t, rows, 20)
	if sum.Hosts[0].Replies4xx != 0 {
		t.Errorf("the second run was refused %d times for too many recipients: the stored limit was not used", sum.Hosts[0].Replies4xx)
	}
	for _, r := range rows {
		if r["status"] != "deliverable" {
			t.Errorf("%s: %s/%s", r["email"], r["status"], r["reason"])
		}
	}
}

// A refusal of our egress is remembered against that egress: the next run
// does not ask the operator from it (for RefusalMemory), and says why.
func TestStoreRemembersRefusals(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.picky.test", BlockClients: []string{"127.0.0.1"}})
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	run := func(h *harness, in string) ([]row, []string) {
		t.Helper()
		pool, err := egress.New(egress.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var refused []string
		var mu sync.Mutex
		h.cfg.Egress = pool
		h.cfg.Store, h.cfg.Now = st, clock.Now
		h.cfg.OnRefused = func(eg, op, reason string) {
			mu.Lock()
			refused = append(refused, eg+" "+op+" "+reason)
			mu.Unlock()
		}
		rows, _ := h.run(in)
		return rows, refused
	}
	h := newHarness(t, w)
	rows, refused := run(h, "email\nok1@picky.test\nok2@picky.test\n")
	if len(refused) != 1 || rows[0]["reason"] != "policy_block" {
		t.Fatalf("first run: refusals %q, rows %v", refused, rows)
	}
	conns := h.sim.Connections("mx.picky.test")
	info, err := st.MX(context.Background(), "mx.picky.test")
	if err != nil || len(info.Refusals) != 1 || info.Refusals[0].Egress != egress.DirectName {
		t.Fatalf("stored refusals %+v, %v", info.Refusals, err)
	}

	// An hour later, a new process: the egress is not used for that
	// operator at all.
	clock.Advance(time.Hour)
	rows, refused = run(h, "email\nok3@picky.test\nok4@picky.test\n")
	if got := h.sim.Connections("mx.picky.test") - conns; got != 0 {
		t.Errorf("the refused egress connected %d times again", got)
	}
	if len(refused) != 1 || !strings.Contains(refused[0], "remembered") {
		t.Errorf("the remembered refusal was not told: %q", refused)
	}
	for _, r := range rows {
		if r["status"] != "unknown" || r["reason"] != "policy_block" {
			t.Errorf("%s: %s/%s, want unknown/policy_block", r["email"], r["status"], r["reason"])
		}
	}

	// Past RefusalMemory the egress may try again.
	clock.Advance(2 * defaultRefusalMemory)
	run(h, "email\nok5@picky.test\n")
	if h.sim.Connections("mx.picky.test") == conns {
		t.Error("a refusal older than RefusalMemory still kept the egress away")
	}
}

// find reuses stored verdicts of candidate addresses too: the same people
// again cost no RCPT and get the same answers.
func TestFindReusesStoredVerdicts(t *testing.T) {
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, findWorld())
	h.cfg.Store, h.cfg.Now = st, clock.Now
	people := "first_name,last_name,domain\n" +
		"Ada,Lovelace,dotted.test\n" +
		"Grace,Hopper,initial.test\n" +
		"Ada,Lovelace,any.test\n"
	first, _ := h.runFind(people, FindConfig{})
	rcpt := h.sim.TotalCommands("RCPT")
	if rcpt == 0 {
		t.Fatal("the first run asked nothing")
	}
	clock.Advance(time.Hour)
	second, _ := h.runFind(people, FindConfig{})
	if got := h.sim.TotalCommands("RCPT") - rcpt; got != 0 {
		t.Errorf("the second run sent %d RCPT, want none: every candidate's verdict was fresh", got)
	}
	checkEveryRowOnce(t, second, 3)
	byRow := map[string]row{}
	for _, r := range first {
		byRow[r["row"]] = r
	}
	for _, r := range second {
		f := byRow[r["row"]]
		for _, col := range []string{"email", "status", "reason", "confidence", "pattern", "catch_all", "checked_at"} {
			if f[col] != r[col] {
				t.Errorf("row %s: %s %q, the first run said %q", r["row"], col, r[col], f[col])
			}
		}
	}
}

// A remembered refusal binds the egress that was refused, not the others:
// the next run asks the operator from the egress it did not refuse.
func TestStoredRefusalBindsOnlyTheRefusedEgress(t *testing.T) {
	w := protoWorld(mailsim.Host{Name: "mx.picky.test", BlockClients: []string{"127.0.0.81"}})
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, w)
	run := func(in string) []row {
		t.Helper()
		pool, err := egress.New(egress.Config{SourceIPs: []string{"127.0.0.81", "127.0.0.82"}})
		if err != nil {
			t.Fatal(err)
		}
		h.cfg.Egress = pool
		h.cfg.Store, h.cfg.Now = st, clock.Now
		rows, _ := h.run(in)
		return rows
	}
	run("email\nok1@picky.test\nok2@picky.test\n")
	info, err := st.MX(context.Background(), "mx.picky.test")
	if err != nil || len(info.Refusals) != 1 || info.Refusals[0].Egress != "127.0.0.81" {
		t.Fatalf("stored refusals %+v, %v; want one, of 127.0.0.81", info.Refusals, err)
	}
	refused := h.sim.ConnectionsFrom("mx.picky.test", "127.0.0.81")
	allowed := h.sim.ConnectionsFrom("mx.picky.test", "127.0.0.82")

	clock.Advance(time.Hour)
	rows := run("email\nok3@picky.test\nok4@picky.test\n")
	if got := h.sim.ConnectionsFrom("mx.picky.test", "127.0.0.81") - refused; got != 0 {
		t.Errorf("the refused egress connected %d times again", got)
	}
	if h.sim.ConnectionsFrom("mx.picky.test", "127.0.0.82") == allowed {
		t.Error("the egress that was not refused did not ask either")
	}
	for _, r := range rows {
		if r["status"] != "deliverable" || r["egress"] != "127.0.0.82" {
			t.Errorf("%s: %s/%s via %q, want deliverable via 127.0.0.82", r["email"], r["status"], r["reason"], r["egress"])
		}
	}
}

// The store serves partitioned inputs too, domains spread over partitions
// included: the second run of thousands of rows through a memory limit of
// 50 asks nothing and reuses every address.
func TestStoreWithPartitionedInput(t *testing.T) {
	const hosts, perHost, n = 2, 3, 2000
	w := manyWorld(hosts, perHost, n)
	csvText, _ := manyRows(n, hosts*perHost)
	clock := newTestClock()
	st := openStore(t, clock, store.Freshness{})
	h := newHarness(t, w)
	h.cfg.Store, h.cfg.Now = st, clock.Now
	h.cfg.MemoryRows = 50
	h.cfg.TempDir = t.TempDir()
	first, sum1 := h.run(csvText)
	checkEveryRowOnce(t, first, n)
	if sum1.Memory.Partitions < 2 {
		t.Fatalf("%d partitions: the input did not spill", sum1.Memory.Partitions)
	}
	rcpt := h.sim.TotalCommands("RCPT")
	clock.Advance(time.Hour)
	second, sum2 := h.run(csvText)
	checkEveryRowOnce(t, second, n)
	if got := h.sim.TotalCommands("RCPT") - rcpt; got != 0 {
		t.Errorf("the second run sent %d RCPT, want none", got)
	}
	invalid := n / 97
	if sum2.Stored != n-invalid || sum2.Probed != invalid {
		t.Errorf("second run: %d stored, %d probed; want %d and %d", sum2.Stored, sum2.Probed, n-invalid, invalid)
	}
	sameExceptSource(t, first, second, true)
}
