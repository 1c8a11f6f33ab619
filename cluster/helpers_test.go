package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/bulkverify/bulkverify/internal/natstest"
)

// startJetStream starts an embedded JetStream server, ready for clients,
// shut down at cleanup.
func startJetStream(t testing.TB) *natstest.Server {
	t.Helper()
	return natstest.Start(t, server.Options{ServerName: "bulkverify-test"})
}

// testConfig is a Config for tests: short waits, so that redelivery and
// expiry happen within a test; nothing is asserted on these times.
func testConfig(url string) Config {
	return Config{
		URL:            url,
		AckWait:        time.Second,
		NakDelay:       50 * time.Millisecond,
		LeaseTTL:       2 * time.Second,
		HeartbeatTTL:   2 * time.Second,
		ClaimTTL:       2 * time.Second,
		RequestTimeout: 5 * time.Second,
	}
}

// connect returns a Conn to url, closed at cleanup.
func connect(t testing.TB, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkFor polls f until it returns nil or the deadline passes, then fails
// with f's last error (nats-server's checkFor).
func checkFor(t testing.TB, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("still failing after %v: %v", total, err)
}

// rawClient is a bare NATS connection, for a test that plays a worker
// which takes a unit and vanishes.
func rawClient(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// localPartProber decides by the local part: "no..." is undeliverable,
// "slow..." waits until released or ctx ends, anything else deliverable.
// It counts how often each key was asked.
type localPartProber struct {
	mu      sync.Mutex
	asked   map[uint64]int
	release chan struct{} // closed: slow addresses go on
	started chan string   // unit ids as their probing starts (if not nil)
}

func newLocalPartProber() *localPartProber {
	return &localPartProber{asked: map[uint64]int{}, release: make(chan struct{})}
}

func (p *localPartProber) Probe(ctx context.Context, u Unit, emit func(Result)) error {
	if p.started != nil {
		select {
		case p.started <- u.ID:
		default:
		}
	}
	for _, a := range u.Addresses {
		p.mu.Lock()
		p.asked[a.Key]++
		p.mu.Unlock()
		if strings.HasPrefix(a.Local, "slow") {
			select {
			case <-p.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r := Result{Key: a.Key, Status: "deliverable", Reason: "accepted", SMTPCode: 250, MXHost: firstHost(u), Attempts: 1}
		if strings.HasPrefix(a.Local, "no") {
			r.Status, r.Reason, r.SMTPCode, r.EnhancedCode = "undeliverable", "mailbox_unknown", 550, "5.1.1"
		}
		emit(r)
	}
	return nil
}

func (p *localPartProber) timesAsked() map[uint64]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint64]int, len(p.asked))
	for k, v := range p.asked {
		out[k] = v
	}
	return out
}

// makeUnits builds n units of size addresses each for job, keys 1...,
// local parts from local(i).
func makeUnits(job string, n, size int, local func(key uint64) string) []Unit {
	var units []Unit
	key := uint64(0)
	for i := range n {
		host := fmt.Sprintf("mx%d.example", i)
		dom := fmt.Sprintf("d%d.example", i)
		u := Unit{Job: job, ID: fmt.Sprintf("u%d", i), MXHosts: []string{host},
			Domains: []Domain{{Name: dom, MX: []MX{{Host: host, Preference: 10}}}}}
		for range size {
			key++
			u.Addresses = append(u.Addresses, Address{Key: key, Local: local(key), Domain: dom})
		}
		units = append(units, u)
	}
	return units
}

func plainLocal(key uint64) string { return fmt.Sprintf("user%d", key) }

// collectInBackground runs co.Collect of job, for at most bound, and
// returns what it collects and, once it has returned, its error.
func collectInBackground(t testing.TB, co *Coordinator, job string, opts CollectOptions, bound time.Duration) (*collected, <-chan error) {
	got := &collected{}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- co.Collect(ctx, job, opts, got.add) }()
	return got, done
}
