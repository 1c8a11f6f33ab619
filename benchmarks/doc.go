// Package benchmarks owns the reproducible speed measurements of bulkverify
// against the simulated mail world (mailsim) with injected network latency:
// the workloads (how many addresses, domains and MX hosts, how skewed the
// sharing of hosts is, the round-trip time), a baseline "naive" strategy that
// verifies addresses the way one-address-at-a-time verifiers do, the lower
// bound on wall time that the protocol and the politeness limits allow, and
// the measurement of each run (wall time, connections, SMTP commands and DNS
// queries as counted by the simulated servers, CPU time, allocations, peak
// RSS, and whether every verdict is the one the world implies).
//
// The naive strategy lives here, not in pipeline, because only benchmarks may
// select it: it exists to be compared against.
//
// The world runs in the measuring process (Run) or in a process of its own
// (ServeWorld at one end of a pipe, RemoteWorld at the other, RunAgainst),
// so that its CPU time and memory can be told apart from the strategy's.
//
// The testing.B suite (bench_test.go) and the command in cmd/bench run the
// same code; the command also re-executes itself once per run so that each
// run's peak RSS is its own. See README.md for the figures.
package benchmarks
