package benchmarks

import "time"

// Bound is the least wall time a run of a workload can take, in round trips
// and in time, under a model of the SMTP dialogue. See README.md for the
// derivation.
type Bound struct {
	RoundTrips int           // the bound in round trips
	Time       time.Duration // RoundTrips × RTT
	Host       int           // the host that sets the per-host term, -1 when the global term is larger
	PerHost    int           // round trips of the per-host term (the largest over hosts)
	Global     int           // round trips of the global-connection-cap term
}

// Dialogue says how many round trips the parts of an SMTP session cost.
type Dialogue struct {
	// Pipelined: RSET, MAIL and a transaction's RCPTs share one round trip,
	// and QUIT rides with the last batch (RFC 2920 allows both). Without
	// it, MAIL and RSET are lock-step and QUIT waits for its reply: the
	// dialogue bulkverify's pipeline has.
	Pipelined bool
}

// costs returns what a session costs beyond its transactions (base) and
// what each transaction costs (perTxn), in round trips. Lock-step: banner,
// EHLO and QUIT, less the RSET the first transaction does not need (base 2);
// RSET, MAIL and the pipelined RCPT batch per transaction (perTxn 3).
// Pipelined: banner and EHLO (base 2); one round trip per transaction.
func (d Dialogue) costs() (base, perTxn int) {
	if d.Pipelined {
		return 2, 1
	}
	return 2, 3
}

// Session is the round trips of one session asking r recipients, at most b
// per transaction.
func (d Dialogue) Session(r, b int) int {
	base, perTxn := d.costs()
	return base + perTxn*ceilDiv(r, b)
}

// chain is the least round trips one connection slot needs to ask r
// recipients over consecutive sessions of at most c recipients and
// transactions of at most b: every session pays base, and however the
// recipients are split there are at least ceil(r/b) transactions.
func (d Dialogue) chain(r, b, c int) int {
	if r <= 0 {
		return 0
	}
	base, perTxn := d.costs()
	return ceilDiv(r, c)*base + ceilDiv(r, b)*perTxn
}

// LowerBound is the least wall time for the workload's bulkverify run under
// dialogue d:
//
//	per host h with R_h recipients (addresses + one catch-all probe per
//	domain), k connections, b RCPT per transaction, c per connection:
//	  T_h = 1 (MX lookup) + 1 (A/AAAA lookup of the host) + chain(ceil(R_h/k))
//	  chain(r) = ceil(r/c) × base + ceil(r/b) × perTxn
//	global, G connections in all:
//	  T_G = 1 (MX lookup) + ceil(Σ_h chain(R_h) / G)
//	bound = max(max_h T_h, T_G) round trips
//
// base and perTxn are those of Dialogue.costs. The k connections of a host
// share its recipients, so the busiest one has at least ceil(R_h/k); a host's
// chain of sessions cannot be shorter than chain(); all chains together need
// Σ chain(R_h) slot-round-trips at least, shared by G slots. The RCPT rate
// limit is not in the bound: the benchmarks run without one.
func (w Workload) LowerBound(d Dialogue) Bound {
	b := Bound{Host: -1}
	total := 0
	for k, r := range w.RecipientsPerHost() {
		if r == 0 {
			continue
		}
		per := 2 + d.chain(ceilDiv(r, w.MaxConnectionsPerHost), w.RcptPerTransaction, w.RcptPerConnection)
		if per > b.PerHost {
			b.PerHost, b.Host = per, k
		}
		total += d.chain(r, w.RcptPerTransaction, w.RcptPerConnection)
	}
	b.Global = 1 + ceilDiv(total, w.MaxConnections)
	b.RoundTrips = b.PerHost
	if b.Global > b.PerHost {
		b.RoundTrips, b.Host = b.Global, -1
	}
	b.Time = time.Duration(b.RoundTrips) * w.RTT
	return b
}

// LeastConnections is the fewest SMTP connections bulkverify can make: each
// host's recipients over connections of at most RcptPerConnection.
func (w Workload) LeastConnections() int {
	n := 0
	for _, r := range w.RecipientsPerHost() {
		n += ceilDiv(r, w.RcptPerConnection)
	}
	return n
}

// NaiveRoundTrips is the round trips the naive strategy spends on one
// address: MX lookup, A/AAAA lookup (asked in parallel), banner, EHLO, MAIL,
// the catch-all RCPT, the real RCPT, QUIT.
const NaiveRoundTrips = 8

// NaiveBound is the least wall time of the naive strategy: its workers each
// take one address at a time, NaiveRoundTrips round trips each.
func (w Workload) NaiveBound() time.Duration {
	return time.Duration(ceilDiv(w.Addresses, w.MaxConnections)*NaiveRoundTrips) * w.RTT
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
