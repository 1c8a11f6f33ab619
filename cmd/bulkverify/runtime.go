package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/operator"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
)

// runtime is what a run needs besides its config values: where it sends
// from, whose limits apply, what it must not ask, when it must stop.
type runtime struct {
	pool     *egress.Pool
	refusals *refusalLog
}

// prepareRun fills pcfg with the run's egress pool, operator table,
// do-not-probe list and circuit breakers, and runs the preflights (DNS
// sanity, port 25) unless they are off. An error stops the run before a
// row is written.
func prepareRun(ctx context.Context, cfg configs.Config, pcfg *pipeline.Config, res *resolve.Resolver, stderr io.Writer) (*runtime, error) {
	var err error
	if pcfg.Replies, err = replyTable(cfg); err != nil {
		return nil, err
	}
	if pcfg.Operators, err = operatorTable(cfg); err != nil {
		return nil, err
	}
	if pcfg.DoNotProbe, err = doNotProbe(cfg); err != nil {
		return nil, err
	}
	pool, err := newPool(cfg)
	if err != nil {
		return nil, err
	}
	if pcfg.HostBreaker, pcfg.DomainBreaker, err = newBreakers(cfg); err != nil {
		return nil, err
	}
	pcfg.Egress = pool
	pcfg.Budget = egress.NewLocalBudget(egress.BudgetConfig{
		PushbackWindow: cfg.Limits.PushbackWindow,
		PushbackShare:  cfg.Limits.PushbackShare,
		MaxPause:       cfg.Limits.PushbackMaxPause,
	})
	rt := &runtime{pool: pool, refusals: &refusalLog{w: stderr}}
	pcfg.OnRefused = rt.refusals.refused
	if err := preflight(ctx, cfg, pcfg.Probe, pool, res, stderr); err != nil {
		return nil, err
	}
	return rt, nil
}

// operatorTable loads the built-in operator table with the user's over it.
func operatorTable(cfg configs.Config) (*operator.Table, error) {
	t, err := operator.Load(cfg.Operators.File)
	if err != nil {
		return nil, usageError{err}
	}
	return t, nil
}

// doNotProbe builds the do-not-probe list from the config and its file.
func doNotProbe(cfg configs.Config) (pipeline.DoNotProbe, error) {
	dnp := pipeline.DoNotProbe{Domains: map[string]bool{}, Operators: map[string]bool{}}
	addDomain := func(where, d string) error {
		a, err := input.ParseAddress("x@" + strings.TrimSpace(d))
		if err != nil {
			return usageError{fmt.Errorf("do-not-probe list, %s: %q is not a domain", where, d)}
		}
		dnp.Domains[a.Domain] = true
		return nil
	}
	for _, d := range cfg.DoNotProbe.Domains {
		if err := addDomain("do_not_probe.domains", d); err != nil {
			return dnp, err
		}
	}
	for _, o := range cfg.DoNotProbe.Operators {
		dnp.Operators[strings.ToLower(strings.TrimSpace(o))] = true
	}
	if cfg.DoNotProbe.File == "" {
		return dnp, nil
	}
	f, err := os.Open(cfg.DoNotProbe.File)
	if err != nil {
		return dnp, usageError{fmt.Errorf("do-not-probe list: %w", err)}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "operator:"):
			dnp.Operators[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(line, "operator:")))] = true
		default:
			if err := addDomain(fmt.Sprintf("%s line %d", cfg.DoNotProbe.File, n), line); err != nil {
				return dnp, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return dnp, usageError{fmt.Errorf("do-not-probe list %s: %w", cfg.DoNotProbe.File, err)}
	}
	return dnp, nil
}

// refusalLog says loudly, once, which egress an operator refused.
type refusalLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *refusalLog) refused(egressName, operator, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "bulkverify: REFUSED: %s refuses our egress %s (%s). That egress asks %s nothing more in this run, "+
		"and the addresses it refused stay unknown/policy_block: they are not asked again from elsewhere. "+
		"Check the address's blocklist listings with bulkverify doctor, slow down (limits, operator table), "+
		"and ask for delisting before probing %s from it again.\n", operator, egressName, reason, operator, operator)
}
