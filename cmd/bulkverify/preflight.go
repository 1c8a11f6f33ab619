package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// preflight runs the checks of egress.preflight before a list is read: the
// resolver must answer the MX of the DNS canaries truthfully, and at least
// one egress must reach a canary mail server on port 25. A failure is an
// error for exit code 1, before any row is written. Partial failures are
// warnings on stderr, and an egress that reached no canary while others did
// is left out of the run (Pool.Disable): it would only time out.
func preflight(ctx context.Context, cfg configs.Config, pc probe.Config, pool *egress.Pool, res *resolve.Resolver, stderr io.Writer) error {
	if !cfg.Egress.Preflight {
		return nil
	}
	canaries, err := egress.CheckDNS(ctx, res, cfg.Egress.DNSCanaryDomains)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	for _, c := range canaries {
		if c.Err != nil {
			fmt.Fprintf(stderr, "preflight: warning: MX of %s: %v\n", c.Domain, c.Err)
		}
	}
	rep, err := egress.CheckPort25(ctx, pool, res, egress.Port25Config{
		Domains: cfg.Egress.CanaryDomains,
		Port:    cfg.SMTP.Port,
		Probe:   pc,
		Timeout: cfg.Egress.PreflightTimeout,
	})
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	reached := 0
	for _, e := range pool.Egresses() {
		if rep.Reached(e.Name()) {
			reached++
			continue
		}
		var why []string
		for _, a := range rep.Attempts {
			if a.Egress == e.Name() && a.Err != nil {
				why = append(why, a.Host+": "+a.Err.Error())
			}
		}
		if len(why) == 0 {
			continue // disabled before the check
		}
		pool.Disable(e, "reached no canary mail server in the preflight")
		fmt.Fprintf(stderr, "preflight: warning: egress %s reached no canary mail server (%s); it is left out of this run\n",
			e.Name(), strings.Join(why, "; "))
	}
	for _, a := range rep.Attempts {
		if a.Outcome == egress.OutcomeRefused {
			fmt.Fprintf(stderr, "preflight: warning: %s refused egress %s: %v (is the address blocklisted? see bulkverify doctor)\n",
				a.Host, a.Egress, a.Err)
		}
	}
	fmt.Fprintf(stderr, "preflight: DNS answers; port 25 reachable from %d of %d egresses\n", reached, len(pool.Egresses()))
	return nil
}

// newBreakers are the circuit breakers of a run: distinct MX hosts failing
// at TCP, and distinct domains answering NXDOMAIN.
func newBreakers(cfg configs.Config) (hosts, domains *egress.Breaker, err error) {
	hosts, err = egress.NewBreaker(egress.BreakerConfig{
		MinSample: cfg.Egress.BreakerMinHosts, Threshold: cfg.Egress.BreakerHostShare, Window: cfg.Egress.BreakerWindow,
	})
	if err != nil {
		return nil, nil, usageError{err}
	}
	domains, err = egress.NewBreaker(egress.BreakerConfig{
		MinSample: cfg.Egress.BreakerMinDomains, Threshold: cfg.Egress.BreakerNXDomainShare, Window: cfg.Egress.BreakerWindow,
	})
	if err != nil {
		return nil, nil, usageError{err}
	}
	return hosts, domains, nil
}
