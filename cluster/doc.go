// Package cluster runs bulkverify on many machines over NATS JetStream:
// a coordinator per job publishes work units to a work-queue stream, any
// number of workers pull and probe them and publish one result per address
// (in batches), and the coordinator collects the results, each once, across
// restarts of itself, of workers and of the NATS server. It builds only on JetStream's
// own primitives (streams, durable pull consumers, message-id dedupe, KV
// buckets with TTLs and compare-and-set); there is no protocol of its own.
//
// It owns:
//
//   - the wire: Unit (an MX-host group of addresses with what is known of
//     their domains) and Result (the facts of one address's verdict), JSON,
//     versioned, kept far below NATS's default 1 MB payload (SplitUnit);
//     subjects, streams and buckets are named in names.go, all under
//     bulkverify.v1 / BULKVERIFY_V1 / bulkverify-v1;
//   - the Coordinator (Submit, Collect, Cleanup) and the Worker (pull,
//     probe through a Prober, publish, acknowledge only once the unit's
//     results are stored; in-progress acks while probing; give back on
//     shutdown; fail the addresses left on the last delivery);
//   - the cluster-wide politeness Budget (egress.Budget): per operator,
//     session leases with TTLs, a shared RCPT token bucket and a shared
//     pushback pause;
//   - CatchAll (the engine's pipeline.CatchAllShare), so a domain's accept-all question is asked once by
//     the whole cluster;
//   - the VerdictCache, the verdict store of cluster mode, in a KV bucket;
//   - Status, the snapshot `bulkverify cluster status` prints.
//
// It leaves to others: probing (the Prober, which the pipeline package
// implements with the same engine a local verify uses), cutting an input
// into units and writing the output (the verify front end), flags and
// printing (cmd/bulkverify). It holds no package state; every knob is a
// Config field, the clock included.
//
// Guarantees, and their limits:
//
//   - A unit is acknowledged by its worker only after every result of it is
//     stored in JetStream, so a worker killed at any point loses nothing:
//     its unit is handed out again after Config.AckWait, and the next
//     worker probes only the addresses without a stored result. An address
//     is thus asked again only if a worker died between asking it and
//     storing its result.
//   - Results go in batches of one unit's (at most 64, at most 20 ms
//     after the first), each with a Nats-Msg-Id made of its job, unit and
//     keys, so a batch published twice within Config.DuplicateWindow is
//     stored once; the coordinator also drops a key it has seen.
//   - Collect acknowledges results a whole unit at a time, after the
//     caller's Checkpoint and after marking the unit done in the jobs
//     bucket. A Collect that starts again gives again only the results of
//     units not marked done; Skip drops those the caller already wrote.
//   - Session leases hold as long as holders reach NATS: a holder cut off
//     for longer than Config.LeaseTTL while its session goes on is the one
//     case where more than Limits.Sessions sessions can be open (counted in
//     BudgetStats.LeasesLost).
package cluster
