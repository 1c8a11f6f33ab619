package report

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// How much of Data the report shows: charts stay legible with this many
// bars, and the host table stays printable.
const (
	ChartBars = 15 // bars per chart
	TableRows = 50 // rows of the MX host table
)

// labelRunes clips chart labels so that a label and its value fit one line
// of a phone screen; the full text is in the bar's tooltip.
const labelRunes = 38

// cellRunes clips table cells holding names (hosts, settings): a DNS name
// is at most 253 octets, so more is garbage.
const cellRunes = 255

//go:embed report.html.tmpl
var pageTemplate string

var page = template.Must(template.New("report").Parse(pageTemplate))

// Render writes the report of d to w as one self-contained HTML file.
func Render(w io.Writer, d Data) error {
	if err := page.Execute(w, newView(d)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// statusRank is the order statuses are shown in, best first; statuses the
// report does not know come last (and then by name).
func statusRank(status string) int {
	switch status {
	case "deliverable":
		return 0
	case "risky":
		return 1
	case "undeliverable":
		return 2
	case "unknown":
		return 3
	case "invalid":
		return 4
	}
	return 5
}

// statusClass maps a status to its colour class; statuses the stylesheet
// does not know share one colour.
func statusClass(status string) string {
	if statusRank(status) < 5 {
		return "s-" + status
	}
	return "s-other"
}

// view is Data laid out for the template: every number formatted, every
// chart measured, every value tagged with the JSON pointer (RFC 6901) of
// the Data field it shows, so a test can check the page against the data.
type view struct {
	Title, Command, Input, Started, Duration string
	DurationNS                               int64
	Tiles                                    []tile
	Warnings                                 []string
	StatusTotal                              string
	StatusSlices                             []slice
	Reasons, Signals, Providers              chart
	Domains, HostsChart                      chart
	Hosts                                    []hostRow
	HostsOmitted                             int
	Settings                                 []Setting
}

type tile struct {
	Label, Value, Pointer string
}

// slice is one status in the stacked bar that shows the share of each.
type slice struct {
	Status, Class, X, W, Value, Share, Pointer string
}

type chart struct {
	Name    string // data-chart, for tests and styling
	Height  int
	Bars    []bar
	Omitted int // entries not shown
	Stacked bool
}

// rowHeight is the height of one bar of a chart in pixels: a line for the
// label and value, the bar below it.
const rowHeight = 34

type bar struct {
	Key, Label, Title string
	LabelY, BarY      int
	Values            []barValue
}

// barValue is one number of a bar: its segment and its printed value.
type barValue struct {
	Class, X, W, Text, Pointer string
}

type hostRow struct {
	Host, Title, Provider string
	Cells                 []cell
}

type cell struct {
	Label, Text, Pointer string
	NS                   bool // Text is a duration; the pointer holds nanoseconds
}

func newView(d Data) view {
	d = clipped(d)
	v := view{
		Title:      cmp.Or(d.Title, "bulkverify report"),
		Command:    d.Command,
		Input:      d.Input,
		Duration:   formatDuration(d.Duration),
		DurationNS: int64(d.Duration),
		Warnings:   d.Warnings,
	}
	if !d.Started.IsZero() {
		v.Started = d.Started.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	v.Tiles = []tile{
		{"rows", formatInt(d.Rows), "/rows"},
		{"addresses", formatInt(d.Addresses), "/addresses"},
		{"domains", formatInt(d.Domains), "/domains"},
		{"MX hosts", formatInt(d.MXHosts), "/mx_hosts"},
		{"SMTP connections", formatInt(d.Connections), "/connections"},
	}
	v.StatusTotal, v.StatusSlices = statusSlices(d.ByStatus)
	v.Reasons = reasonChart(d.ByReason)
	v.Signals, v.Providers = signalCharts(d.Signals)
	v.Domains = domainChart(d.TopDomains)
	v.HostsChart = hostChart(d.Hosts)
	v.Hosts, v.HostsOmitted = hostRows(d.Hosts)
	v.Settings = d.Settings
	return v
}

// clipped returns a copy of d with every name cut to cellRunes and made
// valid UTF-8, so no part of the page carries an unbounded string.
func clipped(d Data) Data {
	d.Title, d.Command, d.Input = clip(d.Title, cellRunes), clip(d.Command, cellRunes), clip(d.Input, cellRunes)
	d.Warnings = clipAll(d.Warnings, func(s string) string { return clip(s, 4*cellRunes) })
	d.ByStatus = clipKeys(d.ByStatus)
	d.ByReason = clipAll(d.ByReason, func(r Reason) Reason {
		r.Status, r.Reason = clip(r.Status, cellRunes), clip(r.Reason, cellRunes)
		return r
	})
	d.TopDomains = clipAll(d.TopDomains, func(x Domain) Domain { x.Domain = clip(x.Domain, cellRunes); return x })
	d.Hosts = clipAll(d.Hosts, func(h Host) Host {
		h.Host, h.Provider = clip(h.Host, cellRunes), clip(h.Provider, cellRunes)
		return h
	})
	d.Signals.ByProvider = clipKeys(d.Signals.ByProvider)
	d.Settings = clipAll(d.Settings, func(s Setting) Setting {
		s.Key, s.Value = clip(s.Key, cellRunes), clip(s.Value, cellRunes)
		return s
	})
	return d
}

func clipAll[T any](s []T, f func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

// clipKeys clips map keys. Pointers into the map still use the clipped key,
// so a key longer than cellRunes shows, but points nowhere.
func clipKeys(m map[string]int) map[string]int {
	if m == nil {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, n := range m {
		out[clip(k, cellRunes)] += n
	}
	return out
}

func statusSlices(byStatus map[string]int) (string, []slice) {
	statuses := make([]string, 0, len(byStatus))
	total := 0
	for s, n := range byStatus {
		if n > 0 {
			statuses = append(statuses, s)
			total += n
		}
	}
	slices.SortFunc(statuses, func(a, b string) int {
		return cmp.Or(cmp.Compare(statusRank(a), statusRank(b)), strings.Compare(a, b))
	})
	var out []slice
	x := 0.0
	for _, s := range statuses {
		n := byStatus[s]
		w := 100 * float64(n) / float64(total)
		out = append(out, slice{
			Status: clip(s, labelRunes), Class: statusClass(s), X: percent(x), W: percent(w),
			Value: formatInt(n), Share: fmt.Sprintf("%.1f%%", w), Pointer: pointer("by_status", s),
		})
		x += w
	}
	return formatInt(total), out
}

// simpleBar is one single-valued bar before layout.
type simpleBar struct {
	key, label, class, pointer string
	value                      int
}

// barChart lays out single-valued bars, longest first as given, scaled to
// the largest.
func barChart(name string, bars []simpleBar, omitted int) chart {
	c := chart{Name: name, Omitted: omitted}
	top := 0
	for _, b := range bars {
		top = max(top, b.value)
	}
	for i, b := range bars {
		c.Bars = append(c.Bars, bar{
			Key: b.key, Label: clip(b.label, labelRunes), Title: fmt.Sprintf("%s: %s", b.label, formatInt(b.value)),
			LabelY: i*rowHeight + 14, BarY: i*rowHeight + 19,
			Values: []barValue{{Class: b.class, X: "0%", W: percent(scale(b.value, top)), Text: formatInt(b.value), Pointer: b.pointer}},
		})
	}
	c.Height = len(c.Bars) * rowHeight
	return c
}

func reasonChart(reasons []Reason) chart {
	idx := make([]int, 0, len(reasons))
	for i, r := range reasons {
		if r.Rows > 0 {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ra, rb := reasons[a], reasons[b]
		return cmp.Or(cmp.Compare(rb.Rows, ra.Rows), cmp.Compare(statusRank(ra.Status), statusRank(rb.Status)),
			strings.Compare(ra.Status, rb.Status), strings.Compare(ra.Reason, rb.Reason))
	})
	shown, omitted := top(idx, ChartBars)
	var bars []simpleBar
	for _, i := range shown {
		r := reasons[i]
		key := r.Status + "/" + r.Reason
		bars = append(bars, simpleBar{key: key, label: key, class: statusClass(r.Status),
			pointer: fmt.Sprintf("/by_reason/%d/rows", i), value: r.Rows})
	}
	return barChart("reasons", bars, omitted)
}

func signalCharts(s Signals) (chart, chart) {
	bars := []simpleBar{
		{key: "disposable", label: "disposable domain", pointer: "/signals/disposable", value: s.Disposable},
		{key: "free", label: "free webmail provider", pointer: "/signals/free", value: s.Free},
		{key: "role", label: "role account", pointer: "/signals/role", value: s.Role},
		{key: "typo_known", label: "known typo domain", pointer: "/signals/typo_known", value: s.TypoKnown},
		{key: "typo_suggested", label: "typo suggestion", pointer: "/signals/typo_suggested", value: s.TypoSuggested},
	}
	for i := range bars {
		bars[i].class = "c-signal"
	}
	providers := make([]string, 0, len(s.ByProvider))
	for p, n := range s.ByProvider {
		if p != "" && n > 0 {
			providers = append(providers, p)
		}
	}
	slices.SortFunc(providers, func(a, b string) int {
		return cmp.Or(cmp.Compare(s.ByProvider[b], s.ByProvider[a]), strings.Compare(a, b))
	})
	shown, omitted := top(providers, ChartBars)
	var pbars []simpleBar
	for _, p := range shown {
		pbars = append(pbars, simpleBar{key: p, label: p, class: "c-provider", pointer: pointer("signals", "by_provider", p), value: s.ByProvider[p]})
	}
	return barChart("signals", bars, 0), barChart("providers", pbars, omitted)
}

// stackedBar is one bar of undeliverable and unknown counts before layout.
type stackedBar struct {
	key, title                   string
	undeliverable, unknown       int
	undeliverablePtr, unknownPtr string
}

// stackedChart lays out undeliverable+unknown bars scaled to the largest
// sum.
func stackedChart(name string, bars []stackedBar, omitted int) chart {
	c := chart{Name: name, Omitted: omitted, Stacked: true}
	top := 0
	for _, b := range bars {
		top = max(top, b.undeliverable+b.unknown)
	}
	for i, b := range bars {
		wu := scale(b.undeliverable, top)
		c.Bars = append(c.Bars, bar{
			Key: b.key, Label: clip(b.key, labelRunes), Title: b.title,
			LabelY: i*rowHeight + 14, BarY: i*rowHeight + 19,
			Values: []barValue{
				{Class: "s-undeliverable", X: "0%", W: percent(wu), Text: formatInt(b.undeliverable), Pointer: b.undeliverablePtr},
				{Class: "s-unknown", X: percent(wu), W: percent(scale(b.unknown, top)), Text: formatInt(b.unknown), Pointer: b.unknownPtr},
			},
		})
	}
	c.Height = len(c.Bars) * rowHeight
	return c
}

func domainChart(domains []Domain) chart {
	return problemChart("domains", "rows", "/top_domains", len(domains), func(i int) problemCounts {
		d := domains[i]
		return problemCounts{key: d.Domain, undeliverable: d.Undeliverable, unknown: d.Unknown, total: d.Rows}
	})
}

func hostChart(hosts []Host) chart {
	return problemChart("hosts", "addresses", "/hosts", len(hosts), func(i int) problemCounts {
		h := hosts[i]
		return problemCounts{key: h.Host, undeliverable: h.Undeliverable, unknown: h.Unknown, total: h.Addresses}
	})
}

// problemCounts is what problemChart shows of one domain or host.
type problemCounts struct {
	key                           string
	undeliverable, unknown, total int
}

// problemChart is the stacked chart of the n items (domains or hosts) with
// undeliverable or unknown results, the most of those first, then the
// biggest, then by name; their bars point at pointer/<index> in the
// summary, and their titles count the total in noun.
func problemChart(name, noun, pointer string, n int, at func(int) problemCounts) chart {
	idx := make([]int, 0, n)
	for i := range n {
		if c := at(i); c.undeliverable+c.unknown > 0 {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ca, cb := at(a), at(b)
		return cmp.Or(cmp.Compare(cb.undeliverable+cb.unknown, ca.undeliverable+ca.unknown),
			cmp.Compare(cb.total, ca.total), strings.Compare(ca.key, cb.key))
	})
	shown, omitted := top(idx, ChartBars)
	var bars []stackedBar
	for _, i := range shown {
		c := at(i)
		bars = append(bars, stackedBar{
			key:           c.key,
			title:         fmt.Sprintf("%s: %s undeliverable, %s unknown of %s %s", c.key, formatInt(c.undeliverable), formatInt(c.unknown), formatInt(c.total), noun),
			undeliverable: c.undeliverable, unknown: c.unknown,
			undeliverablePtr: fmt.Sprintf("%s/%d/undeliverable", pointer, i), unknownPtr: fmt.Sprintf("%s/%d/unknown", pointer, i),
		})
	}
	return stackedChart(name, bars, omitted)
}

// hostRows is the host table: the hosts with the most addresses first.
func hostRows(hosts []Host) ([]hostRow, int) {
	idx := make([]int, len(hosts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ha, hb := hosts[a], hosts[b]
		return cmp.Or(cmp.Compare(hb.Addresses, ha.Addresses), cmp.Compare(hb.RCPT, ha.RCPT), strings.Compare(ha.Host, hb.Host))
	})
	shown, omitted := top(idx, TableRows)
	var rows []hostRow
	for _, i := range shown {
		h := hosts[i]
		p := func(field string) string { return fmt.Sprintf("/hosts/%d/%s", i, field) }
		rows = append(rows, hostRow{
			Host: h.Host, Title: h.Host, Provider: h.Provider,
			Cells: []cell{
				{Label: "addresses", Text: formatInt(h.Addresses), Pointer: p("addresses")},
				{Label: "connections", Text: formatInt(h.Connections), Pointer: p("connections")},
				{Label: "RCPT", Text: formatInt(h.RCPT), Pointer: p("rcpt")},
				{Label: "4xx", Text: formatInt(h.Replies4xx), Pointer: p("replies_4xx")},
				{Label: "5xx", Text: formatInt(h.Replies5xx), Pointer: p("replies_5xx")},
				{Label: "greylisted", Text: formatInt(h.Greylisted), Pointer: p("greylisted")},
				{Label: "policy blocks", Text: formatInt(h.PolicyBlocks), Pointer: p("policy_blocks")},
				{Label: "latency p50", Text: formatLatency(h.LatencyP50), Pointer: p("latency_p50_ns"), NS: true},
				{Label: "latency p95", Text: formatLatency(h.LatencyP95), Pointer: p("latency_p95_ns"), NS: true},
			},
		})
	}
	return rows, omitted
}

func top[T any](s []T, n int) (shown []T, omitted int) {
	if len(s) <= n {
		return s, 0
	}
	return s[:n], len(s) - n
}

// pointer is the JSON pointer (RFC 6901) of a path of object keys.
func pointer(keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(k))
	}
	return b.String()
}

func scale(n, top int) float64 {
	if top <= 0 || n <= 0 {
		return 0
	}
	return 100 * float64(n) / float64(top)
}

func percent(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) + "%" }

// formatInt writes n with thousands separators: 1,234,567.
func formatInt(n int) string {
	s := strconv.Itoa(n)
	sign := ""
	if n < 0 {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatLatency writes a reply latency in milliseconds; 0 is "not
// measured".
func formatLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	default:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + " ms"
	}
}

// formatDuration writes a run's duration for a person: 850 ms, 12.3 s,
// 4 min 05 s, 2 h 03 min.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%d h %02d min", int(d.Hours()), int(d.Minutes())%60)
	}
}

// clip cuts s to n runes, marking the cut; invalid UTF-8 is replaced so the
// page stays valid.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// WriteFile renders the report of d to path atomically: into a temporary
// file in the same directory, synced, then renamed over path, so a reader
// never sees half a report and a failed run leaves no broken one.
func WriteFile(path string, d Data) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*.html.tmp")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := Render(f, d); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
