// Package clusterpipe joins the cluster package (JetStream units, results,
// budget, accept-all share, verdict cache) to the pipeline package (the
// engine that probes, and the front end that reads an input and writes its
// output), which do not import each other: the cluster's wire structs stay
// its own, and the pipeline knows nothing of NATS.
//
// It owns the translations between them: a worker's cluster.Prober made of
// a pipeline.UnitProber (Prober), a coordinator's pipeline.Distributor made
// of a cluster.Coordinator (Remote), and the cluster's verdict cache as a
// pipeline.VerdictCache (Cache). Flags, config files and printing stay with
// cmd/bulkverify; the benchmarks use the same pieces for their cluster
// runs.
package clusterpipe
