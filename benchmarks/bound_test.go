package benchmarks

import (
	"testing"
	"time"
)

func TestSession(t *testing.T) {
	tests := []struct {
		r, b      int
		pipelined bool
		want      int
	}{
		// banner, EHLO, MAIL, RCPT batch, QUIT
		{r: 1, b: 50, want: 5},
		{r: 50, b: 50, want: 5},
		// banner, EHLO, MAIL, RCPT, RSET, MAIL, RCPT, RSET, MAIL, RCPT, QUIT
		{r: 120, b: 50, want: 11},
		// banner, EHLO, then RSET+MAIL+RCPT... once per transaction, QUIT with the last
		{r: 120, b: 50, pipelined: true, want: 5},
		{r: 1, b: 1, pipelined: true, want: 3},
	}
	for _, tt := range tests {
		if got := (Dialogue{Pipelined: tt.pipelined}).Session(tt.r, tt.b); got != tt.want {
			t.Errorf("Session(%d, %d), pipelined %v = %d, want %d", tt.r, tt.b, tt.pipelined, got, tt.want)
		}
	}
}

func TestLowerBound(t *testing.T) {
	base := Workload{
		Name: "bound", Skew: 0, RTT: 10 * time.Millisecond,
		MaxConnections: 64, MaxConnectionsPerHost: 2, RcptPerTransaction: 50, RcptPerConnection: 500,
	}
	tests := []struct {
		name       string
		change     func(*Workload)
		pipelined  bool
		want       Bound
		leastConns int
	}{
		{
			// R = 100 + 1 catch-all probe; 51 on the busier connection:
			// 2 (DNS) + 1 session × 2 + 2 transactions × 3 = 10.
			// Global: 1 + ceil((2 + 3×3) / 64) = 2.
			name:       "one host",
			change:     func(w *Workload) { w.Addresses, w.Domains, w.Hosts = 100, 1, 1 },
			want:       Bound{RoundTrips: 10, Time: 100 * time.Millisecond, Host: 0, PerHost: 10, Global: 2},
			leastConns: 1,
		},
		{
			name:       "one host pipelined",
			change:     func(w *Workload) { w.Addresses, w.Domains, w.Hosts = 100, 1, 1 },
			pipelined:  true,
			want:       Bound{RoundTrips: 6, Time: 60 * time.Millisecond, Host: 0, PerHost: 6, Global: 2},
			leastConns: 1,
		},
		{
			// 1200 recipients on one connection: 3 sessions, 24 transactions:
			// 2 + 3×2 + 24×3 = 80. Global: 1 + ceil(78 / 64) = 3.
			name: "reconnections",
			change: func(w *Workload) {
				w.Addresses, w.Domains, w.Hosts, w.MaxConnectionsPerHost, w.NoCatchAllCheck = 1200, 1, 1, 1, true
			},
			want:       Bound{RoundTrips: 80, Time: 800 * time.Millisecond, Host: 0, PerHost: 80, Global: 3},
			leastConns: 3,
		},
		{
			// One connection in all for 4 hosts with 10 recipients each:
			// 1 + 4 × (2 + 3) = 21 beats the per-host 2 + 2 + 3 = 7.
			name: "global cap",
			change: func(w *Workload) {
				w.Addresses, w.Domains, w.Hosts, w.MaxConnections, w.NoCatchAllCheck = 40, 4, 4, 1, true
			},
			want:       Bound{RoundTrips: 21, Time: 210 * time.Millisecond, Host: -1, PerHost: 7, Global: 21},
			leastConns: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := base
			tt.change(&w)
			if err := w.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := w.LowerBound(Dialogue{Pipelined: tt.pipelined}); got != tt.want {
				t.Errorf("LowerBound = %+v, want %+v", got, tt.want)
			}
			if got, want := w.LeastConnections(), tt.leastConns; got != want {
				t.Errorf("LeastConnections = %d, want %d", got, want)
			}
		})
	}
}

// TestL1Bounds pins the figures README.md quotes for the default L1.
func TestL1Bounds(t *testing.T) {
	w := L1()
	if got := w.LowerBound(Dialogue{}); got.RoundTrips != 112 || got.Time != 2240*time.Millisecond {
		t.Errorf("L1 bound = %+v, want 112 round trips, 2.24 s", got)
	}
	if got := w.LowerBound(Dialogue{Pipelined: true}); got.RoundTrips != 44 {
		t.Errorf("L1 pipelined bound = %+v, want 44 round trips", got)
	}
	if got := w.LeastConnections(); got < w.Hosts || got > w.Hosts+(w.Addresses+w.Domains)/w.RcptPerConnection {
		t.Errorf("L1 least connections = %d, want between %d and %d", got, w.Hosts, w.Hosts+(w.Addresses+w.Domains)/w.RcptPerConnection)
	}
	if got := w.NaiveBound(); got != 313*8*20*time.Millisecond {
		t.Errorf("L1 naive bound = %v, want 50.08 s", got)
	}
}
