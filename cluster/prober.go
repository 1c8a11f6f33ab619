package cluster

import "context"

// Prober probes the addresses of a unit: the seam where the cluster's
// scheduling meets the engine that asks mail servers (the same one a local
// verify uses, adapted by the pipeline package).
//
// Probe must call emit exactly once for each address of u, with the
// address's Key, from any goroutine, and return when all are emitted (nil)
// or when it cannot go on: ctx ended (ctx.Err()) or a failure of its own.
// Results emitted before an error are kept: a redelivered unit is probed
// again only for the addresses without a result. emit does not block for
// long and must not be called after Probe returned.
type Prober interface {
	Probe(ctx context.Context, u Unit, emit func(Result)) error
}

// ProberFunc lets a function be a Prober.
type ProberFunc func(ctx context.Context, u Unit, emit func(Result)) error

// Probe implements Prober.
func (f ProberFunc) Probe(ctx context.Context, u Unit, emit func(Result)) error {
	return f(ctx, u, emit)
}
