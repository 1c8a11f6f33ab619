package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bulkverify/bulkverify/internal/natstest"
	"github.com/bulkverify/bulkverify/internal/testenv"
	"github.com/bulkverify/bulkverify/mailsim"
)

// The cluster suite runs bulkverify as a cluster on this machine: the real
// nats-server (JetStream, store in a temp dir) embedded in the test
// process, three real "bulkverify worker" processes, each sending from its
// own loopback address, and "bulkverify verify --nats" as the coordinator,
// against a mailsim world in the test process, whose servers count who
// asked what (Options.RecordRecipients) and how many sessions were open at
// once, host by host and for one operator's hosts together.
//
// Columns that legitimately differ between a cluster run and a local one:
// checked_at (when) and egress (which source address asked). Everything
// else must be equal, row for row.

// Loopback addresses of the cluster world: its hosts, each worker's source
// address, and the local run's.
const (
	bigmail1IP = "127.0.3.1"
	bigmail2IP = "127.0.3.2"
	localIP    = "127.0.4.10"
)

var workerIPs = []string{"127.0.4.1", "127.0.4.2", "127.0.4.3"}

// hostIPs of the four hosts run by no operator of the table.
func plainHost(i int) (name, ip string) {
	return fmt.Sprintf("mx.h%d.test", i), fmt.Sprintf("127.0.3.%d", 11+i)
}

// Per-host and per-operator session limits of the suite's config.
const (
	perHostCap   = 2
	bigmailCap   = 2
	addrsPerDom  = 25
	bigmailDoms  = 6
	plainDoms    = 8
	plainHostsN  = 4
	unitSizeTest = 15
)

// clusterWorld has two hosts of one operator (bigmail: sessions 2 across
// both) serving six domains, and four hosts of no operator serving eight
// domains, one of which accepts every local part. Every RCPT reply takes
// a little while, so that sessions overlap and the limits are what holds
// their number down; mailboxes u0, u2, ... exist.
func clusterWorld() mailsim.World {
	w := mailsim.World{
		Hosts: []mailsim.Host{
			{Name: "mx1.bigmail.test", IP: bigmail1IP, RcptDelay: 10 * time.Millisecond},
			{Name: "mx2.bigmail.test", IP: bigmail2IP, RcptDelay: 10 * time.Millisecond},
		},
	}
	for i := range plainHostsN {
		name, ip := plainHost(i)
		w.Hosts = append(w.Hosts, mailsim.Host{Name: name, IP: ip, RcptDelay: 10 * time.Millisecond})
	}
	mailboxes := func() []string {
		var m []string
		for u := 0; u < addrsPerDom; u += 2 {
			m = append(m, "u"+strconv.Itoa(u))
		}
		return m
	}
	for i := range bigmailDoms {
		w.Domains = append(w.Domains, mailsim.Domain{Name: fmt.Sprintf("bm%d.test", i),
			MX: []mailsim.MX{{Preference: 10, Host: fmt.Sprintf("mx%d.bigmail.test", 1+i%2)}}, Mailboxes: mailboxes()})
	}
	for i := range plainDoms {
		host, _ := plainHost(i % plainHostsN)
		w.Domains = append(w.Domains, mailsim.Domain{Name: fmt.Sprintf("d%d.test", i),
			MX: []mailsim.MX{{Preference: 10, Host: host}}, Mailboxes: mailboxes(), CatchAll: i == plainDoms-1})
	}
	w.Domains = append(w.Domains, mailsim.Domain{Name: "nullmx.test", NullMX: true})
	return w
}

// clusterInput is the suite's input: every address of the world's domains,
// some twice, and rows DNS or syntax decide.
func clusterInput() [][2]string {
	var rows [][2]string
	add := func(email string) { rows = append(rows, [2]string{"r" + strconv.Itoa(len(rows)+1), email}) }
	for u := range addrsPerDom {
		for i := range bigmailDoms {
			add(fmt.Sprintf("u%d@bm%d.test", u, i))
		}
		for i := range plainDoms {
			add(fmt.Sprintf("u%d@d%d.test", u, i))
		}
		if u%5 == 0 {
			add(fmt.Sprintf("u%d@BM1.Test", u)) // the same address again (domains are case-folded)
		}
	}
	add("not-an-address")
	add("someone@nullmx.test")
	add("someone@nonexistent.test")
	return rows
}

// suiteConfig is the config file of every process of the suite: short
// cluster timings (a killed worker's unit comes back after 2s), small
// units, many short sessions so that the limits are tried, no positive
// control (RCPT counts are the addresses' own and the checks').
func suiteConfig(dir string) string {
	ops := filepath.Join(dir, "operators.yaml")
	cfg := filepath.Join(dir, "bulkverify.yaml")
	must(os.WriteFile(ops, []byte(`operators:
  - name: bigmail
    display: Big Mail
    mx: ["*.bigmail.test"]
    sessions: `+strconv.Itoa(bigmailCap)+`
    rcpt_per_second: 40
    backoff: 1m
`), 0o644))
	must(os.WriteFile(cfg, []byte(`smtp:
  positive_control: false
  connect_timeout: 30s
  command_timeout: 30s
  idle_timeout: 1s
limits:
  max_connections_per_mx: `+strconv.Itoa(perHostCap)+`
  new_connection_backlog: 1
  rcpt_per_connection: 10
  rcpt_per_second_per_mx: 40
operators:
  file: `+ops+`
cluster:
  unit_size: `+strconv.Itoa(unitSizeTest)+`
  units_per_worker: 2
  ack_wait: 2s
  lease_ttl: 2s
  heartbeat_ttl: 2s
`), 0o644))
	return cfg
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// clusterEnv is one world, one NATS server and three workers.
type clusterEnv struct {
	t       *testing.T
	bin     string
	dir     string
	cfg     string
	sim     *mailsim.Sim
	nats    *natstest.Server
	url     string
	bigmail *mailsim.ConcurrencyWatch
	workers []*proc
}

// proc is a bulkverify process the suite started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // its stderr
	done chan struct{}
	err  error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logText is what the process wrote to stderr so far.
func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
	p.cmd.Stderr, p.cmd.Stdout = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", name, tail(p.log, 30))
		}
	})
	return p
}

// wait waits for the process to exit, failing t after d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s still running after %v:\n%s", p.name, d, tail(p.log, 30))
		return nil
	}
}

// newClusterEnv starts the world, the NATS server and three workers.
func newClusterEnv(t *testing.T, bin string) *clusterEnv {
	t.Helper()
	env := &clusterEnv{t: t, bin: bin, dir: t.TempDir()}
	env.cfg = suiteConfig(env.dir)
	sim, err := mailsim.Start(context.Background(), clusterWorld(), mailsim.Options{RecordRecipients: true})
	if err != nil {
		testenv.Unavailable(t, "e2e: the cluster world needs loopback addresses 127.0.3.x: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	env.sim = sim
	env.bigmail = sim.WatchConcurrency("mx1.bigmail.test", "mx2.bigmail.test")
	env.startNATS()
	for i, ip := range workerIPs {
		env.workers = append(env.workers, startProc(t, env.dir, "worker"+strconv.Itoa(i+1), bin,
			append([]string{"worker", "--nats", env.url, "--id", "w" + strconv.Itoa(i+1), "--source-ip", ip}, env.worldFlags()...)...))
	}
	t.Cleanup(env.stopWorkers)
	env.waitWorkers(len(workerIPs))
	return env
}

func (env *clusterEnv) startNATS() {
	env.nats = natstest.Start(env.t, server.Options{ServerName: "bulkverify-e2e", StoreDir: filepath.Join(env.dir, "jetstream")})
	env.url = env.nats.URL()
}

// restartNATS stops the server and starts it again on the same port and
// store: what JetStream stored on disk is all that survives.
func (env *clusterEnv) restartNATS() { env.nats.Restart() }

// worldFlags point a process at the world, with the suite's config.
func (env *clusterEnv) worldFlags() []string {
	return []string{"--config", env.cfg, "--resolver", env.sim.DNSAddr(), "--port", strconv.Itoa(env.sim.SMTPPort()),
		"--helo", heloName, "--no-preflight"}
}

// stopWorkers stops the workers still running as an operator would
// (SIGTERM): each must give its units back and exit 0.
func (env *clusterEnv) stopWorkers() {
	for _, w := range env.workers {
		if !w.exited() {
			w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, w := range env.workers {
		select {
		case <-w.done:
			if w.err != nil && w.cmd.ProcessState != nil && w.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				env.t.Errorf("%s exited with %v after SIGTERM:\n%s", w.name, w.err, tail(w.log, 20))
			}
		case <-time.After(60 * time.Second):
			env.t.Errorf("%s did not stop within 60s of SIGTERM", w.name)
			w.cmd.Process.Kill()
		}
	}
}

// status runs "bulkverify cluster status --json".
func (env *clusterEnv) status() (clusterStatus, error) {
	out, err := exec.Command(env.bin, "cluster", "status", "--json", "--nats", env.url).Output()
	if err != nil {
		return clusterStatus{}, fmt.Errorf("cluster status: %w", err)
	}
	var st clusterStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("cluster status --json: %w\n%s", err, out)
	}
	return st, nil
}

// clusterStatus is what the suite reads of "cluster status --json".
type clusterStatus struct {
	Workers []struct {
		ID     string   `json:"id"`
		Egress []string `json:"egress"`
	} `json:"workers"`
	Jobs []struct {
		Record struct {
			ID        string `json:"id"`
			Units     int    `json:"units"`
			Addresses int    `json:"addresses"`
		} `json:"record"`
		Progress struct {
			DoneUnits int `json:"done_units"`
		} `json:"progress"`
	} `json:"jobs"`
}

// waitWorkers polls cluster status until n workers are alive.
func (env *clusterEnv) waitWorkers(n int) {
	env.t.Helper()
	pollUntil(env.t, 60*time.Second, func() error {
		st, err := env.status()
		if err != nil {
			return err
		}
		if len(st.Workers) != n {
			return fmt.Errorf("%d workers alive, want %d", len(st.Workers), n)
		}
		return nil
	})
}

// pollUntil calls f until it returns nil, failing t with f's last error
// after d.
func pollUntil(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("still failing after %v: %v", d, err)
}

// writeInput writes rows (id, email) as CSV.
func writeInput(t *testing.T, path string, rows [][2]string) {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"id", "email"})
	for _, r := range rows {
		w.Write(r[:])
	}
	w.Flush()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// coordinator starts "bulkverify verify --nats" on in, writing out.
func (env *clusterEnv) coordinator(name, in, out string, more ...string) *proc {
	args := append([]string{"verify", "--nats", env.url, in, "-o", out, "--progress", "off"}, env.worldFlags()...)
	return startProc(env.t, env.dir, name, env.bin, append(args, more...)...)
}

// outputRows reads an output file, every row by its input id, failing on
// an id written twice and (complete) on an id missing.
func outputRows(t *testing.T, path string, in [][2]string, complete bool) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s is not CSV: %v", path, err)
	}
	header := recs[0]
	rows := map[string]map[string]string{}
	for _, rec := range recs[1:] {
		r := map[string]string{}
		for i, name := range header {
			r[name] = rec[i]
		}
		if _, dup := rows[rec[0]]; dup {
			t.Errorf("%s: input row %s written twice", path, rec[0])
		}
		rows[rec[0]] = r
	}
	if complete {
		for _, r := range in {
			if _, ok := rows[r[0]]; !ok {
				t.Errorf("%s: input row %s (%s) missing", path, r[0], r[1])
			}
		}
		if len(rows) != len(in) {
			t.Errorf("%s: %d rows for %d input rows", path, len(rows), len(in))
		}
	}
	return rows
}

// sameVerdicts asserts that a cluster run's rows are the local run's in
// every column but those that legitimately differ.
func sameVerdicts(t *testing.T, want, got map[string]map[string]string, differ ...string) {
	t.Helper()
	for id, w := range want {
		g := got[id]
		for col, v := range w {
			if !slices.Contains(differ, col) && g[col] != v {
				t.Errorf("row %s (%s): %s = %q in the cluster's output, %q in the local one", id, w["email"], col, g[col], v)
			}
		}
	}
}

// checkLimits asserts, from the servers' side, that no host had more than
// its sessions open at once, nor bigmail's two hosts together more than the
// operator's.
func (env *clusterEnv) checkLimits() {
	t := env.t
	t.Helper()
	for i := range plainHostsN {
		name, _ := plainHost(i)
		if got := env.sim.MaxConcurrent(name); got > perHostCap || got == 0 {
			t.Errorf("%s had %d sessions open at once from the whole cluster, want 1 to %d", name, got, perHostCap)
		}
	}
	if got := env.bigmail.Max(); got > bigmailCap || got == 0 {
		t.Errorf("bigmail's hosts had %d sessions open at once from the whole cluster, want 1 to %d", got, bigmailCap)
	}
	t.Logf("most sessions at once: bigmail %d (limit %d); plain hosts %d %d %d %d (limit %d each)", env.bigmail.Max(), bigmailCap,
		env.sim.MaxConcurrent("mx.h0.test"), env.sim.MaxConcurrent("mx.h1.test"), env.sim.MaxConcurrent("mx.h2.test"),
		env.sim.MaxConcurrent("mx.h3.test"), perHostCap)
}

// hostOf is the MX host of a domain of the world.
func hostOf(domain string) string {
	for _, d := range clusterWorld().Domains {
		if d.Name == domain && len(d.MX) > 0 {
			return d.MX[0].Host
		}
	}
	return ""
}

// askedCounts is, for each distinct probed address of the input, how many
// RCPT TO the world's servers read for it, and from which clients.
func (env *clusterEnv) askedCounts(in [][2]string) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, r := range in {
		email := strings.ToLower(r[1])
		local, domain, ok := strings.Cut(email, "@")
		if !ok || hostOf(domain) == "" {
			continue
		}
		out[local+"@"+domain] = env.sim.RecipientClients(hostOf(domain), local+"@"+domain)
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// probedDomains is how many domains of the input have addresses a server
// is asked about.
func probedDomains(in [][2]string) int {
	seen := map[string]bool{}
	for _, r := range in {
		if _, domain, ok := strings.Cut(strings.ToLower(r[1]), "@"); ok && hostOf(domain) != "" {
			seen[domain] = true
		}
	}
	return len(seen)
}

// TestCluster runs a job through a three-worker cluster and compares its
// output with a local run of the same input, then does so again with a
// worker killed mid-run, and with the coordinator killed and resumed.
func TestCluster(t *testing.T) {
	if testing.Short() {
		testenv.Unavailable(t, "e2e: skipped in -short mode")
	}
	// The cluster's addresses on loopback (Linux has all of 127/8).
	for _, ip := range append(slices.Clone(workerIPs), localIP, bigmail1IP) {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			testenv.Unavailable(t, "e2e: cannot use loopback address %s: %v", ip, err)
		}
		l.Close()
	}
	binDir := t.TempDir()
	if err := buildBulkverify(binDir); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "bulkverify")
	in := clusterInput()

	// The reference: a local verify of the same input, in a world of its own.
	local := func() map[string]map[string]string {
		env := &clusterEnv{t: t, dir: t.TempDir()}
		env.cfg = suiteConfig(env.dir)
		sim, err := mailsim.Start(context.Background(), clusterWorld(), mailsim.Options{})
		if err != nil {
			testenv.Unavailable(t, "e2e: the cluster world needs loopback addresses 127.0.3.x: %v", err)
		}
		defer sim.Close()
		env.sim = sim
		path, out := filepath.Join(env.dir, "in.csv"), filepath.Join(env.dir, "local.csv")
		writeInput(t, path, in)
		args := append([]string{"verify", path, "-o", out, "--progress", "off", "--no-store", "--source-ip", localIP}, env.worldFlags()...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("local verify: %v\n%s", err, b)
		}
		return outputRows(t, out, in, true)
	}()

	t.Run("SameAsLocal", func(t *testing.T) { testClusterSameAsLocal(t, bin, in, local) })
	t.Run("WorkerKilled", func(t *testing.T) { testClusterWorkerKilled(t, bin, in, local) })
	t.Run("CoordinatorResumed", func(t *testing.T) { testClusterCoordinatorResumed(t, bin, in, local) })
	t.Run("NATSRestarted", func(t *testing.T) { testClusterNATSRestarted(t, bin, in, local) })
}

// The NATS server restarts mid-job (file storage): the coordinator and the
// workers find it again and the job completes, every row once.
func testClusterNATSRestarted(t *testing.T, bin string, in [][2]string, local map[string]map[string]string) {
	env := newClusterEnv(t, bin)
	path, out := filepath.Join(env.dir, "in.csv"), filepath.Join(env.dir, "cluster.csv")
	writeInput(t, path, in)
	coord := env.coordinator("coordinator", path, out)
	pollUntil(t, 60*time.Second, func() error {
		data, _ := os.ReadFile(out)
		if n := bytes.Count(data, []byte("\n")); n > 40 {
			return nil
		}
		if coord.exited() {
			return fmt.Errorf("the coordinator ended before the restart: %v", coord.err)
		}
		return fmt.Errorf("the output has few rows yet")
	})
	env.restartNATS()
	if coord.exited() {
		t.Fatal("the coordinator ended before the server was back: the test proves nothing")
	}
	if err := coord.wait(t, 180*time.Second); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, coord.logText())
	}
	got := outputRows(t, out, in, true)
	sameVerdicts(t, local, got, faultDiffer...)
	env.checkLimits()
}

// verdictColumns are compared in the runs with a fault: a re-asked address
// may need more attempts, and came from another egress.
var faultDiffer = []string{"checked_at", "egress", "attempts"}

func testClusterSameAsLocal(t *testing.T, bin string, in [][2]string, local map[string]map[string]string) {
	env := newClusterEnv(t, bin)
	path, out := filepath.Join(env.dir, "in.csv"), filepath.Join(env.dir, "cluster.csv")
	writeInput(t, path, in)
	coord := env.coordinator("coordinator", path, out)
	// The job shows in cluster status while it runs.
	pollUntil(t, 60*time.Second, func() error {
		st, err := env.status()
		if err != nil {
			return err
		}
		if len(st.Jobs) == 1 && st.Jobs[0].Record.Units > 0 && len(st.Workers) == 3 {
			return nil
		}
		if coord.exited() {
			return fmt.Errorf("the coordinator ended before its job was seen: %v", coord.err)
		}
		return fmt.Errorf("status: %+v", st)
	})
	if err := coord.wait(t, 120*time.Second); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, coord.logText())
	}
	got := outputRows(t, out, in, true)
	sameVerdicts(t, local, got, "checked_at", "egress")
	egresses := map[string]int{}
	for _, r := range got {
		if r["egress"] != "" {
			egresses[r["egress"]]++
		}
	}
	for _, ip := range workerIPs {
		if egresses[ip] == 0 {
			t.Errorf("no row was asked from worker egress %s: %v", ip, egresses)
		}
	}
	env.checkLimits()

	// Each address was asked once, and each domain's accept-all question
	// once for the whole cluster: the servers read no other RCPT.
	asked := env.askedCounts(in)
	for addr, by := range asked {
		if sum(by) != 1 {
			t.Errorf("%s asked %d times (%v), want once", addr, sum(by), by)
		}
	}
	if got, want := env.sim.TotalCommands("RCPT"), len(asked)+probedDomains(in); got != want {
		t.Errorf("the servers read %d RCPT, want %d: one per address and one accept-all check per domain", got, want)
	}
	if env.sim.TotalCommands("DATA") != 0 {
		t.Error("DATA was sent")
	}
	// Once the output is complete the job is gone from JetStream.
	st, err := env.status()
	if err != nil || len(st.Jobs) != 0 {
		t.Errorf("after the job: %+v %v; want no job left", st, err)
	}
}

func testClusterWorkerKilled(t *testing.T, bin string, in [][2]string, local map[string]map[string]string) {
	env := newClusterEnv(t, bin)
	path, out := filepath.Join(env.dir, "in.csv"), filepath.Join(env.dir, "cluster.csv")
	writeInput(t, path, in)
	coord := env.coordinator("coordinator", path, out)
	// Worker 1 is killed as soon as it has asked something: mid-unit.
	victim := env.workers[0]
	pollUntil(t, 60*time.Second, func() error {
		for _, h := range clusterWorld().Hosts {
			if env.sim.ConnectionsFrom(h.Name, workerIPs[0]) > 0 {
				return nil
			}
		}
		if coord.exited() {
			return fmt.Errorf("the coordinator ended before worker 1 asked anything: %v", coord.err)
		}
		return fmt.Errorf("worker 1 has connected nowhere yet")
	})
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	if err := coord.wait(t, 180*time.Second); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, coord.logText())
	}
	got := outputRows(t, out, in, true)
	sameVerdicts(t, local, got, faultDiffer...)
	env.checkLimits()
	twice := 0
	for addr, by := range env.askedCounts(in) {
		switch n := sum(by); {
		case n > 2:
			t.Errorf("%s asked %d times (%v), want twice at most", addr, n, by)
		case n == 2:
			twice++
		case n == 0:
			t.Errorf("%s never asked", addr)
		}
	}
	t.Logf("addresses asked twice (their worker was killed between asking and storing the answer): %d", twice)
}

func testClusterCoordinatorResumed(t *testing.T, bin string, in [][2]string, local map[string]map[string]string) {
	env := newClusterEnv(t, bin)
	path, out := filepath.Join(env.dir, "in.csv"), filepath.Join(env.dir, "cluster.csv")
	writeInput(t, path, in)
	first := env.coordinator("coordinator1", path, out)
	// Killed once some rows are written, well before all are.
	pollUntil(t, 60*time.Second, func() error {
		data, _ := os.ReadFile(out)
		if n := bytes.Count(data, []byte("\n")); n > 40 {
			return nil
		}
		if first.exited() {
			return fmt.Errorf("the coordinator ended before it was killed: %v", first.err)
		}
		return fmt.Errorf("the output has few rows yet")
	})
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	partial := outputRows(t, out, in, false)
	if len(partial) >= len(in) {
		t.Fatal("the first coordinator finished before it was killed: the test proves nothing")
	}
	second := env.coordinator("coordinator2", path, out, "--resume")
	if err := second.wait(t, 180*time.Second); err != nil {
		t.Fatalf("resumed coordinator: %v\n%s", err, second.logText())
	}
	if !strings.Contains(second.logText(), "resumed") {
		t.Errorf("the second coordinator did not continue the first one's job:\n%s", second.logText())
	}
	got := outputRows(t, out, in, true)
	sameVerdicts(t, local, got, faultDiffer...)
	for id, r := range partial {
		if got[id]["checked_at"] != r["checked_at"] {
			t.Errorf("row %s was written again by the resumed run", id)
		}
	}
	env.checkLimits()
	st, err := env.status()
	if err != nil || len(st.Jobs) != 0 {
		t.Errorf("after the job: %+v %v; want no job left", st, err)
	}
}
