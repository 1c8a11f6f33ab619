package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"slices"

	"github.com/bulkverify/bulkverify/finder"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/store"
	"github.com/bulkverify/bulkverify/verdict"
)

// Column names find reads, each list in priority order (any case).

// FindDomainColumns are the names of the column that holds the domain (or a
// website, or an address at the domain).
func FindDomainColumns() []string {
	return []string{"domain", "company_domain", "company domain", "website", "url", "web", "site", "email"}
}

func findFirstColumns() []string {
	return []string{"first_name", "first name", "firstname", "given_name", "given name", "first"}
}

func findLastColumns() []string {
	return []string{"last_name", "last name", "lastname", "surname", "family_name", "family name", "last"}
}

func findNameColumns() []string { return []string{"name", "full_name", "full name", "fullname"} }

// Reasons of find rows that could not be searched.
const (
	ReasonNoName = "no_name"
)

// FindConfig is what find needs beyond Config.
type FindConfig struct {
	Patterns   []finder.Pattern
	TopK       int                                      // only the first K patterns; 0 = all
	Candidates output.RowWriter[output.CandidateResult] // optional: one row per candidate
	OnResult   func(output.FindResult)                  // called for every person written
}

// findPerson is one input row of find on its way to a decision.
type findPerson struct {
	ref      rowRef
	dom      *findDomain
	cands    []finder.Candidate
	verdicts []*Verdict
	pending  int
}

// findDomain is every person at one domain: the domain's pattern can only be
// learnt, and so its people decided, once all of them are answered.
type findDomain struct {
	name    string
	people  []*findPerson
	pending int
}

type candRef struct {
	p   *findPerson
	idx int
}

// findBatch is the whole input of find, read and grouped.
type findBatch struct {
	rows    int
	invalid []invalidRow
	groups  []DomainGroup
	byAddr  map[string][]candRef
	domains map[string]*findDomain
}

// Find maps every person of src to the address that exists for them, asking
// about all candidates of all people at one domain over the same connections
// that verify uses, and writes one row per person to sink.
func Find(ctx context.Context, cfg Config, fc FindConfig, res *resolve.Resolver, src *input.Reader,
	sink output.RowWriter[output.FindResult]) (Summary, error) {
	cfg.setDefaults()
	start := time.Now()
	sum := Summary{ByStatus: map[string]int{}, ByReason: map[string]int{}}
	isRole := signals.Default().IsRole
	if cfg.Signals != nil {
		isRole = cfg.Signals.IsRole
	}
	b, err := readPeople(src, fc, isRole)
	if err != nil {
		return sum, err
	}
	sum.Rows = b.rows
	sum.Addresses = len(b.byAddr)
	sum.Domains = len(b.groups)
	if cfg.OnTotal != nil {
		cfg.OnTotal(b.rows)
	}

	verdicts := make(chan Verdict, 256)
	g, gctx := errgroup.WithContext(ctx)
	gctx, stopProbing := context.WithCancel(gctx)
	defer stopProbing()
	e := newEngine(gctx, cfg, res, verdicts)
	g.Go(func() error { return writePeople(cfg, fc, b, verdicts, sink, &sum, stopProbing, e.sink) })
	var stats EngineStats
	g.Go(func() error {
		defer close(verdicts)
		groups := b.groups
		if cfg.Store != nil && !cfg.Refresh {
			groups = findStored(gctx, &e.cfg, e.sink, groups, verdicts)
		}
		e.feed(groups)
		stats = e.end()
		return nil
	})
	err = g.Wait()
	e.sink.flush()
	if serr := e.sink.error(); serr != nil {
		sum.StoreError = serr.Error()
	}
	sum.Connections = stats.Connections
	sum.MXHosts = len(stats.MXHosts)
	sum.Duration = time.Since(start)
	if err == nil {
		err = ctx.Err()
	}
	return sum, err
}

// readPeople groups the people of src by domain, with their candidate
// addresses; a role account (isRole) is never a candidate for a person.
func readPeople(src *input.Reader, fc FindConfig, isRole func(string) bool) (findBatch, error) {
	b := findBatch{byAddr: map[string][]candRef{}, domains: map[string]*findDomain{}}
	firstCol, lastCol := src.Lookup(findFirstColumns()...), src.Lookup(findLastColumns()...)
	nameCol := src.Lookup(findNameColumns()...)
	if (firstCol < 0 || lastCol < 0) && nameCol < 0 {
		return b, &input.HeaderError{Header: src.Header(), Reason: input.HeaderNoColumn, What: "name",
			Accepted: append(append(findFirstColumns(), findLastColumns()...), findNameColumns()...)}
	}
	field := func(fields []string, i int) string {
		if i >= 0 && i < len(fields) {
			return fields[i]
		}
		return ""
	}
	domIdx := map[string]int{}
	for {
		rec, err := src.Next()
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("reading input: %w", err)
		}
		b.rows++
		ref := rowRef{row: rec.Row, fields: rec.Fields}
		invalid := func(reason string) {
			b.invalid = append(b.invalid, invalidRow{ref: ref, reason: reason})
		}
		if rec.Ragged {
			invalid(ReasonRaggedRow)
			continue
		}
		domain, err := finder.DomainFrom(rec.Email)
		if err != nil {
			reason := input.ReasonSyntax
			var se *input.SyntaxError
			if errors.As(err, &se) {
				reason = se.Reason
			}
			invalid(reason)
			continue
		}
		var person finder.Person
		if firstCol >= 0 && lastCol >= 0 {
			person = finder.PersonFromParts(field(rec.Fields, firstCol), field(rec.Fields, lastCol))
		}
		if person.First == "" && person.Last == "" && nameCol >= 0 {
			person = finder.SplitName(field(rec.Fields, nameCol))
		}
		if person.First == "" && person.Last == "" {
			invalid(ReasonNoName)
			continue
		}
		cands := finder.CandidatesExcept(person, domain, fc.Patterns, fc.TopK, isRole)
		if len(cands) == 0 {
			invalid(finder.ReasonNoCandidates)
			continue
		}
		dom := b.domains[domain]
		if dom == nil {
			dom = &findDomain{name: domain}
			b.domains[domain] = dom
		}
		p := &findPerson{ref: ref, dom: dom, cands: cands, verdicts: make([]*Verdict, len(cands)), pending: len(cands)}
		dom.people = append(dom.people, p)
		dom.pending++
		for i, c := range cands {
			addr, key := c.Addr, c.Address // parsed and checked by finder.Candidates
			if _, seen := b.byAddr[key]; !seen {
				gi, ok := domIdx[addr.Domain]
				if !ok {
					gi = len(b.groups)
					domIdx[addr.Domain] = gi
					b.groups = append(b.groups, DomainGroup{Domain: addr.Domain})
				}
				b.groups[gi].Addresses = append(b.groups[gi].Addresses, addr)
			}
			b.byAddr[key] = append(b.byAddr[key], candRef{p: p, idx: i})
		}
	}
}

// writePeople is the only goroutine that touches the sinks. A person is
// written once their whole domain is answered.
func writePeople(cfg Config, fc FindConfig, b findBatch, verdicts <-chan Verdict,
	sink output.RowWriter[output.FindResult], sum *Summary, stopProbing func(), st *storeSink) error {
	var werr error
	fail := func(err error) {
		if werr == nil {
			werr = fmt.Errorf("writing results: %w", err)
			stopProbing()
		}
	}
	write := func(ref rowRef, r output.FindResult) {
		if werr != nil {
			return
		}
		r.Row = ref.row
		if err := sink.Write(ref.fields, r); err != nil {
			fail(err)
			return
		}
		sum.ByStatus[r.Status]++
		sum.ByReason[r.Reason]++
		if fc.OnResult != nil {
			fc.OnResult(r)
		}
	}
	now := cfg.Now()
	for _, inv := range b.invalid {
		write(inv.ref, output.FindResult{Status: output.StatusInvalid, Reason: inv.reason, CheckedAt: now})
	}
	for v := range verdicts {
		if v.stored {
			sum.Stored++
		} else {
			sum.Probed++
			if st.ok() && v.Reason != verdict.ReasonSkipped {
				st.put(v)
			}
		}
		for _, cr := range b.byAddr[v.Addr.String()] {
			cr.p.verdicts[cr.idx] = &v
			cr.p.pending--
			if cr.p.pending > 0 {
				continue
			}
			dom := cr.p.dom
			dom.pending--
			if dom.pending > 0 {
				continue
			}
			for _, d := range decideDomain(dom) {
				write(d.p.ref, d.result)
				if fc.Candidates != nil && werr == nil {
					for i, c := range d.p.cands {
						if err := fc.Candidates.Write(d.p.ref.fields, candidateResult(d.p.ref.row, c, d.p.verdicts[i])); err != nil {
							fail(err)
						}
					}
				}
			}
		}
	}
	if checkpoint(cfg, sink, &werr); werr != nil {
		stopProbing()
	}
	if fc.Candidates != nil {
		if err := fc.Candidates.Flush(); err != nil {
			fail(err)
		}
	}
	return werr
}

type personResult struct {
	p      *findPerson
	result output.FindResult
}

// decideDomain decides every person at a fully answered domain: first each
// on their own answers, then, if the confident finds agree on a pattern,
// the accept-all guesses again with that pattern ranked first.
func decideDomain(dom *findDomain) []personResult {
	decisions := make([]finder.Decision, len(dom.people))
	catchAll := make([]*bool, len(dom.people))
	for i, p := range dom.people {
		catchAll[i] = domainCatchAll(p.verdicts)
		decisions[i] = finder.Decide(outcomes(p), catchAll[i], "")
	}
	pattern, learnt := finder.LearnDomainPattern(decisions)
	out := make([]personResult, len(dom.people))
	for i, p := range dom.people {
		d := decisions[i]
		if learnt && d.Reason == finder.ReasonAcceptAll {
			d = finder.Decide(outcomes(p), catchAll[i], pattern)
		}
		r := output.FindResult{
			Email:        d.Email,
			Confidence:   d.Confidence,
			Status:       d.Status,
			Reason:       d.Reason,
			Pattern:      d.Pattern,
			Alternatives: strings.Join(d.Alternatives, " "),
			Candidates:   len(p.cands),
			CatchAll:     catchAll[i],
		}
		if learnt {
			r.DomainPattern = pattern
		}
		if d.Basis >= 0 {
			v := p.verdicts[d.Basis]
			if v.Reply != nil {
				r.SMTPCode, r.EnhancedCode, r.SMTPMessage = v.Reply.Code, v.Reply.Enhanced, v.Reply.Text()
			}
			r.MXHost, r.TLS, r.CheckedAt = v.MXHost, v.TLS, v.At
		}
		for _, v := range p.verdicts {
			if v.At.After(r.CheckedAt) {
				r.CheckedAt = v.At
			}
		}
		out[i] = personResult{p: p, result: r}
	}
	return out
}

func outcomes(p *findPerson) []finder.Outcome {
	out := make([]finder.Outcome, len(p.cands))
	for i, c := range p.cands {
		out[i] = finder.Outcome{Candidate: c, Status: p.verdicts[i].Status, Reason: p.verdicts[i].Reason}
	}
	return out
}

// domainCatchAll is the domain's accept-all answer as the verdicts carry it.
func domainCatchAll(vs []*Verdict) *bool {
	for _, v := range vs {
		if v.CatchAll != nil {
			return v.CatchAll
		}
	}
	return nil
}

func candidateResult(row int, c finder.Candidate, v *Verdict) output.CandidateResult {
	r := output.CandidateResult{
		Row:       row,
		Candidate: c.Address,
		Pattern:   c.Pattern,
		Rank:      c.Rank,
		Status:    v.Status,
		Reason:    v.Reason,
		MXHost:    v.MXHost,
		CatchAll:  v.CatchAll,
		Attempts:  v.Attempts,
		CheckedAt: v.At,
	}
	if v.Reply != nil {
		r.SMTPCode, r.EnhancedCode, r.SMTPMessage = v.Reply.Code, v.Reply.Enhanced, v.Reply.Text()
	}
	return r
}

// findStored looks the candidates' domains up in the store and sends every
// candidate whose stored verdict is fresh to out, as a Verdict marked
// stored; it returns the groups of the candidates left to probe.
func findStored(ctx context.Context, cfg *Config, st *storeSink, groups []DomainGroup, out chan<- Verdict) []DomainGroup {
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(groups[a].Domain, groups[b].Domain) })
	names := make([]string, len(order))
	index := make([]map[string]int, len(groups)) // by group: address -> index
	for i, gi := range order {
		names[i] = groups[gi].Domain
		m := make(map[string]int, len(groups[gi].Addresses))
		for ai, a := range groups[gi].Addresses {
			m[a.String()] = ai
		}
		index[gi] = m
	}
	stored := make([][]bool, len(groups))
	_, err := cfg.Store.LookupDomains(ctx, cfg.StoreNamespaces, names, func(i int, v store.Verdict) bool {
		gi := order[i]
		ai, ok := index[gi][v.Address]
		if !ok || !cfg.Store.Fresh(v) {
			return true
		}
		if stored[gi] == nil {
			stored[gi] = make([]bool, len(groups[gi].Addresses))
		}
		stored[gi][ai] = true
		out <- storedVerdict(v, groups[gi].Addresses[ai])
		return true
	})
	if err != nil && ctx.Err() == nil {
		st.check(err)
	}
	left := make([]DomainGroup, 0, len(groups))
	for gi, grp := range groups {
		if g := probeLeft(grp, stored[gi]); len(g.Addresses) > 0 {
			left = append(left, g)
		}
	}
	return left
}

// storedVerdict is a stored verdict as the engine would have given it.
func storedVerdict(v store.Verdict, addr input.Address) Verdict {
	out := Verdict{
		Addr: addr, text: v.Address, Status: v.Status, Reason: v.Reason, MXHost: v.MXHost, Egress: v.Egress,
		CatchAll: v.CatchAll.Bool(), TLS: v.TLS.Bool(), Attempts: v.Attempts, At: v.CheckedAt, stored: true,
	}
	if v.SMTPCode != 0 || v.EnhancedCode != "" || v.Message != "" {
		out.Reply = &probe.Reply{Code: v.SMTPCode, Enhanced: v.EnhancedCode, Lines: []string{v.Message}}
	}
	return out
}
