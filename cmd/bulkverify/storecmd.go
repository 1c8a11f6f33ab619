package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/store"
)

// addStoreRunFlags adds the store flags of the commands that run a file
// (verify, find); sharedFlags.config copies the ones the user set.
func addStoreRunFlags(fs *flag.FlagSet, sf *sharedFlags) {
	over := &sf.over.Store
	fs.StringVar(&over.Path, "store", over.Path, "verdict store `FILE` (default: bulkverify/store.db in the user cache directory)")
	fs.BoolVar(&sf.noStore, "no-store", false, "neither reuse nor remember verdicts (no store file)")
	fs.StringVar(&over.Namespace, "store-namespace", over.Namespace, "store namespace `NAME` of this run's verdicts (e.g. one per customer or list)")
	fs.DurationVar(&over.MaxAge, "max-age", over.MaxAge, "reuse no stored verdict older than this (0 = the lifetimes of the config's store section)")
	fs.BoolVar(&over.Refresh, "refresh", over.Refresh, "probe every address even if a fresh verdict is stored (the store is still updated)")
}

// storePath is where the store of cfg lives.
func storePath(cfg configs.Store) (string, error) {
	if cfg.Path != "" {
		return cfg.Path, nil
	}
	return store.DefaultPath()
}

// openRunStore opens the store a verify or find run uses, or returns nil
// when the store is off (--no-store). Another run holding it is an error
// naming the file (*store.InUseError).
func openRunStore(cfg configs.Store) (*store.Store, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	path, err := storePath(cfg)
	if err != nil {
		return nil, err
	}
	return store.Open(path, cfg.Options())
}

// runNamespaces are the namespaces a run reads: its own first, then the
// shared ones.
func runNamespaces(cfg configs.Store) []string {
	return append([]string{cfg.Namespace}, cfg.SharedNamespaces...)
}

const storeUsage = `Usage:
  bulkverify store stats [flags]                       what the store holds, and where it is
  bulkverify store export [flags]                      write its verdicts as CSV or JSON Lines
  bulkverify store prune [--older-than DURATION]       delete entries older than that, or past retention
  bulkverify store forget [flags] ADDRESS              delete everything stored about an address
  bulkverify store forget [flags] --domain DOMAIN      delete everything stored about a domain

The store holds e-mail addresses (personal data). forget deletes an address
or a domain from every namespace unless --namespace names some.
`

// runStore is "bulkverify store ...": managing the verdict store.
func runStore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, storeUsage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("store "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("BULKVERIFY_CONFIG"), "config `FILE` (default $BULKVERIFY_CONFIG): its store section")
	path := fs.String("store", "", "store `FILE` (default: the config's store.path, else bulkverify/store.db in the user cache directory)")
	var namespaces []string
	nsFlag := func(usage string) {
		fs.Func("namespace", usage, func(v string) error {
			for _, ns := range strings.Split(v, ",") {
				if err := store.ValidateNamespace(ns); err != nil {
					return err
				}
				namespaces = append(namespaces, ns)
			}
			return nil
		})
	}
	var (
		format, out, domain string
		olderThan           time.Duration
		wantArgs            int
		run                 func(*store.Store, []string) error
		readOnly            = true
	)
	switch cmd {
	case "stats":
		run = func(s *store.Store, _ []string) error { return storeStats(ctx, s, stdout) }
	case "export":
		nsFlag("export only this `NAMESPACE` (repeatable, or comma-separated; default: all)")
		fs.StringVar(&format, "format", "csv", "csv or jsonl")
		fs.StringVar(&out, "o", "-", "output `FILE` (\"-\" = stdout)")
		run = func(s *store.Store, _ []string) error { return storeExport(ctx, s, namespaces, format, out, stdout) }
	case "prune":
		readOnly = false
		fs.DurationVar(&olderThan, "older-than", 0, "delete entries checked longer ago than this (0 = only those past the retention)")
		run = func(s *store.Store, _ []string) error {
			rm, err := s.Prune(ctx, olderThan)
			if err == nil {
				fmt.Fprintf(stdout, "pruned %d verdicts, %d domain answers, %d MX hosts from %s\n", rm.Verdicts, rm.Domains, rm.MXHosts, s.Path())
			}
			return err
		}
	case "forget":
		readOnly = false
		nsFlag("forget only in this `NAMESPACE` (repeatable, or comma-separated; default: all)")
		fs.StringVar(&domain, "domain", "", "forget a whole `DOMAIN` instead of one address")
		run = func(s *store.Store, args []string) error {
			return storeForget(ctx, s, namespaces, domain, args, stdout)
		}
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, storeUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bulkverify store: unknown command %q\n\n%s", cmd, storeUsage)
		return exitUsage
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nFlags of store %s:\n", storeUsage, cmd)
		fs.PrintDefaults()
	}
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if cmd == "forget" && domain == "" {
		wantArgs = 1
	}
	if len(positional) != wantArgs {
		what := "no arguments"
		if wantArgs == 1 {
			what = "exactly one address (or --domain DOMAIN)"
		}
		fmt.Fprintf(stderr, "bulkverify store %s: want %s, got %d\n", cmd, what, len(positional))
		return exitUsage
	}
	if cmd == "export" && format != "csv" && format != "jsonl" {
		fmt.Fprintf(stderr, "bulkverify store export: unknown --format %q (want csv or jsonl)\n", format)
		return exitUsage
	}

	err = func() error {
		cfg := configs.Default()
		if *configPath != "" {
			if cfg, err = configs.Load(*configPath); err != nil {
				return usageError{err}
			}
		}
		if *path != "" {
			cfg.Store.Path = *path
		}
		p, err := storePath(cfg.Store)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); errors.Is(err, iofs.ErrNotExist) {
			// Nothing remembered yet; do not create a file to say so.
			fmt.Fprintf(stderr, "no store at %s: nothing is remembered yet\n", p)
			if cmd == "export" {
				return storeExport(ctx, nil, nil, format, out, stdout)
			}
			return nil
		}
		opts := cfg.Store.Options()
		opts.ReadOnly = readOnly
		s, err := store.Open(p, opts)
		if err != nil {
			return err
		}
		err = run(s, positional)
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
		}
		return err
	}()
	if errors.Is(err, store.ErrBadKey) {
		err = usageError{err}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify store %s: %v\n", cmd, err)
	}
	return exitCode(ctx, err)
}

func storeStats(ctx context.Context, s *store.Store, stdout io.Writer) error {
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "store\t%s\n", st.Path)
	fmt.Fprintf(w, "size\t%.1f MiB, schema %d, %d segments\n", float64(st.FileBytes)/(1<<20), st.Schema, st.Segments)
	fmt.Fprintf(w, "retention\t%s (entries older are deleted; last pruned %s)\n", days(st.Retention), st.LastPrune.Format(time.RFC3339))
	fmt.Fprintf(w, "domains\t%d with a catch-all answer\n", st.Domains)
	fmt.Fprintf(w, "mx hosts\t%d with learnt behaviour\n", st.MXHosts)
	if len(st.Namespaces) == 0 {
		fmt.Fprintf(w, "verdicts\tnone\n")
	}
	for _, ns := range st.Namespaces {
		fmt.Fprintf(w, "namespace %s\t%d verdicts (%s), checked %s to %s\n", ns.Name, ns.Verdicts, countsLine(ns.ByStatus),
			ns.Oldest.Format(time.RFC3339), ns.Newest.Format(time.RFC3339))
	}
	return w.Flush()
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.String()
}

// exportRow is one verdict as store export writes it.
type exportRow struct {
	Namespace    string `json:"namespace"`
	Email        string `json:"email"`
	Domain       string `json:"domain"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	SMTPCode     int    `json:"smtp_code,omitempty"`
	EnhancedCode string `json:"enhanced_code,omitempty"`
	SMTPMessage  string `json:"smtp_message,omitempty"`
	MXHost       string `json:"mx_host,omitempty"`
	CatchAll     *bool  `json:"catch_all,omitempty"`
	TLS          *bool  `json:"tls,omitempty"`
	Egress       string `json:"egress,omitempty"`
	Attempts     int    `json:"attempts"`
	CheckedAt    string `json:"checked_at"`
}

var exportColumns = []string{"namespace", "email", "domain", "status", "reason", "smtp_code", "enhanced_code",
	"smtp_message", "mx_host", "catch_all", "tls", "egress", "attempts", "checked_at"}

// Bounds as in output: server text is cut and made safe for a cell.
const (
	exportMessageRunes = 200
	exportShortRunes   = 255
)

func newExportRow(v store.Verdict) exportRow {
	return exportRow{
		Namespace: v.Namespace, Email: output.Sanitize(v.Address, exportShortRunes), Domain: output.Sanitize(v.Domain, exportShortRunes),
		Status: v.Status, Reason: v.Reason, SMTPCode: v.SMTPCode,
		EnhancedCode: output.Sanitize(v.EnhancedCode, exportShortRunes), SMTPMessage: output.Sanitize(v.Message, exportMessageRunes),
		MXHost: output.Sanitize(v.MXHost, exportShortRunes), CatchAll: v.CatchAll.Bool(), TLS: v.TLS.Bool(),
		Egress: output.Sanitize(v.Egress, exportShortRunes), Attempts: v.Attempts, CheckedAt: v.CheckedAt.UTC().Format(time.RFC3339),
	}
}

func (r exportRow) record() []string {
	code := ""
	if r.SMTPCode != 0 {
		code = strconv.Itoa(r.SMTPCode)
	}
	tri := func(b *bool) string {
		if b == nil {
			return ""
		}
		return strconv.FormatBool(*b)
	}
	return []string{r.Namespace, r.Email, r.Domain, r.Status, r.Reason, code, r.EnhancedCode, r.SMTPMessage,
		r.MXHost, tri(r.CatchAll), tri(r.TLS), r.Egress, strconv.Itoa(r.Attempts), r.CheckedAt}
}

// storeExport writes the verdicts of s (nil: none) to out.
func storeExport(ctx context.Context, s *store.Store, namespaces []string, format, out string, stdout io.Writer) (err error) {
	w := stdout
	if out != "-" {
		// The export holds the same personal data as the store.
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return usageError{err}
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		w = f
	}
	var write func(exportRow) error
	var flush func() error
	if format == "jsonl" {
		enc := json.NewEncoder(w)
		write = func(r exportRow) error { return enc.Encode(r) }
		flush = func() error { return nil }
	} else {
		cw := csv.NewWriter(w)
		if err := cw.Write(exportColumns); err != nil {
			return err
		}
		write = func(r exportRow) error { return cw.Write(r.record()) }
		flush = func() error { cw.Flush(); return cw.Error() }
	}
	if s != nil {
		if err := s.Each(ctx, namespaces, func(v store.Verdict) error { return write(newExportRow(v)) }); err != nil {
			return err
		}
	}
	return flush()
}

func storeForget(ctx context.Context, s *store.Store, namespaces []string, domain string, args []string, stdout io.Writer) error {
	where := "all namespaces"
	if namespaces != nil {
		where = "namespaces " + strings.Join(namespaces, ", ")
	}
	if domain != "" {
		if a, err := input.ParseAddress("x@" + domain); err == nil {
			domain = a.Domain
		}
		rm, err := s.ForgetDomain(ctx, namespaces, domain)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "forgot %d verdicts and %d catch-all answers of domain %s in %s\n", rm.Verdicts, rm.Domains, domain, where)
		return nil
	}
	// The store holds addresses as the pipeline normalised them (IDNA,
	// lower-case domain); an address typed otherwise is normalised alike.
	address := args[0]
	if a, err := input.ParseAddress(address); err == nil {
		address = a.String()
	}
	n, err := s.ForgetAddress(ctx, namespaces, address)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "forgot %d verdicts of %s in %s\n", n, address, where)
	return nil
}
