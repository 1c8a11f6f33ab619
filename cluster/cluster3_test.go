package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testCluster is three nats-servers with JetStream forming one cluster
// (nats-server's jetstream_helpers_test.go fixtures, in small).
type testCluster struct {
	t       testing.TB
	servers []*server.Server
}

// freePorts reserves n loopback ports the routes can name up front; the
// servers listen on them right after.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func startCluster3(t testing.TB) *testCluster {
	t.Helper()
	routePorts := freePorts(t, 3)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	tc := &testCluster{t: t}
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "bulkverify", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		tc.servers = append(tc.servers, s)
	}
	t.Cleanup(tc.shutdown)
	for _, s := range tc.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	tc.waitForMetaLeader()
	return tc
}

func (tc *testCluster) waitForMetaLeader() {
	tc.t.Helper()
	checkFor(tc.t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, s := range tc.servers {
			if s.Running() && s.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader")
	})
}

func (tc *testCluster) url() string {
	var urls []string
	for _, s := range tc.servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// streamLeader returns the server leading a stream.
func (tc *testCluster) streamLeader(stream string) *server.Server {
	for _, s := range tc.servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

func (tc *testCluster) shutdown() {
	for _, s := range tc.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// The server leading the work queue dies in the middle of a job: another
// takes the lead, and the job completes with every result given once.
func TestWorkQueueLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster: not under -short")
	}
	tc := startCluster3(t)
	cfg := testConfig(tc.url())
	cfg.Replicas = 3
	c := connect(t, cfg)
	units := makeUnits("lead", 12, 4, plainLocal)
	for _, u := range units[6:] {
		u.Addresses[0].Local = fmt.Sprintf("slow%d", u.Addresses[0].Key)
	}
	ctx := context.Background()
	co := c.Coordinator()
	if _, err := co.Submit(ctx, "lead", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	p := newLocalPartProber()
	for i := range 2 {
		runWorker(t, connect(t, cfg), WorkerConfig{ID: fmt.Sprintf("w%d", i), Prober: p, Units: 4, PollWait: 200 * time.Millisecond})
	}
	got, done := collectInBackground(t, co, "lead", CollectOptions{FlushInterval: 20 * time.Millisecond, IdleCheck: time.Second}, 120*time.Second)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		got.mu.Lock()
		defer got.mu.Unlock()
		if len(got.got) < 6*4 {
			return fmt.Errorf("%d results so far", len(got.got))
		}
		return nil
	})
	var leader *server.Server
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if leader = tc.streamLeader(UnitsStream); leader == nil {
			return fmt.Errorf("no leader for %s", UnitsStream)
		}
		return nil
	})
	leader.Shutdown()
	leader.WaitForShutdown()
	close(p.release)
	if err := <-done; err != nil {
		t.Fatalf("Collect across the loss of the work queue's leader: %v", err)
	}
	checkAll(t, units, got)
	for k, n := range p.timesAsked() {
		if n > 2 {
			t.Errorf("key %d asked %d times", k, n)
		}
	}
}
