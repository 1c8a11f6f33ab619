package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/configs"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/report"
	"github.com/bulkverify/bulkverify/signals"
	"github.com/bulkverify/bulkverify/verdict"
)

// reportRow is what the report counts of one verify row.
func reportRow(r output.Result) report.Row {
	return report.Row{
		Status: r.Status, Reason: r.Reason, Domain: domainOf(r.Email), Provider: r.Provider,
		Disposable: r.Disposable, Free: r.Free, Role: r.Role,
		TypoKnown: r.Reason == verdict.ReasonTypoDomain, TypoSuggested: r.TypoSuggestion != "",
	}
}

// findReportRow is what the report counts of one find row (one person).
func findReportRow(r output.FindResult) report.Row {
	return report.Row{Status: r.Status, Reason: r.Reason, Domain: domainOf(r.Email)}
}

func domainOf(address string) string {
	if at := strings.LastIndexByte(address, '@'); at > 0 && at < len(address)-1 {
		return strings.ToLower(address[at+1:])
	}
	return ""
}

// maxReportHosts bounds the MX hosts the report (and the summary's copy of
// its data) lists: those with the most RCPT and trouble come first.
const maxReportHosts = 50

// reportData assembles what the report shows: the rows counted as they were
// written, the per-host figures of the run, and its settings.
func reportData(command, input string, started time.Time, s pipeline.Summary, tally *report.Tally,
	cfg configs.Config, set *signals.Set) report.Data {
	d := report.Data{
		Command: command, Input: input, Started: started, Duration: s.Duration,
		Rows: s.Rows, Addresses: s.Addresses, Domains: s.Domains, MXHosts: s.MXHosts, Connections: s.Connections,
	}
	tally.Fill(&d, 20)
	for _, h := range topHosts(s.Hosts, maxReportHosts) {
		d.Hosts = append(d.Hosts, report.Host{
			Host: h.Host, Provider: h.Provider, Addresses: h.Addresses, Connections: h.Connections, RCPT: h.RCPT,
			Replies4xx: h.Replies4xx, Replies5xx: h.Replies5xx, Greylisted: h.Greylisted, PolicyBlocks: h.PolicyBlocks,
			Undeliverable: h.Undeliverable, Unknown: h.Unknown, LatencyP50: h.LatencyP50, LatencyP95: h.LatencyP95,
		})
	}
	for _, r := range s.Refusals {
		d.Warnings = append(d.Warnings, fmt.Sprintf("%s refused egress %s (%s)", r.Operator, r.Egress, r.Reason))
	}
	add := func(k, v string) { d.Settings = append(d.Settings, report.Setting{Key: k, Value: v}) }
	add("helo_name", cfg.SMTP.HeloName)
	add("mail_from", cfg.SMTP.MailFrom)
	add("max_connections", fmt.Sprint(cfg.Limits.MaxConnections))
	add("max_connections_per_mx", fmt.Sprint(cfg.Limits.MaxConnectionsPerMX))
	add("rcpt_per_transaction", fmt.Sprint(cfg.Limits.RcptPerTransaction))
	add("rcpt_per_second_per_mx", fmt.Sprint(cfg.Limits.RcptPerSecondPerMX))
	add("max_wait", cfg.Retry.MaxWait.String())
	add("tls", cfg.SMTP.TLS)
	add("egresses", fmt.Sprint(len(cfg.Egress.SourceIPs)+len(cfg.Egress.Proxies)))
	if set != nil {
		for _, l := range set.Lists() {
			v := fmt.Sprintf("%d entries", l.Entries)
			if !l.Date.IsZero() {
				v += ", built-in of " + l.Date.Format(time.DateOnly)
			}
			if l.File != "" {
				v += ", " + string(l.Mode) + " " + l.File
			}
			add(string(l.Kind)+"_list", v)
		}
	}
	return d
}

// topHosts keeps the n hosts with the most RCPT sent and trouble.
func topHosts(hosts []pipeline.HostSummary, n int) []pipeline.HostSummary {
	out := slices.Clone(hosts)
	weight := func(h pipeline.HostSummary) int { return h.RCPT + h.Undeliverable + h.Unknown }
	slices.SortStableFunc(out, func(a, b pipeline.HostSummary) int {
		if c := cmp.Compare(weight(b), weight(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.Host, b.Host)
	})
	return out[:min(n, len(out))]
}
