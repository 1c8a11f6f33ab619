// Package pipeline owns the flow of one verification run: it reads the input
// rows, collapses duplicate addresses, groups them by domain, resolves each
// domain once, routes the addresses to their mail exchangers so that domains
// sharing an MX host share its connections, drives a bounded pool of probing
// sessions per host, classifies every reply and hands exactly one result per
// input row to the output writer. It holds no network code of its own: DNS is
// the resolve package's and SMTP is the probe package's.
//
// One engine (engine.go, router.go, worker.go) serves a whole run, fed in
// parts by the loader (loader.go): memory stays bounded at any input size
// (memory.go says how: partitions on disk, targets that carry their rows,
// host queues that spill to disk when their host falls behind).
//
// The same engine serves a cluster (the cluster package, joined to this one
// by internal/clusterpipe): a worker keeps one engine up for all the units
// it probes (UnitProber), and engines of several processes ask a domain's
// accept-all question once between them (Config.CatchAllShare); the
// coordinator reads the input as Run does, decides here what needs no mail
// server and cuts the rest into units by MX host (Distribute, which knows
// nothing of NATS: a Distributor carries the units and their verdicts).
//
// With a verdict store (Config.Store), a fresh stored verdict is written
// without probing (source "stored"), and what a run learns is written back:
// verdicts, catch-all answers, and what MX hosts taught about their limits
// and their refusals of our egresses (knowledge.go). The store's file
// format and lifetimes are the store package's; deciding what to reuse and
// what to remember is this package's.
package pipeline
