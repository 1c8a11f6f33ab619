package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/probe"
	"github.com/bulkverify/bulkverify/resolve"
	"github.com/bulkverify/bulkverify/verdict"
)

// probeFlags are the flags of "bulkverify probe" beyond the shared ones
// (which include --tls).
type probeFlags struct {
	transcript bool
	shared     *sharedFlags
}

func newProbeFlagSet(stderr io.Writer) (*flag.FlagSet, *probeFlags) {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pf := &probeFlags{}
	fs.BoolVar(&pf.transcript, "transcript", false, "print the DNS findings and the whole SMTP dialogue")
	pf.shared = addSharedFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify probe [flags] ADDRESS\n\n"+
			"Asks the mail exchanger of ADDRESS about it once (EHLO, MAIL FROM, RCPT TO, QUIT;\n"+
			"never DATA) and prints the verdict. Exit 0: a verdict was reached, from the\n"+
			"server or from DNS (e.g. invalid/nxdomain); 1: no answer could be had (DNS\n"+
			"failure, no usable SMTP session, session lost); 2: bad address or flags.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs, pf
}

// probeResult is the answer for the probed address, printed as the last line.
type probeResult struct {
	address, status, reason string
	reply                   *probe.Reply
	mxHost                  string
	tls                     bool
	// final is false when no question could be put to a mail exchanger for a
	// reason that may pass (DNS or connection trouble): exit code 1.
	final bool
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, pf := newProbeFlagSet(stderr)
	address, code, ok := oneArgument(fs, args, "address", stderr)
	if !ok {
		return code
	}
	v, err := probeAddress(ctx, pf, fs, address, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify probe: %v\n", err)
		return exitCode(ctx, err)
	}
	printVerdict(stdout, v)
	switch {
	case ctx.Err() != nil:
		return exitInterrupted
	case !v.final:
		return exitFatal
	}
	return exitOK
}

// probeAddress does what a mail administrator does by hand: look up the MX,
// connect to the first exchanger that answers, and ask about the address.
// An error means no verdict at all (bad usage, no resolver).
func probeAddress(ctx context.Context, pf *probeFlags, fs *flag.FlagSet, raw string,
	stdout, stderr io.Writer) (probeResult, error) {
	cfg, err := pf.shared.config(fs)
	if err != nil {
		return probeResult{}, err
	}
	addr, err := input.ParseAddress(raw)
	if err != nil {
		var se *input.SyntaxError
		if errors.As(err, &se) {
			err = fmt.Errorf("%q is not an address we can probe (%s): %s", raw, se.Reason, se.Detail)
		}
		return probeResult{}, usageError{err}
	}
	table, err := replyTable(cfg)
	if err != nil {
		return probeResult{}, err
	}
	stopSandbox, err := pf.shared.prepare(ctx, &cfg, stderr)
	if err != nil {
		return probeResult{}, err
	}
	defer stopSandbox()
	res, err := newResolver(cfg)
	if err != nil {
		return probeResult{}, err
	}

	// Server text reaches a terminal: escape what could drive it.
	out := &escapingWriter{w: stdout}
	note := func(format string, args ...any) {
		if pf.transcript {
			fmt.Fprintf(out, "* "+format+"\n", args...)
		}
	}
	v := probeResult{address: addr.String()}

	mail, err := res.LookupMail(ctx, addr.Domain)
	if err != nil {
		note("MX lookup for %s: %v", addr.Domain, err)
		v.status, v.reason, v.final = dnsVerdict(err)
		return v, nil
	}
	if mail.Implicit {
		note("%s has no MX; its own address records are used (implicit MX, RFC 5321 §5.1)", mail.Domain)
	} else {
		note("MX of %s:", mail.Domain)
		for _, mx := range mail.Hosts {
			note("  %d %s", mx.Preference, mx.Host)
		}
	}

	pc := probeConfig(cfg)
	if pf.transcript {
		pc.Transcript = out
	}
	var (
		last       error
		unresolved = 0
	)
	for _, mx := range mail.Hosts {
		v.mxHost = mx.Host
		ips, err := res.LookupHost(ctx, mx.Host)
		if err != nil {
			note("address lookup for %s: %v", mx.Host, err)
			last = err
			if errors.Is(err, resolve.ErrNoAddress) {
				unresolved++
			}
			continue
		}
		pc.TLSServerName = mx.Host
		for _, ip := range ips {
			hostport := net.JoinHostPort(ip.String(), strconv.Itoa(cfg.SMTP.Port))
			note("connecting to %s [%s]", mx.Host, hostport)
			sess, err := probe.Dial(ctx, hostport, pc)
			if err != nil {
				note("%s: %v", mx.Host, err)
				last = err
				if ctx.Err() != nil {
					v.status, v.reason = output.StatusUnknown, reasonCanceled
					return v, nil
				}
				continue
			}
			return ask(ctx, sess, addr, v, table), nil
		}
	}
	if unresolved == len(mail.Hosts) {
		// Every exchanger named in DNS is missing: mail to the domain bounces.
		v.status, v.reason, v.final = output.StatusUndeliverable, pipeline.ReasonMXUnresolvable, true
		return v, nil
	}
	v.status, v.reason, v.reply = sessionVerdict(last, table)
	return v, nil
}

// ask runs MAIL FROM, RCPT TO and QUIT on an established session.
func ask(ctx context.Context, sess *probe.Session, addr input.Address, v probeResult, table *verdict.Table) probeResult {
	defer func() {
		if sess.Closed() {
			return
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = sess.Quit(qctx)
	}()
	_, v.tls = sess.TLS()
	smtputf8 := sess.Supports("SMTPUTF8")
	if addr.NeedsSMTPUTF8 && !smtputf8 {
		v.status, v.reason, v.final = output.StatusUnknown, pipeline.ReasonSMTPUTF8, true
		return v
	}
	r, err := sess.Mail(ctx, addr.NeedsSMTPUTF8)
	if err != nil {
		v.status, v.reason, _ = sessionVerdict(err, table)
		return v
	}
	if !r.Positive() {
		v.reply, v.final = &r, true
		d := table.Classify(verdict.Input{Reply: r, Stage: verdict.StageMail})
		v.status, v.reason = d.Status, d.Reason
		return v
	}
	r, err = sess.Rcpt(ctx, addr.String())
	if err != nil {
		v.status, v.reason, _ = sessionVerdict(err, table)
		if v.reason == pipeline.ReasonConnectionFailed {
			v.reason = pipeline.ReasonConnectionLost
		}
		return v
	}
	v.reply, v.final = &r, true
	d := table.Classify(verdict.Input{Reply: r, Stage: verdict.StageRcpt})
	v.status, v.reason = d.Status, d.Reason
	return v
}

// dnsVerdict maps a failed MX lookup. Permanent answers are verdicts about
// the address; a DNS failure is not.
func dnsVerdict(err error) (status, reason string, final bool) {
	switch {
	case errors.Is(err, resolve.ErrNXDomain):
		return output.StatusInvalid, pipeline.ReasonNXDomain, true
	case errors.Is(err, resolve.ErrNullMX):
		return output.StatusInvalid, pipeline.ReasonNullMX, true
	case errors.Is(err, resolve.ErrNoMailHost):
		return output.StatusInvalid, pipeline.ReasonNoMailHost, true
	case errors.Is(err, context.Canceled):
		return output.StatusUnknown, reasonCanceled, false
	}
	return output.StatusUnknown, pipeline.ReasonDNSError, false
}

// Reasons of this command only: the pipeline never reports them.
const (
	reasonTLS      = "tls_unavailable" // --tls require could not be met
	reasonCanceled = "canceled"        // interrupted before a verdict
)

// sessionVerdict says why no usable SMTP session was had; a refusal by the
// server is read by table at the stage it came at.
func sessionVerdict(err error, table *verdict.Table) (status, reason string, reply *probe.Reply) {
	var (
		te *probe.TLSError
		re *probe.ReplyError
		pe *probe.ProtocolError
		ne net.Error
	)
	switch {
	case err == nil:
		return output.StatusUnknown, pipeline.ReasonConnectionFailed, nil
	case errors.As(err, &te):
		return output.StatusUnknown, reasonTLS, nil
	case errors.As(err, &re):
		r := re.Reply
		stage, ok := verdict.StageOfCommand(re.Command)
		if !ok {
			stage = verdict.StageEHLO
		}
		d := table.Classify(verdict.Input{Reply: r, Stage: stage})
		return d.Status, d.Reason, &r
	case errors.As(err, &pe):
		return output.StatusUnknown, pipeline.ReasonProtocolError, nil
	case errors.Is(err, context.Canceled):
		return output.StatusUnknown, reasonCanceled, nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return output.StatusUnknown, pipeline.ReasonTimeout, nil
	}
	return output.StatusUnknown, pipeline.ReasonConnectionFailed, nil
}

func printVerdict(w io.Writer, v probeResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "address=%s status=%s reason=%s", v.address, v.status, v.reason)
	code, enhanced, message := "", "", ""
	if v.reply != nil {
		code, enhanced, message = strconv.Itoa(v.reply.Code), v.reply.Enhanced, v.reply.Text()
	}
	tls := "no"
	if v.tls {
		tls = "yes"
	}
	// The message is the server's: quoted, so it is one line and cannot
	// carry terminal control sequences.
	fmt.Fprintf(&b, " code=%s enhanced=%s message=%s mx=%s tls=%s\n",
		code, enhanced, strconv.Quote(message), v.mxHost, tls)
	_, _ = io.WriteString(&escapingWriter{w: w}, b.String())
}

// escapingWriter writes control characters (but line feeds) and invalid
// UTF-8 as Go escapes, so a hostile server's text cannot drive the terminal
// the transcript is shown on. It expects whole lines per Write, which is how
// the probe package writes its transcript.
type escapingWriter struct{ w io.Writer }

func (e *escapingWriter) Write(p []byte) (int, error) {
	total := len(p)
	var b strings.Builder
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, p[0])
		case r == '\n':
			b.WriteByte('\n')
		case r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.Write(p[:n])
		}
		p = p[n:]
	}
	if _, err := io.WriteString(e.w, b.String()); err != nil {
		return 0, err
	}
	return total, nil
}
