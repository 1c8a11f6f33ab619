package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
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
	address string
	v       pipeline.Verdict
}

// final reports whether the verdict rests on an answer, from a mail
// exchanger or from DNS; false when no question could be put for a reason
// that may pass (DNS or connection trouble): exit code 1.
func (v probeResult) final() bool {
	switch {
	case v.v.Reply != nil, v.v.Status == output.StatusInvalid, v.v.Status == output.StatusUndeliverable:
		return true
	case v.v.Reason == pipeline.ReasonSMTPUTF8:
		return true
	}
	return false
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
	case !v.final():
		return exitFatal
	}
	return exitOK
}

// probeAddress asks about one address with the engine verify uses (its MX
// failover, its catch-all check, its reading of replies), so that both
// commands give an address the same verdict; only once, with no delayed
// retries, as a mail administrator would by hand. An error means no verdict
// at all (bad usage, no resolver).
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
	pcfg := pipelineConfig(cfg)
	pcfg.Replies = table
	pcfg.MaxAttempts, pcfg.MaxWait, pcfg.RetryDelay = 1, 0, 0
	pcfg.MaxConnectionsPerHost = 1
	if pf.transcript {
		pcfg.Probe.Transcript = out
		noteDNS(ctx, res, addr.Domain, out)
	}
	v, ok := pipeline.Probe(ctx, pcfg, res, addr)
	if !ok {
		v = pipeline.Verdict{Status: output.StatusUnknown, Reason: reasonCanceled}
	}
	return probeResult{address: addr.String(), v: v}, nil
}

// noteDNS writes what DNS says about the domain's mail exchangers. The
// engine's own lookup then comes from the resolver's cache.
func noteDNS(ctx context.Context, res *resolve.Resolver, domain string, out io.Writer) {
	mail, err := res.LookupMail(ctx, domain)
	switch {
	case err != nil:
		fmt.Fprintf(out, "* MX lookup for %s: %v\n", domain, err)
	case mail.Implicit:
		fmt.Fprintf(out, "* %s has no MX; its own address records are used (implicit MX, RFC 5321 §5.1)\n", mail.Domain)
	default:
		fmt.Fprintf(out, "* MX of %s:\n", mail.Domain)
		for _, mx := range mail.Hosts {
			fmt.Fprintf(out, "*   %d %s\n", mx.Preference, mx.Host)
		}
	}
}

// reasonCanceled is this command's only reason of its own: interrupted
// before a verdict.
const reasonCanceled = "canceled"

func printVerdict(w io.Writer, v probeResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "address=%s status=%s reason=%s", v.address, v.v.Status, v.v.Reason)
	code, enhanced, message := "", "", ""
	if r := v.v.Reply; r != nil {
		code, enhanced, message = strconv.Itoa(r.Code), r.Enhanced, r.Text()
	}
	// The message is the server's: quoted, so it is one line and cannot
	// carry terminal control sequences.
	fmt.Fprintf(&b, " code=%s enhanced=%s message=%s catch_all=%s mx=%s tls=%s\n",
		code, enhanced, strconv.Quote(message), yesNo(v.v.CatchAll, ""), v.v.MXHost, yesNo(v.v.TLS, "no"))
	_, _ = io.WriteString(&escapingWriter{w: w}, b.String())
}

// yesNo renders a tri-state: unknown is unset.
func yesNo(b *bool, unset string) string {
	switch {
	case b == nil:
		return unset
	case *b:
		return "yes"
	}
	return "no"
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
