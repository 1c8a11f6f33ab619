package clusterpipe

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
)

// Prober is a worker's cluster.Prober: every unit is probed by one
// pipeline.UnitProber, the same engine verify uses, so that the units a
// worker probes at once share its connections and their limits.
type Prober struct {
	Engine *pipeline.UnitProber
	// OnTripped, when set, is called once when a circuit breaker stops the
	// engine (port 25 blocked mid-run): the worker should stop taking
	// units rather than fail every unit it takes.
	OnTripped func(error)
	once      sync.Once
}

var _ cluster.Prober = (*Prober)(nil)

// Probe implements cluster.Prober.
func (p *Prober) Probe(ctx context.Context, unit cluster.Unit, emit func(cluster.Result)) error {
	addrs := make([]input.Address, 0, len(unit.Addresses))
	keys := make([]uint64, 0, len(unit.Addresses))
	for _, a := range unit.Addresses {
		parsed, err := input.ParseAddress(a.String())
		if err != nil {
			// A coordinator sends only addresses it parsed; one of another
			// version's may still not parse here.
			reason := input.ReasonSyntax
			var se *input.SyntaxError
			if errors.As(err, &se) {
				reason = se.Reason
			}
			emit(cluster.Result{Key: a.Key, Status: output.StatusInvalid, Reason: reason, CheckedAt: time.Now()})
			continue
		}
		addrs = append(addrs, parsed)
		keys = append(keys, a.Key)
	}
	known := make(map[string]pipeline.UnitDomain, len(unit.Domains))
	for _, d := range unit.Domains {
		var k pipeline.UnitDomain
		if len(d.MX) > 0 {
			mail := &resolve.Mail{Domain: d.Name, Implicit: d.Implicit}
			for _, mx := range d.MX {
				mail.Hosts = append(mail.Hosts, resolve.MX{Host: mx.Host, Preference: mx.Preference})
			}
			k.Mail = mail
		}
		k.CatchAll = d.CatchAll
		known[d.Name] = k
	}
	err := p.Engine.Probe(ctx, addrs, known, func(i int, v pipeline.Verdict) { emit(ResultOf(keys[i], v)) })
	var tripped *pipeline.TrippedError
	if errors.As(err, &tripped) && p.OnTripped != nil {
		p.once.Do(func() { p.OnTripped(err) })
	}
	return err
}

// ResultOf is a verdict on the wire.
func ResultOf(key uint64, v pipeline.Verdict) cluster.Result {
	r := cluster.Result{
		Key: key, Status: v.Status, Reason: v.Reason, MXHost: v.MXHost, CatchAll: v.CatchAll, TLS: v.TLS,
		Egress: v.Egress, Provider: v.Provider, Attempts: v.Attempts, CheckedAt: v.At,
	}
	if v.Reply != nil {
		r.SMTPCode, r.EnhancedCode, r.Message = v.Reply.Code, v.Reply.Enhanced, v.Reply.Text()
	}
	return r
}
