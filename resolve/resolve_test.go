package resolve

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const soaRR = "example.test. 3600 IN SOA ns.example.test. admin.example.test. 1 7200 900 1209600 60"

func TestLookupMail(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		ask     string
		want    Mail
		wantErr error
		counts  map[uint16]int // queries expected per type for the asked name
	}{
		{
			name: "MX sorted by preference then host, duplicates dropped",
			records: []string{
				"example.test. 300 IN MX 20 mx3.example.test.",
				"example.test. 300 IN MX 10 MX2.Example.TEST.",
				"example.test. 300 IN MX 30 mx1.example.test.",
				"example.test. 300 IN MX 10 mx1.example.test.",
				"example.test. 300 IN MX 5 mx0.example.test.",
			},
			ask: "Example.TEST.",
			want: Mail{Domain: "example.test", Hosts: []MX{
				{"mx0.example.test", 5}, {"mx1.example.test", 10}, {"mx2.example.test", 10}, {"mx3.example.test", 20},
			}},
			counts: map[uint16]int{dns.TypeMX: 1, dns.TypeA: 0, dns.TypeAAAA: 0},
		},
		{
			name: "MX behind CNAME",
			records: []string{
				"alias.example.test. 300 IN CNAME real.example.test.",
				"real.example.test. 300 IN MX 10 mx.example.test.",
			},
			ask:    "alias.example.test",
			want:   Mail{Domain: "alias.example.test", Hosts: []MX{{"mx.example.test", 10}}},
			counts: map[uint16]int{dns.TypeMX: 1},
		},
		{
			name:    "implicit MX from A only",
			records: []string{soaRR, "example.test. 300 IN A 127.0.0.2"},
			ask:     "example.test",
			want:    Mail{Domain: "example.test", Hosts: []MX{{"example.test", 0}}, Implicit: true},
			counts:  map[uint16]int{dns.TypeMX: 1, dns.TypeA: 1, dns.TypeAAAA: 1},
		},
		{
			name:    "implicit MX from AAAA only",
			records: []string{soaRR, "example.test. 300 IN AAAA ::1"},
			ask:     "example.test",
			want:    Mail{Domain: "example.test", Hosts: []MX{{"example.test", 0}}, Implicit: true},
			counts:  map[uint16]int{dns.TypeMX: 1, dns.TypeA: 1, dns.TypeAAAA: 1},
		},
		{
			name:    "no MX and no address",
			records: []string{soaRR, `example.test. 300 IN TXT "v=spf1 -all"`},
			ask:     "example.test",
			wantErr: ErrNoMailHost,
			counts:  map[uint16]int{dns.TypeMX: 1, dns.TypeA: 1, dns.TypeAAAA: 1},
		},
		{
			name:    "null MX",
			records: []string{"example.test. 300 IN MX 0 .", "example.test. 300 IN A 127.0.0.2"},
			ask:     "example.test",
			wantErr: ErrNullMX,
			counts:  map[uint16]int{dns.TypeMX: 1, dns.TypeA: 0},
		},
		{
			name:    "null MX with non-zero preference",
			records: []string{"example.test. 300 IN MX 10 ."},
			ask:     "example.test",
			wantErr: ErrNullMX,
			counts:  map[uint16]int{dns.TypeMX: 1},
		},
		{
			name:    "null MX beside real exchangers is ignored",
			records: []string{"example.test. 300 IN MX 0 .", "example.test. 300 IN MX 10 mx.example.test."},
			ask:     "example.test",
			want:    Mail{Domain: "example.test", Hosts: []MX{{"mx.example.test", 10}}},
			counts:  map[uint16]int{dns.TypeMX: 1},
		},
		{
			name:    "NXDOMAIN",
			records: []string{soaRR, "other.test. 300 IN MX 10 mx.other.test."},
			ask:     "example.test",
			wantErr: ErrNXDomain,
			counts:  map[uint16]int{dns.TypeMX: 1, dns.TypeA: 0, dns.TypeAAAA: 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, zone(t, tc.records...))
			r := newTestResolver(t, Config{}, srv)
			got, err := r.LookupMail(context.Background(), tc.ask)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("LookupMail: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for qtype, want := range tc.counts {
				if n := srv.count(tc.ask, qtype); n != want {
					t.Errorf("%s queries = %d, want %d", dns.TypeToString[qtype], n, want)
				}
			}
		})
	}
}

func TestQueryUsesEDNS0AndRD(t *testing.T) {
	srv := startServer(t, zone(t, "example.test. 300 IN MX 10 mx.example.test."))
	r := newTestResolver(t, Config{}, srv)
	if _, err := r.LookupMail(context.Background(), "example.test"); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if !req.RecursionDesired {
		t.Error("RD not set")
	}
	if opt := req.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
		t.Errorf("EDNS0 = %v, want UDP size 1232", opt)
	}
	if q := req.Question[0]; q.Name != "example.test." || q.Qtype != dns.TypeMX || q.Qclass != dns.ClassINET {
		t.Errorf("question = %v", q)
	}
}

func TestRetries(t *testing.T) {
	ok := func(t *testing.T) reply { return zone(t, "example.test. 300 IN MX 10 mx.example.test.") }
	tests := []struct {
		name       string
		script     func(t *testing.T) reply
		wantReason string // "" = success expected
		wantSent   int
	}{
		{"SERVFAIL twice then success", func(t *testing.T) reply { return failFirst(2, dns.RcodeServerFailure, ok(t)) }, "", 3},
		{"REFUSED once then success", func(t *testing.T) reply { return failFirst(1, dns.RcodeRefused, ok(t)) }, "", 2},
		{"SERVFAIL always", func(*testing.T) reply { return rcodeReply(dns.RcodeServerFailure) }, "servfail", 3},
		{"REFUSED always", func(*testing.T) reply { return rcodeReply(dns.RcodeRefused) }, "refused", 3},
		{"FORMERR always", func(*testing.T) reply { return rcodeReply(dns.RcodeFormatError) }, "formerr", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.script(t))
			r := newTestResolver(t, Config{Attempts: 3}, srv)
			got, err := r.LookupMail(context.Background(), "example.test")
			if n := srv.count("example.test", dns.TypeMX); n != tc.wantSent {
				t.Errorf("server saw %d MX queries, want %d", n, tc.wantSent)
			}
			if q := r.Stats().Queries; q != uint64(tc.wantSent) {
				t.Errorf("Stats.Queries = %d, want %d", q, tc.wantSent)
			}
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("LookupMail: %v", err)
				}
				if want := []MX{{"mx.example.test", 10}}; !reflect.DeepEqual(got.Hosts, want) {
					t.Errorf("Hosts = %v, want %v", got.Hosts, want)
				}
				return
			}
			var te *TemporaryError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *TemporaryError", err)
			}
			if te.Reason != tc.wantReason || te.Name != "example.test" {
				t.Errorf("TemporaryError = %+v, want reason %q for example.test", te, tc.wantReason)
			}
			// Temporary failures must not be cached: asking again asks the server again.
			_, _ = r.LookupMail(context.Background(), "example.test")
			if n := srv.count("example.test", dns.TypeMX); n != 2*tc.wantSent {
				t.Errorf("after second lookup server saw %d MX queries, want %d", n, 2*tc.wantSent)
			}
		})
	}
}

func TestRetryRotatesServers(t *testing.T) {
	bad := startServer(t, rcodeReply(dns.RcodeServerFailure))
	good := startServer(t, zone(t, "example.test. 300 IN MX 10 mx.example.test."))
	r := newTestResolver(t, Config{Attempts: 2}, bad, good)
	if _, err := r.LookupMail(context.Background(), "example.test"); err != nil {
		t.Fatalf("LookupMail: %v", err)
	}
	if b, g := bad.total(), good.total(); b != 1 || g != 1 {
		t.Errorf("queries: first server %d, second %d; want 1 and 1", b, g)
	}
}

func TestTimeout(t *testing.T) {
	silent := startServer(t, func(*dns.Msg, bool, int) *dns.Msg { return nil })
	const timeout, attempts = 100 * time.Millisecond, 3
	r := newTestResolver(t, Config{Timeout: timeout, Attempts: attempts}, silent)
	// The timeout must be the configured one, not longer (say the 2s
	// default): the lookup is raced against a reference lookup of one
	// 3s attempt, started at the same moment and cancelled when the first
	// ends. Timers slow down alike under load, so only a lookup that waits
	// far longer than configured can lose.
	refServer := startServer(t, func(*dns.Msg, bool, int) *dns.Msg { return nil })
	ref := newTestResolver(t, Config{Timeout: 3 * time.Second, Attempts: 1}, refServer)
	refCtx, cancelRef := context.WithCancel(context.Background())
	defer cancelRef()
	order := make(chan string, 2)
	go func() {
		_, _ = ref.LookupMail(refCtx, "example.test")
		order <- "reference"
	}()
	start := time.Now()
	_, err := r.LookupMail(context.Background(), "example.test")
	elapsed := time.Since(start)
	order <- "lookup"
	cancelRef()
	if first := <-order; first != "lookup" {
		t.Errorf("a lookup of %d attempts of %v took %v, longer than one attempt of 3s", attempts, timeout, elapsed)
	}
	<-order
	var te *TemporaryError
	if !errors.As(err, &te) || te.Reason != "timeout" {
		t.Fatalf("err = %v, want *TemporaryError with reason timeout", err)
	}
	if elapsed < attempts*timeout*9/10 {
		t.Errorf("took %v, less than %d attempts of %v", elapsed, attempts, timeout)
	}
	if n := silent.count("example.test", dns.TypeMX); n != attempts {
		t.Errorf("server saw %d queries, want %d", n, attempts)
	}
}

func TestBadResponses(t *testing.T) {
	tests := []struct {
		name       string
		handler    dns.HandlerFunc
		wantReason string
	}{
		{
			name: "answer for another question",
			handler: func(w dns.ResponseWriter, req *dns.Msg) {
				resp := new(dns.Msg)
				resp.SetReply(req)
				resp.Question[0].Name = "evil.test."
				resp.Answer = append(resp.Answer, &dns.MX{
					Hdr: dns.RR_Header{Name: "evil.test.", Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 300},
					Mx:  "mx.evil.test.", Preference: 10,
				})
				_ = w.WriteMsg(resp)
			},
			wantReason: "mismatch",
		},
		{
			name: "garbage after a valid header",
			handler: func(w dns.ResponseWriter, req *dns.Msg) {
				hdr := []byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}
				_, _ = w.Write(append(hdr, 0xff, 0xfe, 0xfd))
			},
			wantReason: "malformed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			pc, ln := listenPair(t)
			ln.Close()
			serve(t, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
				mu.Lock()
				n++
				mu.Unlock()
				tc.handler(w, req)
			})})
			// A generous timeout: the bad answer must be recognised as
			// such, not waited out.
			r, err := New(Config{Servers: []string{pc.LocalAddr().String()}, Timeout: 10 * time.Second, Attempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.LookupMail(context.Background(), "example.test")
			var te *TemporaryError
			if !errors.As(err, &te) || te.Reason != tc.wantReason {
				t.Fatalf("err = %v, want *TemporaryError with reason %q", err, tc.wantReason)
			}
			mu.Lock()
			defer mu.Unlock()
			if n != 2 {
				t.Errorf("server saw %d queries, want 2", n)
			}
		})
	}
}

func TestTruncatedRetriedOverTCP(t *testing.T) {
	full := zone(t,
		"example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"example.test. 300 IN MX 30 mx3.example.test.",
	)
	srv := startServer(t, func(req *dns.Msg, tcp bool, n int) *dns.Msg {
		resp := full(req, tcp, n)
		if !tcp {
			resp.Truncated = true
			resp.Answer = resp.Answer[2:]
		}
		return resp
	})
	r := newTestResolver(t, Config{}, srv)
	got, err := r.LookupMail(context.Background(), "example.test")
	if err != nil {
		t.Fatalf("LookupMail: %v", err)
	}
	want := []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}, {"mx3.example.test", 30}}
	if !reflect.DeepEqual(got.Hosts, want) {
		t.Errorf("Hosts = %v, want the full TCP answer %v", got.Hosts, want)
	}
	if all, tcp := srv.count("example.test", dns.TypeMX), srv.tcpCount("example.test", dns.TypeMX); all != 2 || tcp != 1 {
		t.Errorf("queries: %d total, %d over TCP; want 2 and 1", all, tcp)
	}
	if q := r.Stats().Queries; q != 2 {
		t.Errorf("Stats.Queries = %d, want 2", q)
	}
}

func TestCacheHit(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		misses  uint64 // (name, type) lookups the first call needs
	}{
		{"MX", []string{"example.test. 300 IN MX 10 mx.example.test."}, 1},
		{"implicit MX", []string{soaRR, "example.test. 300 IN A 127.0.0.2"}, 3},
		{"null MX", []string{"example.test. 300 IN MX 0 ."}, 1},
		{"NXDOMAIN", []string{soaRR}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, zone(t, tc.records...))
			r := newTestResolver(t, Config{}, srv)
			first, err1 := r.LookupMail(context.Background(), "example.test")
			sent := srv.total()
			second, err2 := r.LookupMail(context.Background(), "EXAMPLE.test.")
			if n := srv.total(); n != sent {
				t.Errorf("second lookup sent %d queries, want 0", n-sent)
			}
			if !reflect.DeepEqual(first, second) || !errors.Is(err2, errors.Unwrap(err1)) {
				t.Errorf("second = %+v, %v; first = %+v, %v", second, err2, first, err1)
			}
			want := Stats{Queries: uint64(sent), CacheMisses: tc.misses, CacheHits: tc.misses}
			if s := r.Stats(); s != want {
				t.Errorf("Stats = %+v, want %+v", s, want)
			}
		})
	}
}

func TestCachedResultIsNotShared(t *testing.T) {
	srv := startServer(t, zone(t, "example.test. 300 IN MX 10 mx.example.test."))
	r := newTestResolver(t, Config{}, srv)
	first, err := r.LookupMail(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	first.Hosts[0].Host = "changed"
	second, err := r.LookupMail(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if second.Hosts[0].Host != "mx.example.test" {
		t.Errorf("caller's edit leaked into the cache: %v", second.Hosts)
	}
}

// expectCachedFor checks that the answer for name/qtype, already fetched
// once, is served from cache until just before d and re-queried after it.
func expectCachedFor(t *testing.T, srv *testServer, clock *fakeClock, d time.Duration, lookup func(), name string, qtype uint16) {
	t.Helper()
	before := srv.count(name, qtype)
	clock.Advance(d - time.Second)
	lookup()
	if n := srv.count(name, qtype); n != before {
		t.Errorf("%v after the first lookup: %d new queries, want none", d-time.Second, n-before)
	}
	clock.Advance(2 * time.Second)
	lookup()
	if n := srv.count(name, qtype); n != before+1 {
		t.Errorf("%v after the first lookup: %d new queries, want 1", d+time.Second, n-before)
	}
}

func TestPositiveTTL(t *testing.T) {
	tests := []struct {
		name      string
		records   []string
		cfg       Config
		cachedFor time.Duration
	}{
		{"record TTL", []string{"example.test. 300 IN MX 10 mx.example.test."}, Config{}, 300 * time.Second},
		{"smallest TTL of the set", []string{
			"example.test. 300 IN MX 10 mx1.example.test.",
			"example.test. 120 IN MX 20 mx2.example.test.",
		}, Config{}, 120 * time.Second},
		{"CNAME TTL counts", []string{
			"example.test. 60 IN CNAME real.example.test.",
			"real.example.test. 300 IN MX 10 mx.example.test.",
		}, Config{}, 60 * time.Second},
		{"raised to MinTTL", []string{"example.test. 5 IN MX 10 mx.example.test."}, Config{MinTTL: time.Minute}, time.Minute},
		{"lowered to MaxTTL", []string{"example.test. 604800 IN MX 10 mx.example.test."}, Config{MaxTTL: time.Hour}, time.Hour},
		{"default MaxTTL is a day", []string{"example.test. 604800 IN MX 10 mx.example.test."}, Config{}, 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, zone(t, tc.records...))
			clock := newFakeClock()
			tc.cfg.Now = clock.Now
			r := newTestResolver(t, tc.cfg, srv)
			lookup := func() {
				if _, err := r.LookupMail(context.Background(), "example.test"); err != nil {
					t.Fatalf("LookupMail: %v", err)
				}
			}
			lookup()
			expectCachedFor(t, srv, clock, tc.cachedFor, lookup, "example.test", dns.TypeMX)
		})
	}
}

func TestNegativeTTL(t *testing.T) {
	soa := func(ttl, minimum string) string {
		return "example.test. " + ttl + " IN SOA ns.example.test. admin.example.test. 1 7200 900 1209600 " + minimum
	}
	tests := []struct {
		name      string
		records   []string
		ask       string
		cfg       Config
		wantErr   error
		cachedFor time.Duration
	}{
		{"NODATA: SOA minimum", []string{soa("3600", "60"), `example.test. 300 IN TXT "x"`}, "example.test", Config{}, ErrNoMailHost, time.Minute},
		{"NODATA: SOA TTL below minimum", []string{soa("30", "3600"), `example.test. 300 IN TXT "x"`}, "example.test", Config{}, ErrNoMailHost, 30 * time.Second},
		{"NODATA: capped by NegativeTTL", []string{soa("3600", "3600"), `example.test. 300 IN TXT "x"`}, "example.test", Config{NegativeTTL: 2 * time.Minute}, ErrNoMailHost, 2 * time.Minute},
		{"NODATA: no SOA uses NegativeTTL", []string{`example.test. 300 IN TXT "x"`}, "example.test", Config{NegativeTTL: 90 * time.Second}, ErrNoMailHost, 90 * time.Second},
		{"NXDOMAIN: SOA minimum", []string{soa("3600", "120")}, "gone.example.test", Config{}, ErrNXDomain, 2 * time.Minute},
		{"NXDOMAIN: default NegativeTTL is 5m", []string{soa("3600", "3600")}, "gone.example.test", Config{}, ErrNXDomain, 5 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, zone(t, tc.records...))
			clock := newFakeClock()
			tc.cfg.Now = clock.Now
			r := newTestResolver(t, tc.cfg, srv)
			lookup := func() {
				if _, err := r.LookupMail(context.Background(), tc.ask); !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			}
			lookup()
			expectCachedFor(t, srv, clock, tc.cachedFor, lookup, tc.ask, dns.TypeMX)
		})
	}
}

// waitFor polls cond: the resolver's callers have no event to wait on
// once they are parked inside singleflight.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a guard against a hang only
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	const callers = 50
	z := zone(t, "example.test. 300 IN MX 10 mx.example.test.")
	release := make(chan struct{})
	srv := startServer(t, func(req *dns.Msg, tcp bool, n int) *dns.Msg {
		<-release
		return z(req, tcp, n)
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the server shuts down, which waits for handlers
	r := newTestResolver(t, Config{Timeout: 10 * time.Second}, srv)

	var wg sync.WaitGroup
	results := make([]Mail, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = r.LookupMail(context.Background(), "example.test") })
	}
	waitFor(t, "all callers to miss the cache", func() bool { return r.Stats().CacheMisses >= callers })
	unblock()
	wg.Wait()

	want := Mail{Domain: "example.test", Hosts: []MX{{"mx.example.test", 10}}}
	for i := range callers {
		if errs[i] != nil || !reflect.DeepEqual(results[i], want) {
			t.Fatalf("caller %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if n := srv.count("example.test", dns.TypeMX); n != 1 {
		t.Errorf("server saw %d queries, want 1", n)
	}
	if q := r.Stats().Queries; q != 1 {
		t.Errorf("Stats.Queries = %d, want 1", q)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Run("before the call", func(t *testing.T) {
		srv := startServer(t, zone(t, "example.test. 300 IN MX 10 mx.example.test."))
		r := newTestResolver(t, Config{}, srv)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := r.LookupMail(ctx, "example.test"); !errors.Is(err, context.Canceled) {
			t.Errorf("LookupMail err = %v, want context.Canceled", err)
		}
		if _, err := r.LookupHost(ctx, "example.test"); !errors.Is(err, context.Canceled) {
			t.Errorf("LookupHost err = %v, want context.Canceled", err)
		}
		if n := srv.total(); n != 0 {
			t.Errorf("%d queries sent, want 0", n)
		}
	})

	t.Run("while the query is shared", func(t *testing.T) {
		// The first answer is a SERVFAIL held until after caller A has
		// given up, so the shared query must retry after A's
		// cancellation: if A's context leaked into it, B would fail.
		z := zone(t, "example.test. 300 IN MX 10 mx.example.test.")
		arrived := make(chan struct{})
		release := make(chan struct{})
		srv := startServer(t, func(req *dns.Msg, tcp bool, n int) *dns.Msg {
			if n == 1 {
				close(arrived)
				<-release
				return rcodeReply(dns.RcodeServerFailure)(req, tcp, n)
			}
			return z(req, tcp, n)
		})
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		t.Cleanup(unblock)
		r := newTestResolver(t, Config{Timeout: 10 * time.Second, Attempts: 2}, srv)

		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		errA := make(chan error, 1)
		go func() {
			_, err := r.LookupMail(ctxA, "example.test")
			errA <- err
		}()
		<-arrived
		type result struct {
			m   Mail
			err error
		}
		resB := make(chan result, 1)
		go func() {
			m, err := r.LookupMail(context.Background(), "example.test")
			resB <- result{m, err}
		}()
		waitFor(t, "caller B to join", func() bool { return r.Stats().CacheMisses >= 2 })

		cancelA()
		select {
		case err := <-errA:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("caller A err = %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("caller A did not return promptly after cancel")
		}

		unblock()
		b := <-resB
		if b.err != nil || len(b.m.Hosts) != 1 || b.m.Hosts[0].Host != "mx.example.test" {
			t.Errorf("caller B = %+v, %v; want the MX", b.m, b.err)
		}
		if n := srv.count("example.test", dns.TypeMX); n != 2 {
			t.Errorf("server saw %d queries, want 2 (one SERVFAIL, one answer)", n)
		}
	})
}

func TestLookupHost(t *testing.T) {
	tests := []struct {
		name    string
		script  func(t *testing.T) reply
		want    []netip.Addr
		wantErr []error
	}{
		{
			name: "IPv4 first even when IPv6 answers first",
			script: func(t *testing.T) reply {
				z := zone(t,
					"mx.example.test. 300 IN AAAA ::1",
					"mx.example.test. 300 IN A 127.0.0.2",
					"mx.example.test. 300 IN AAAA ::2",
					"mx.example.test. 300 IN A 127.0.0.3",
				)
				aaaaSent := make(chan struct{})
				return func(req *dns.Msg, tcp bool, n int) *dns.Msg {
					if req.Question[0].Qtype == dns.TypeAAAA {
						defer close(aaaaSent)
					} else {
						<-aaaaSent
					}
					return z(req, tcp, n)
				}
			},
			want: []netip.Addr{
				netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
				netip.MustParseAddr("::1"), netip.MustParseAddr("::2"),
			},
		},
		{
			name: "address behind CNAME",
			script: func(t *testing.T) reply {
				return zone(t, soaRR, "mx.example.test. 300 IN CNAME real.example.test.", "real.example.test. 300 IN A 127.0.0.4")
			},
			want: []netip.Addr{netip.MustParseAddr("127.0.0.4")},
		},
		{
			name: "IPv6 temporary failure does not hide IPv4",
			script: func(t *testing.T) reply {
				z := zone(t, "mx.example.test. 300 IN A 127.0.0.2")
				return func(req *dns.Msg, tcp bool, n int) *dns.Msg {
					if req.Question[0].Qtype == dns.TypeAAAA {
						return rcodeReply(dns.RcodeServerFailure)(req, tcp, n)
					}
					return z(req, tcp, n)
				}
			},
			want: []netip.Addr{netip.MustParseAddr("127.0.0.2")},
		},
		{
			name:    "no address records",
			script:  func(t *testing.T) reply { return zone(t, soaRR, "mx.example.test. 300 IN MX 10 other.test.") },
			wantErr: []error{ErrNoAddress},
		},
		{
			name:    "NXDOMAIN",
			script:  func(t *testing.T) reply { return zone(t, soaRR) },
			wantErr: []error{ErrNoAddress, ErrNXDomain},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.script(t))
			r := newTestResolver(t, Config{Attempts: 1}, srv)
			got, err := r.LookupHost(context.Background(), "MX.example.test.")
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if tc.wantErr == nil && err != nil {
				t.Fatalf("LookupHost: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if a, aaaa := srv.count("mx.example.test", dns.TypeA), srv.count("mx.example.test", dns.TypeAAAA); a != 1 || aaaa != 1 {
				t.Errorf("queries A=%d AAAA=%d, want 1 each", a, aaaa)
			}
		})
	}
}

func TestLookupHostCaches(t *testing.T) {
	srv := startServer(t, zone(t, "mx.example.test. 300 IN A 127.0.0.2", "mx.example.test. 300 IN AAAA ::1"))
	r := newTestResolver(t, Config{}, srv)
	for range 3 {
		got, err := r.LookupHost(context.Background(), "mx.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	if n := srv.total(); n != 2 {
		t.Errorf("server saw %d queries, want 2 (A and AAAA once)", n)
	}
	if s := r.Stats(); s != (Stats{Queries: 2, CacheMisses: 2, CacheHits: 4}) {
		t.Errorf("Stats = %+v", s)
	}
}

func TestInvalidName(t *testing.T) {
	srv := startServer(t, zone(t, soaRR))
	r := newTestResolver(t, Config{}, srv)
	for _, name := range []string{"", ".", "a..b", strings.Repeat("a", 64) + ".test"} {
		if _, err := r.LookupMail(context.Background(), name); err == nil {
			t.Errorf("LookupMail(%q) succeeded", name)
		}
		if _, err := r.LookupHost(context.Background(), name); err == nil {
			t.Errorf("LookupHost(%q) succeeded", name)
		}
	}
	if n := srv.total(); n != 0 {
		t.Errorf("%d queries sent for invalid names, want 0", n)
	}
}

func TestNewResolvConf(t *testing.T) {
	srv := startServer(t, zone(t, "example.test. 300 IN MX 10 mx.example.test."))
	_, port, _ := strings.Cut(srv.addr, ":")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("nameserver with port is used", func(t *testing.T) {
		conf := write("withport.conf", "# test\nsearch example.test\nnameserver [127.0.0.1]:"+port+"\noptions ndots:1\n")
		r, err := New(Config{ResolvConf: conf, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if _, err := r.LookupMail(context.Background(), "example.test"); err != nil {
			t.Fatalf("LookupMail: %v", err)
		}
		if n := srv.count("example.test", dns.TypeMX); n != 1 {
			t.Errorf("server saw %d queries, want 1", n)
		}
	})

	t.Run("plain nameservers get port 53", func(t *testing.T) {
		conf := write("plain.conf", "nameserver 127.0.0.1\nnameserver ::1\n")
		r, err := New(Config{ResolvConf: conf})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if want := []string{"127.0.0.1:53", "[::1]:53"}; !reflect.DeepEqual(r.servers, want) {
			t.Errorf("servers = %v, want %v", r.servers, want)
		}
	})

	tests := []struct {
		name    string
		cfg     Config
		wantIs  error
		wantMsg string
	}{
		{"missing file", Config{ResolvConf: filepath.Join(dir, "missing.conf")}, fs.ErrNotExist, "missing.conf"},
		{"no nameserver line", Config{ResolvConf: write("empty.conf", "search example.test\n")}, nil, "no nameserver"},
		{"bad nameserver", Config{ResolvConf: write("bad.conf", "nameserver [127.0.0.1]:0\n")}, nil, "bad port"},
		{"bad explicit server", Config{Servers: []string{"127.0.0.1:"}}, nil, "invalid DNS server"},
		{"MinTTL above MaxTTL", Config{Servers: []string{"127.0.0.1:53"}, MinTTL: 2 * time.Hour, MaxTTL: time.Hour}, nil, "MinTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg)
			if err == nil {
				t.Fatalf("New succeeded with servers %v", r.servers)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.wantMsg)
			}
		})
	}
}
