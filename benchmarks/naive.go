package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
)

// naive verifies every row on its own, the way single-address verifiers
// do: a fresh MX lookup (a new resolver, so nothing is cached), a fresh
// connection, MAIL, a catch-all RCPT for a made-up local part and the real
// RCPT, each waiting for its reply (no pipelining), then QUIT. workers
// addresses are verified side by side (the same total concurrency as
// bulkverify's MaxConnections); there is no per-host connection cap, as
// those tools have none.
type naive struct {
	dnsAddr string
	port    int
	workers int
	probe   probe.Config
}

// run reads every row of src and writes one result per row to sink.
func (n naive) run(ctx context.Context, src *input.Reader, sink output.Writer) error {
	g, gctx := errgroup.WithContext(ctx)
	rows := make(chan input.Record, n.workers)
	g.Go(func() error {
		defer close(rows)
		for {
			rec, err := src.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading input: %w", err)
			}
			select {
			case rows <- rec:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	var mu sync.Mutex // the sink is not safe for concurrent use
	for range n.workers {
		g.Go(func() error {
			for rec := range rows {
				res := n.verify(gctx, rec.Email)
				res.Row = rec.Row
				mu.Lock()
				err := sink.Write(rec.Fields, res)
				mu.Unlock()
				if err != nil {
					return fmt.Errorf("writing results: %w", err)
				}
			}
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return sink.Flush()
}

// verify asks about one address from scratch.
func (n naive) verify(ctx context.Context, raw string) output.Result {
	addr, err := input.ParseAddress(raw)
	if err != nil {
		return output.Result{Email: raw, Status: output.StatusInvalid, Reason: input.ReasonSyntax, CheckedAt: time.Now()}
	}
	res := output.Result{Email: addr.String(), CheckedAt: time.Now()}
	// A resolver per address: the one-address tools keep no cache.
	r, err := resolve.New(resolve.Config{Servers: []string{n.dnsAddr}})
	if err != nil {
		res.Status, res.Reason = output.StatusUnknown, pipeline.ReasonDNSError
		return res
	}
	mail, err := r.LookupMail(ctx, addr.Domain)
	if err != nil {
		res.Status, res.Reason = dnsVerdict(err)
		return res
	}
	sess, host := n.dial(ctx, r, mail)
	if sess == nil {
		res.Status, res.Reason, res.MXHost = output.StatusUnknown, pipeline.ReasonConnectionFailed, host
		return res
	}
	defer sess.Quit(ctx)
	res.MXHost = host
	res.Attempts = 1
	reply, err := sess.Mail(ctx, false)
	switch {
	case err != nil:
		res.Status, res.Reason = output.StatusUnknown, pipeline.ReasonConnectionLost
		return res
	case !reply.Positive():
		res.Status, res.Reason = output.StatusUnknown, pipeline.ReasonSenderRejected
		return res
	}
	catch, err := sess.Rcpt(ctx, madeUpLocal()+"@"+addr.Domain)
	if err != nil {
		res.Status, res.Reason = output.StatusUnknown, pipeline.ReasonConnectionLost
		return res
	}
	real, err := sess.Rcpt(ctx, addr.String())
	if err != nil {
		res.Status, res.Reason = output.StatusUnknown, pipeline.ReasonConnectionLost
		return res
	}
	res.Status, res.Reason = pipeline.Classify(real)
	res.SMTPCode, res.EnhancedCode, res.SMTPMessage = real.Code, real.Enhanced, real.Text()
	accepts := catch.Code == 250 || catch.Code == 251
	res.CatchAll = &accepts
	if accepts && res.Status == output.StatusDeliverable {
		res.Status, res.Reason = output.StatusRisky, pipeline.ReasonAcceptAll
	}
	return res
}

// dial connects to the first MX host that answers, in preference order.
func (n naive) dial(ctx context.Context, r *resolve.Resolver, mail resolve.Mail) (*probe.Session, string) {
	last := ""
	for _, mx := range mail.Hosts {
		last = mx.Host
		ips, err := r.LookupHost(ctx, mx.Host)
		if err != nil {
			continue
		}
		cfg := n.probe
		cfg.TLSServerName = mx.Host
		for _, ip := range ips {
			sess, err := probe.Dial(ctx, net.JoinHostPort(ip.String(), strconv.Itoa(n.port)), cfg)
			if err == nil {
				return sess, mx.Host
			}
		}
	}
	return nil, last
}

// dnsVerdict is the status and reason bulkverify gives a failed MX lookup.
func dnsVerdict(err error) (status, reason string) {
	switch {
	case errors.Is(err, resolve.ErrNXDomain):
		return output.StatusInvalid, pipeline.ReasonNXDomain
	case errors.Is(err, resolve.ErrNullMX):
		return output.StatusInvalid, pipeline.ReasonNullMX
	case errors.Is(err, resolve.ErrNoMailHost):
		return output.StatusInvalid, pipeline.ReasonNoMailHost
	}
	return output.StatusUnknown, pipeline.ReasonDNSError
}

// madeUpLocal is a local part no real mailbox has.
func madeUpLocal() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return "bv-" + string(b)
}
