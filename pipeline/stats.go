package pipeline

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/verdict"
)

// hostStats counts what happened at one MX host, for the summary and the
// report. Workers of the host update it concurrently.
type hostStats struct {
	addresses, connections, rcpt atomic.Int64
	replies4xx, replies5xx       atomic.Int64
	greylisted, policyBlocks     atomic.Int64
	undeliverable, unknown       atomic.Int64

	mu      sync.Mutex
	latency report.Latencies // per round trip (a pipelined group, or one command)
}

// reply counts one reply and how it was read.
func (s *hostStats) reply(r probe.Reply, d verdict.Decision) {
	switch {
	case r.Transient():
		s.replies4xx.Add(1)
	case r.Permanent():
		s.replies5xx.Add(1)
	}
	switch d.Reason {
	case verdict.ReasonGreylisted:
		s.greylisted.Add(1)
	case verdict.ReasonPolicyBlock:
		s.policyBlocks.Add(1)
	}
}

func (s *hostStats) roundTrip(d time.Duration) {
	s.mu.Lock()
	s.latency.Observe(d)
	s.mu.Unlock()
}

// HostSummary is what happened at one MX host during a run.
type HostSummary struct {
	Host          string        `json:"host"`
	Provider      string        `json:"provider,omitempty"` // its operator in the operator table, "" if none
	Addresses     int           `json:"addresses"`          // addresses routed to it
	Connections   int           `json:"connections"`        // SMTP sessions established
	RCPT          int           `json:"rcpt"`               // RCPT TO commands sent, positive controls and catch-all checks included
	Replies4xx    int           `json:"replies_4xx"`
	Replies5xx    int           `json:"replies_5xx"`
	Greylisted    int           `json:"greylisted"`    // replies read as greylisting
	PolicyBlocks  int           `json:"policy_blocks"` // replies read as a refusal of us
	Undeliverable int           `json:"undeliverable"` // final verdicts it gave
	Unknown       int           `json:"unknown"`
	LatencyP50    time.Duration `json:"latency_p50_ns"` // per round trip; 0 = none measured
	LatencyP95    time.Duration `json:"latency_p95_ns"`
}

func (h *hostQueue) summary() HostSummary {
	s := &h.stats
	out := HostSummary{
		Host:          h.name,
		Addresses:     int(s.addresses.Load()),
		Connections:   int(s.connections.Load()),
		RCPT:          int(s.rcpt.Load()),
		Replies4xx:    int(s.replies4xx.Load()),
		Replies5xx:    int(s.replies5xx.Load()),
		Greylisted:    int(s.greylisted.Load()),
		PolicyBlocks:  int(s.policyBlocks.Load()),
		Undeliverable: int(s.undeliverable.Load()),
		Unknown:       int(s.unknown.Load()),
	}
	if !h.op.Own() {
		out.Provider = h.operator
	}
	s.mu.Lock()
	if s.latency.Count() > 0 {
		out.LatencyP50, out.LatencyP95 = s.latency.Quantile(0.5), s.latency.Quantile(0.95)
	}
	s.mu.Unlock()
	return out
}

// TrippedError stops a run whose circuit breaker tripped: too many MX hosts
// could not be reached at TCP (port 25 blocked), or too many domains came
// back NXDOMAIN (a resolver that lies).
type TrippedError struct {
	What         string // "hosts" or "domains"
	Failed, Seen int    // of the most recent distinct ones
}

func (e *TrippedError) Error() string {
	if e.What == "domains" {
		return fmt.Sprintf("stopped: %d of the last %d domains came back as nonexistent (NXDOMAIN): the DNS resolver cannot be trusted "+
			"(a captive portal, filtering or split DNS); rows of those domains may have been written as invalid/nxdomain: "+
			"check --resolver, run bulkverify doctor, then verify them again", e.Failed, e.Seen)
	}
	return fmt.Sprintf("stopped: %d of the last %d MX hosts could not be reached on port 25 (refused or timed out): "+
		"outbound port 25 is probably blocked where this runs; use --proxy or --source-ip, run elsewhere, "+
		"or see bulkverify doctor; the rows decided so far are written, --resume continues", e.Failed, e.Seen)
}
