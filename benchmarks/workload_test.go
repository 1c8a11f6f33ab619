package benchmarks

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/mailsim"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/resolve"
)

func TestDomainsPerHost(t *testing.T) {
	tests := []struct {
		name                   string
		domains, hosts         int
		skew                   float64
		wantTop                int // 0 = not checked
		even                   bool
		decreasingWithHostRank bool
	}{
		{name: "L1", domains: 400, hosts: 80, skew: 1, wantTop: 65, decreasingWithHostRank: true},
		{name: "even", domains: 10000, hosts: 100, skew: 0, wantTop: 100, even: true},
		{name: "uneven remainder", domains: 103, hosts: 10, skew: 0, even: true},
		{name: "one domain per host", domains: 7, hosts: 7, skew: 2, wantTop: 1, even: true},
		{name: "steep", domains: 1000, hosts: 50, skew: 2, decreasingWithHostRank: true},
		{name: "one host", domains: 5, hosts: 1, skew: 1, wantTop: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := Workload{Domains: tt.domains, Hosts: tt.hosts, Skew: tt.skew}
			counts := w.DomainsPerHost()
			sum := 0
			for _, n := range counts {
				if n < 1 {
					t.Fatalf("a host without domains: %v", counts)
				}
				sum += n
			}
			if sum != tt.domains || len(counts) != tt.hosts {
				t.Fatalf("%d hosts with %d domains, want %d with %d", len(counts), sum, tt.hosts, tt.domains)
			}
			if top := slices.Max(counts); tt.wantTop != 0 && top != tt.wantTop {
				t.Errorf("busiest host has %d domains, want %d", top, tt.wantTop)
			}
			if tt.even && slices.Max(counts)-slices.Min(counts) > 1 {
				t.Errorf("not even: %v", counts)
			}
			if tt.decreasingWithHostRank && !slices.IsSortedFunc(counts, func(a, b int) int { return b - a }) {
				t.Errorf("shares do not fall with host rank: %v", counts)
			}
			hostOf := w.HostOfDomain()
			got := make([]int, tt.hosts)
			for _, k := range hostOf {
				got[k]++
			}
			if !slices.Equal(got, counts) {
				t.Errorf("HostOfDomain shares %v, DomainsPerHost %v", got, counts)
			}
			if again := w.HostOfDomain(); !slices.Equal(again, hostOf) {
				t.Error("HostOfDomain is not deterministic")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := smallWorkload()
	if err := good.Validate(); err != nil {
		t.Fatalf("small workload: %v", err)
	}
	for _, w := range []Workload{L1(), C1()} {
		if err := w.Validate(); err != nil {
			t.Errorf("%s: %v", w.Name, err)
		}
	}
	tests := []struct {
		name   string
		change func(*Workload)
	}{
		{"no addresses", func(w *Workload) { w.Addresses = 0 }},
		{"more domains than addresses", func(w *Workload) { w.Domains = w.Addresses + 1 }},
		{"more hosts than domains", func(w *Workload) { w.Hosts = w.Domains + 1 }},
		{"no hosts", func(w *Workload) { w.Hosts = 0 }},
		{"negative skew", func(w *Workload) { w.Skew = -1 }},
		{"negative RTT", func(w *Workload) { w.RTT = -time.Millisecond }},
		{"no connections", func(w *Workload) { w.MaxConnections = 0 }},
		{"no per-host connections", func(w *Workload) { w.MaxConnectionsPerHost = 0 }},
		{"no recipients per transaction", func(w *Workload) { w.RcptPerTransaction = 0 }},
		{"negative catch-all-every", func(w *Workload) { w.CatchAllEvery = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := smallWorkload()
			tt.change(&w)
			if err := w.Validate(); !errors.Is(err, ErrBadWorkload) {
				t.Errorf("Validate = %v, want ErrBadWorkload", err)
			}
			if _, err := Run(context.Background(), w, Bulk, RunOptions{}); !errors.Is(err, ErrBadWorkload) {
				t.Errorf("Run = %v, want ErrBadWorkload", err)
			}
		})
	}
}

// TestRows reads the generated input the way bulkverify does: every row is
// a distinct address the workload knows the verdict of, and about half of
// the addresses exist.
func TestRows(t *testing.T) {
	w := Workload{Name: "rows", Addresses: 1003, Domains: 17, Hosts: 3, Skew: 1, CatchAllEvery: 4}
	whole, err := io.ReadAll(w.Rows())
	if err != nil {
		t.Fatal(err)
	}
	bytewise, err := io.ReadAll(iotest.OneByteReader(w.Rows()))
	if err != nil {
		t.Fatal(err)
	}
	if string(whole) != string(bytewise) {
		t.Fatal("the rows depend on the size of the reads")
	}
	src, err := input.NewReader(strings.NewReader(string(whole)), input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	byStatus := map[string]int{}
	for j := 0; ; j++ {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			if j != w.Addresses {
				t.Fatalf("%d rows, want %d", j, w.Addresses)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Email != w.Email(j) {
			t.Fatalf("row %d is %q, want %q", j, rec.Email, w.Email(j))
		}
		if _, err := input.ParseAddress(rec.Email); err != nil {
			t.Fatalf("row %d: %v", j, err)
		}
		if seen[rec.Email] {
			t.Fatalf("row %d repeats %s", j, rec.Email)
		}
		seen[rec.Email] = true
		status, _, ok := w.Expect(rec.Email)
		if !ok {
			t.Fatalf("row %d: no expected verdict for %s", j, rec.Email)
		}
		byStatus[status]++
	}
	// 4 of the 17 domains accept everything; in the others even local parts exist.
	if byStatus[output.StatusRisky] == 0 || byStatus[output.StatusDeliverable] == 0 || byStatus[output.StatusUndeliverable] == 0 {
		t.Fatalf("verdicts %v: want some of each", byStatus)
	}
	if d, u := byStatus[output.StatusDeliverable], byStatus[output.StatusUndeliverable]; d < u || d > u+20 {
		t.Errorf("%d deliverable, %d undeliverable: want about half each outside accept-all domains", d, u)
	}
}

func TestExpect(t *testing.T) {
	w := Workload{Addresses: 100, Domains: 10, Hosts: 2, CatchAllEvery: 5}
	tests := []struct {
		email, status string
		ok            bool
	}{
		{"u0@d0.test", output.StatusDeliverable, true},
		{"u1@d0.test", output.StatusUndeliverable, true},
		{"u1@d4.test", output.StatusRisky, true}, // d4 accepts all
		{"u9@d9.test", output.StatusRisky, true},
		{"u10@d0.test", "", false}, // d0 has u0..u9
		{"u0@d10.test", "", false},
		{"x0@d0.test", "", false},
		{"u0@e0.test", "", false},
		{"u0@d0.example", "", false},
		{"u-1@d0.test", "", false},
		{"no-at-sign", "", false},
	}
	for _, tt := range tests {
		status, _, ok := w.Expect(tt.email)
		if ok != tt.ok || status != tt.status {
			t.Errorf("Expect(%q) = %q, %v; want %q, %v", tt.email, status, ok, tt.status, tt.ok)
		}
	}
	w.NoCatchAllCheck = true
	if status, _, _ := w.Expect("u1@d4.test"); status != output.StatusDeliverable {
		t.Errorf("without the catch-all check an accept-all domain's address is %q, want deliverable", status)
	}
}

// TestWorldStarts checks that mailsim accepts the generated world, host
// addresses past 127.77.1.250 included, and serves its MX records.
func TestWorldStarts(t *testing.T) {
	w := Workload{Name: "wide", Addresses: 600, Domains: 300, Hosts: 260, Skew: 0.5}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang only
	defer cancel()
	sim, err := mailsim.Start(ctx, w.World(), mailsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if got := hostIP(259); got != "127.77.2.10" {
		t.Errorf("hostIP(259) = %s", got)
	}
	r, err := resolve.New(resolve.Config{Servers: []string{sim.DNSAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	hostOf := w.HostOfDomain()
	for _, i := range []int{0, 299} {
		mail, err := r.LookupMail(ctx, DomainName(i))
		if err != nil {
			t.Fatal(err)
		}
		k := hostOf[i]
		if len(mail.Hosts) != 1 || mail.Hosts[0].Host != HostName(k) {
			t.Fatalf("MX of %s = %v, want %s", DomainName(i), mail.Hosts, HostName(k))
		}
		addrs, err := r.LookupHost(ctx, HostName(k))
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 || addrs[0].String() != hostIP(k) {
			t.Fatalf("address of %s = %v, want %s", HostName(k), addrs, hostIP(k))
		}
	}
}
