package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulkverify/bulkverify/egress"
)

// runDoctor checks the setup a run would use and prints one line per
// finding, pass / warn / fail, with what to do about each problem. Exit 0
// when nothing failed, 1 otherwise, 2 on bad flags.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSharedFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify doctor [flags]\n\n"+
			"Checks what a run would use: the resolver, port 25 from each egress (banner, EHLO, QUIT;\n"+
			"no RCPT), each egress's public address, its PTR and forward-confirmed reverse DNS, the\n"+
			"HELO name, DNS blocklist listings, MAIL FROM and its domain's MX and SPF record. Prints\n"+
			"pass, warn or fail per check with a fix. Exit 0: no fail; 1: something failed; 2: bad flags.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := noArguments(fs, args, "doctor", stderr); !ok {
		return code
	}
	checks, err := doctor(ctx, sf, fs, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify doctor: %v\n", err)
		return exitCode(ctx, err)
	}
	failed := printChecks(stdout, checks)
	switch {
	case ctx.Err() != nil:
		return exitInterrupted
	case failed:
		return exitFatal
	}
	return exitOK
}

func doctor(ctx context.Context, sf *sharedFlags, fs *flag.FlagSet, stderr io.Writer) ([]egress.Check, error) {
	cfg, err := sf.config(fs)
	if err != nil {
		return nil, err
	}
	stop, err := sf.prepare(ctx, &cfg, stderr)
	if err != nil {
		return nil, err
	}
	defer stop()
	res, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := newPool(cfg)
	if err != nil {
		return nil, err
	}
	e := cfg.Egress
	return egress.Doctor(ctx, pool, res, egress.DoctorConfig{
		HeloName:        cfg.SMTP.HeloName,
		MailFrom:        cfg.SMTP.MailFrom,
		Port:            cfg.SMTP.Port,
		Probe:           probeConfig(cfg),
		DNSCanaries:     e.DNSCanaryDomains,
		Port25Canaries:  e.CanaryDomains,
		Port25Timeout:   e.PreflightTimeout,
		PublicAddresses: e.PublicAddresses,
		AddressNames:    e.PublicAddressNames,
		DNSBLZones:      e.DNSBLZones,
		SpamhausDQSKey:  e.SpamhausDQSKey,
		LookupEnv:       os.LookupEnv,
	}), nil
}

// printChecks writes one line per check, the fix indented below a warn or
// fail, and a count; it reports whether any check failed. Server text in
// the details is escaped: it may come from a hostile banner.
func printChecks(w io.Writer, checks []egress.Check) (failed bool) {
	out := &escapingWriter{w: w}
	counts := map[egress.Status]int{}
	for _, c := range checks {
		counts[c.Status]++
		name := c.Name
		if c.Egress != "" {
			name += " [" + c.Egress + "]"
		}
		fmt.Fprintf(out, "%-4s  %s: %s\n", strings.ToUpper(string(c.Status)), name, oneLine(c.Detail))
		if c.Status != egress.Pass && c.Fix != "" {
			fmt.Fprintf(out, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(out, "doctor: %d pass, %d warn, %d fail\n", counts[egress.Pass], counts[egress.Warn], counts[egress.Fail])
	return counts[egress.Fail] > 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
