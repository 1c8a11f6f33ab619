package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// Config is everything one run needs besides its input, output and resolver.
type Config struct {
	Probe                 probe.Config
	SMTPPort              int           // port of the mail exchangers, 25 on the internet
	IdleTimeout           time.Duration // how long an idle connection waits for more work before QUIT
	MaxConnections        int           // simultaneous SMTP connections in total
	MaxConnectionsPerHost int           // simultaneous SMTP connections to one MX host
	NewConnectionBacklog  int           // another connection to a host only while more than this many addresses per open connection wait
	RcptPerTransaction    int           // RCPT per MAIL transaction before RSET
	RcptPerConnection     int           // RCPT per connection before QUIT and reconnect
	MaxAttempts           int           // tries per address when connections fail under it
	DNSWorkers            int           // domains resolved in parallel

	Now      func() time.Time    // nil = time.Now
	OnTotal  func(rows int)      // called once, when the input has been read
	OnResult func(output.Result) // called for every row written, from one goroutine
}

func (c *Config) setDefaults() {
	if c.SMTPPort == 0 {
		c.SMTPPort = 25
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 64
	}
	if c.MaxConnectionsPerHost <= 0 {
		c.MaxConnectionsPerHost = 2
	}
	if c.NewConnectionBacklog <= 0 {
		c.NewConnectionBacklog = 50
	}
	if c.RcptPerTransaction <= 0 {
		c.RcptPerTransaction = 50
	}
	if c.RcptPerConnection <= 0 {
		c.RcptPerConnection = 500
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.DNSWorkers <= 0 {
		c.DNSWorkers = 32
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Summary counts what one run did.
type Summary struct {
	Rows        int
	Addresses   int // distinct addresses probed or judged
	Domains     int
	MXHosts     int // hosts at least one connection was established to
	Connections int // SMTP sessions established
	ByStatus    map[string]int
	ByReason    map[string]int
	Duration    time.Duration
}

// rowRef is one input row waiting for the verdict on its address.
type rowRef struct {
	row    int
	fields []string
}

// target is one distinct address and every row that asked for it.
type target struct {
	raw   string
	addr  input.Address
	rows  []rowRef
	mail  resolve.Mail
	mxIdx int // index into mail.Hosts of the host it is routed to
	tries int // RCPT commands sent for it

	// set when an invalid row is known before any network work
	status, reason string
}

// verdict is the decided result of one target.
type verdict struct {
	t      *target
	status string
	reason string
	reply  *probe.Reply
	mxHost string
	at     time.Time
}

// Run verifies every row of src and writes one result per row to sink. It
// returns when every row is written, or when ctx is cancelled or a fatal
// error happens; in both of those cases what was decided is still written.
func Run(ctx context.Context, cfg Config, res *resolve.Resolver, src *input.Reader, sink output.Writer) (Summary, error) {
	cfg.setDefaults()
	start := time.Now()
	r := &run{
		cfg:     cfg,
		res:     res,
		slots:   make(chan struct{}, cfg.MaxConnections),
		results: make(chan verdict, 256),
		summary: Summary{ByStatus: map[string]int{}, ByReason: map[string]int{}},
	}
	r.router = newRouter(&r.cfg, r.startWorker, r.finish)

	// Reading is a barrier by nature: grouping by domain needs every row,
	// and a malformed file should fail before anything is probed.
	batch, err := readAll(src)
	if err != nil {
		return r.summary, err
	}
	r.summary.Rows = batch.rows
	r.summary.Addresses = len(batch.targets)
	r.summary.Domains = len(batch.domains)
	if cfg.OnTotal != nil {
		cfg.OnTotal(batch.rows)
	}

	g, gctx := errgroup.WithContext(ctx)
	r.workCtx = gctx
	g.Go(func() error { return r.writeResults(sink) })
	g.Go(func() error {
		defer close(r.results)
		r.router.produce(len(batch.targets))
		for _, t := range batch.targets {
			if t.status != "" {
				r.finish(t, t.status, t.reason, nil, "")
			}
		}
		r.resolveAll(gctx, batch)
		r.router.producerDone()
		select {
		case <-r.router.allDone:
		case <-gctx.Done():
		}
		r.workers.Wait()
		return nil
	})
	err = g.Wait()
	r.summary.Connections = int(r.connections.Load())
	r.summary.MXHosts = r.router.hostsUsed()
	r.summary.Duration = time.Since(start)
	if err == nil {
		err = ctx.Err()
	}
	return r.summary, err
}

type run struct {
	// workCtx is the run's context, kept here because the router starts
	// workers from inside its lock, where no caller's context is at hand.
	workCtx     context.Context
	cfg         Config
	res         *resolve.Resolver
	router      *router
	slots       chan struct{}
	results     chan verdict
	workers     sync.WaitGroup
	connections atomic.Int64
	summary     Summary
}

// batch is the whole input, grouped.
type batch struct {
	rows    int
	targets []*target            // in order of first appearance
	domains []string             // in order of first appearance
	byDom   map[string][]*target // domain -> its distinct addresses
}

func readAll(src *input.Reader) (batch, error) {
	b := batch{byDom: map[string][]*target{}}
	byKey := map[string]*target{}
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
		addr, perr := input.ParseAddress(rec.Email)
		if rec.Ragged || perr != nil {
			t := &target{raw: rec.Email, rows: []rowRef{ref}, status: output.StatusInvalid, reason: "syntax"}
			var se *input.SyntaxError
			switch {
			case rec.Ragged:
				t.reason = "ragged_row"
			case errors.As(perr, &se):
				t.reason = se.Reason
			}
			b.targets = append(b.targets, t)
			continue
		}
		key := addr.String()
		if t, ok := byKey[key]; ok {
			t.rows = append(t.rows, ref)
			continue
		}
		t := &target{raw: rec.Email, addr: addr, rows: []rowRef{ref}}
		byKey[key] = t
		b.targets = append(b.targets, t)
		if _, ok := b.byDom[addr.Domain]; !ok {
			b.domains = append(b.domains, addr.Domain)
		}
		b.byDom[addr.Domain] = append(b.byDom[addr.Domain], t)
	}
}

// resolveAll looks up every domain once and routes its addresses.
func (r *run) resolveAll(ctx context.Context, b batch) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.DNSWorkers)
	for _, dom := range b.domains {
		if gctx.Err() != nil {
			break
		}
		targets := b.byDom[dom]
		g.Go(func() error {
			mail, err := r.res.LookupMail(gctx, dom)
			if err != nil {
				if gctx.Err() != nil {
					return nil // cancelled: leave the rows undecided rather than misjudge them
				}
				status, reason := dnsVerdict(err)
				for _, t := range targets {
					r.finish(t, status, reason, nil, "")
				}
				return nil
			}
			for _, t := range targets {
				t.mail = mail
			}
			r.router.add(targets)
			return nil
		})
	}
	_ = g.Wait()
}

func dnsVerdict(err error) (status, reason string) {
	switch {
	case errors.Is(err, resolve.ErrNXDomain):
		return output.StatusInvalid, ReasonNXDomain
	case errors.Is(err, resolve.ErrNullMX):
		return output.StatusInvalid, ReasonNullMX
	case errors.Is(err, resolve.ErrNoMailHost):
		return output.StatusInvalid, ReasonNoMailHost
	default:
		return output.StatusUnknown, ReasonDNSError
	}
}

// finish records the verdict on t. Every target is finished exactly once;
// the router's bookkeeping relies on it.
func (r *run) finish(t *target, status, reason string, reply *probe.Reply, mxHost string) {
	r.results <- verdict{t: t, status: status, reason: reason, reply: reply, mxHost: mxHost, at: r.cfg.Now()}
	r.router.done()
}

// writeResults is the only goroutine that touches sink. After a write error
// it keeps draining so that producers never block, and reports the error.
func (r *run) writeResults(sink output.Writer) error {
	var werr error
	for v := range r.results {
		if werr != nil {
			continue
		}
		for _, ref := range v.t.rows {
			res := output.Result{
				Row:       ref.row,
				Email:     v.t.raw,
				Status:    v.status,
				Reason:    v.reason,
				MXHost:    v.mxHost,
				Attempts:  v.t.tries,
				CheckedAt: v.at,
			}
			if v.t.addr.Domain != "" {
				res.Email = v.t.addr.String()
			}
			if v.reply != nil {
				res.SMTPCode = v.reply.Code
				res.EnhancedCode = v.reply.Enhanced
				res.SMTPMessage = v.reply.Text()
			}
			if err := sink.Write(ref.fields, res); err != nil {
				werr = fmt.Errorf("writing results: %w", err)
				break
			}
			r.summary.ByStatus[res.Status]++
			r.summary.ByReason[res.Reason]++
			if r.cfg.OnResult != nil {
				r.cfg.OnResult(res)
			}
		}
	}
	if err := sink.Flush(); err != nil && werr == nil {
		werr = fmt.Errorf("writing results: %w", err)
	}
	return werr
}
