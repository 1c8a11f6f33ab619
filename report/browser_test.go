package report

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/bulkverify/bulkverify/internal/testenv"
	"maps"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// requireBrowser returns the browser to test with. Without it the test
// skips, saying why, unless CI demands every suite run (testenv).
func requireBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		testenv.Unavailable(t, "report: real-browser test skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Unavailable(t, "report: %s not found (%v); install the Debian package chromium (see .ci/run) to run the real-browser test", chromiumPath, err)
	}
	return chromiumPath
}

// newBrowser starts headless Chromium with a fresh profile and nothing that
// reaches the network (the machine has none, and the report must need none).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(requireBrowser(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	// The whole browser, whatever happens, is bounded in time.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil { // start the browser now, to report its failure plainly
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return bctx
}

// console collects what the page writes to the console, exceptions and
// browser log entries (a blocked load is one) as they arrive.
type console struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func listen(ctx context.Context) *console {
	c := &console{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

// problems waits until a marker logged now has come through — so that every
// message the page wrote before has too — and returns the errors, warnings
// and exceptions among them.
func (c *console) problems(t *testing.T, ctx context.Context) []string {
	t.Helper()
	marker := fmt.Sprintf("bulkverify-test-marker-%d", time.Now().UnixNano())
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("console.info(%q)", marker))); err != nil {
		t.Fatalf("logging the marker: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		msgs := slices.Clone(c.msgs)
		c.mu.Unlock()
		seen := false
		var out []string
		for _, m := range msgs {
			switch {
			case m.Text == marker:
				seen = true
			case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException():
				out = append(out, fmt.Sprintf("%s (%s %s:%d)", m, m.Source, m.URL, m.Line))
			}
		}
		if seen {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console marker never arrived; messages so far: %v", msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shownPage is what the test reads back from the rendered page.
type shownPage struct {
	Nums        []numEl            `json:"nums"`
	NS          []numEl            `json:"ns"`
	Charts      map[string]chartEl `json:"charts"`
	HostCells   []string           `json:"hostCells"`
	ProvCells   []string           `json:"provCells"`
	ScrollWidth float64            `json:"scrollWidth"`
	InnerWidth  float64            `json:"innerWidth"`
	ClientWidth float64            `json:"clientWidth"`
	Scripts     int                `json:"scripts"`
	Images      int                `json:"images"`
	Title       string             `json:"title"`
}

type numEl struct {
	Pointer string `json:"p"`
	Text    string `json:"t"`
}

type chartEl struct {
	Width  float64 `json:"width"`
	Bars   []barEl `json:"bars"`
	Slices []struct {
		Key   string  `json:"key"`
		Width float64 `json:"w"`
	} `json:"slices"`
}

type barEl struct {
	Key   string    `json:"key"`
	Segs  []float64 `json:"segs"`
	Track float64   `json:"track"`
}

const readPage = `(() => {
  const els = sel => [...document.querySelectorAll(sel)];
  const charts = {};
  for (const svg of els('svg[data-chart]')) {
    charts[svg.dataset.chart] = {
      width: svg.getBoundingClientRect().width,
      bars: [...svg.querySelectorAll('g.bar')].map(g => ({
        key: g.dataset.key,
        segs: [...g.querySelectorAll('rect.seg')].map(r => r.getBBox().width),
        track: g.querySelector('rect.track').getBBox().width,
      })),
      slices: [...svg.querySelectorAll('rect.slice')].map(r => ({key: r.dataset.key, w: r.getBBox().width})),
    };
  }
  return {
    nums: els('[data-num]').map(e => ({p: e.dataset.num, t: e.textContent})),
    ns: els('[data-ns]').map(e => ({p: e.dataset.ns, t: e.textContent})),
    charts,
    hostCells: els('table[data-table=hosts] td.host').map(e => e.textContent),
    provCells: els('table[data-table=hosts] td.prov').map(e => e.textContent),
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    clientWidth: document.documentElement.clientWidth,
    scripts: document.scripts.length,
    images: document.images.length,
    title: document.title,
  };
})()`

// load opens the file in the browser at a viewport width and reads it back.
func load(t *testing.T, ctx context.Context, path string, width int64, mobile bool) shownPage {
	t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	u := url.URL{Scheme: "file", Path: path}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900, opts...), chromedp.Navigate(u.String())); err != nil {
		t.Fatalf("opening %s: %v", u.String(), err)
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[shownPage](readPage))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return p
}

// TestReportInBrowser opens the report of testdata/data.json in Chromium,
// as a person would from disk, on a desktop and on a phone: it must render
// without a console error, draw its charts to scale, show exactly the
// numbers of the data, keep hostile names as text, and not overflow a phone
// screen.
func TestReportInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	d := testData(t)
	path := filepath.Join(t.TempDir(), "report.html")
	writeReport(t, path, d)
	want := pointers(t, d)

	for _, vp := range []struct {
		name   string
		width  int64
		mobile bool
	}{
		{"desktop", 1280, false},
		{"phone", 375, true},
	} {
		t.Run(vp.name, func(t *testing.T) {
			c := listen(ctx)
			p := load(t, ctx, path, vp.width, vp.mobile)
			if probs := c.problems(t, ctx); len(probs) > 0 {
				t.Errorf("console problems:\n%s", strings.Join(probs, "\n"))
			}
			t.Logf("%s: scroll width %.0f, client width %.0f, inner width %.0f", vp.name, p.ScrollWidth, p.ClientWidth, p.InnerWidth)
			if w := float64(vp.width); p.ScrollWidth > w || p.ClientWidth > w || p.InnerWidth > w {
				t.Errorf("the page is %.0f px wide (client %.0f, window %.0f) in a %.0f px viewport: it overflows sideways",
					p.ScrollWidth, p.ClientWidth, p.InnerWidth, w)
			}
			if p.Scripts != 0 || p.Images != 0 {
				t.Errorf("%d scripts and %d images in the page; want none", p.Scripts, p.Images)
			}
			if p.Title != "bulkverify report" {
				t.Errorf("title %q", p.Title)
			}
			checkNumbers(t, p, want)
			checkCharts(t, p, d)
			// Hostile names are shown as the text they are, never as markup.
			hosts := map[string]bool{}
			for _, h := range d.Hosts {
				hosts[h.Host] = true
			}
			for _, h := range p.HostCells {
				if !hosts[h] {
					t.Errorf("host cell %q is not a host of the data", h)
				}
			}
			if len(p.HostCells) != len(d.Hosts) || !slices.Contains(p.ProvCells, "</td><script>alert(2)</script>") {
				t.Errorf("host cells %q, provider cells %q", p.HostCells, p.ProvCells)
			}
		})
	}
}

// The console check must be able to fail: a page that tries to load an
// image and run a script (both refused by the report's policy) is caught.
func TestBrowserCatchesConsoleErrors(t *testing.T) {
	ctx := newBrowser(t)
	var b strings.Builder
	if err := Render(&b, Data{}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(b.String(), "</main>", `<img src="missing.png"><script>console.error("boom")</script></main>`, 1)
	path := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c := listen(ctx)
	load(t, ctx, path, 1280, false)
	probs := c.problems(t, ctx)
	if len(probs) < 2 {
		t.Fatalf("want the refused image and script reported, got %q", probs)
	}
	for _, p := range probs {
		if strings.Contains(p, "boom") {
			t.Errorf("the script ran despite the policy: %q", p)
		}
	}
}

func writeReport(t *testing.T, path string, d Data) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Render(f, d); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// pointers flattens the JSON form of d into JSON pointer -> number, the way
// the summary's readers see it.
func pointers(t *testing.T, d Data) map[string]float64 {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(prefix+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), x)
			}
		case []any:
			for i, x := range v {
				walk(prefix+"/"+strconv.Itoa(i), x)
			}
		case float64:
			out[prefix] = v
		}
	}
	walk("", doc)
	return out
}

// checkNumbers compares every number on the page with the data at its
// pointer, and checks that the numbers a reader needs are all there.
func checkNumbers(t *testing.T, p shownPage, want map[string]float64) {
	t.Helper()
	shown := map[string]bool{}
	for _, n := range p.Nums {
		v, ok := want[n.Pointer]
		if !ok {
			t.Errorf("page shows %q for %s, which is not a number of the data", n.Text, n.Pointer)
			continue
		}
		got, err := strconv.ParseFloat(strings.ReplaceAll(n.Text, ",", ""), 64)
		if err != nil || got != v {
			t.Errorf("page shows %q for %s, data has %v", n.Text, n.Pointer, v)
		}
		shown[n.Pointer] = true
	}
	for _, n := range p.NS {
		v, ok := want[n.Pointer]
		if !ok {
			t.Errorf("page shows %q for %s, which is not a number of the data", n.Text, n.Pointer)
			continue
		}
		got, precision, err := parseShownDuration(n.Text)
		if err != nil || math.Abs(got-v) > precision/2+1 {
			t.Errorf("page shows %q for %s, data has %v ns (%v)", n.Text, n.Pointer, v, err)
		}
		shown[n.Pointer] = true
	}
	var missing []string
	for ptr := range want {
		if needed(ptr) && !shown[ptr] {
			missing = append(missing, ptr)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("numbers of the data not on the page: %v", missing)
	}
}

// needed says which numbers of the test data the page must show: all of
// them but the per-domain row counts (in the tooltips) and zero reasons.
func needed(ptr string) bool {
	switch {
	case strings.HasPrefix(ptr, "/top_domains/") && strings.HasSuffix(ptr, "/rows"):
		return false
	case ptr == "/by_reason/10/rows": // null_mx, 0 rows: not a bar
		return false
	case strings.HasPrefix(ptr, "/top_domains/3/"): // clean.example: nothing to show
		return false
	case strings.HasPrefix(ptr, "/hosts/") && (strings.HasSuffix(ptr, "/undeliverable") || strings.HasSuffix(ptr, "/unknown")):
		// in the hosts chart only when non-zero sums; checked by checkCharts
		return false
	}
	return true
}

// parseShownDuration reads "12 ms", "0.4 ms", "8.5 s" or "–" back into
// nanoseconds, with the precision the text has.
func parseShownDuration(s string) (ns, precision float64, err error) {
	if s == "–" {
		return 0, 0, nil
	}
	num, unit, ok := strings.Cut(s, " ")
	if !ok {
		return 0, 0, fmt.Errorf("no unit in %q", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, 0, err
	}
	scale := map[string]float64{"ms": 1e6, "s": 1e9}[unit]
	if scale == 0 {
		return 0, 0, fmt.Errorf("unit %q", unit)
	}
	precision = scale
	if i := strings.IndexByte(num, '.'); i >= 0 {
		precision = scale / math.Pow(10, float64(len(num)-i-1))
	}
	return v * scale, precision, nil
}

// checkCharts checks that each chart has a bar (or slice) per shown entry
// and that their lengths are to scale.
func checkCharts(t *testing.T, p shownPage, d Data) {
	t.Helper()
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.005+1e-9 }

	status := p.Charts["status"]
	total := 0
	for _, n := range d.ByStatus {
		total += n
	}
	if len(status.Slices) != len(d.ByStatus) {
		t.Errorf("status chart has %d slices, want %d", len(status.Slices), len(d.ByStatus))
	}
	for _, s := range status.Slices {
		if want := float64(d.ByStatus[s.Key]) / float64(total); !near(s.Width/status.Width, want) {
			t.Errorf("status slice %s is %.4f of the bar, want %.4f", s.Key, s.Width/status.Width, want)
		}
	}

	// Single-valued charts: bars in proportion to their values.
	reasons := map[string]float64{}
	for _, r := range d.ByReason {
		if r.Rows > 0 {
			reasons[r.Status+"/"+r.Reason] = float64(r.Rows)
		}
	}
	sig := d.Signals
	signals := map[string]float64{"disposable": float64(sig.Disposable), "free": float64(sig.Free), "role": float64(sig.Role),
		"typo_known": float64(sig.TypoKnown), "typo_suggested": float64(sig.TypoSuggested)}
	providers := map[string]float64{}
	for k, v := range sig.ByProvider {
		providers[k] = float64(v)
	}
	for name, values := range map[string]map[string]float64{"reasons": reasons, "signals": signals, "providers": providers} {
		checkBars(t, name, p.Charts[name], values, near)
	}

	// Stacked charts: undeliverable and unknown, in proportion to the
	// largest sum.
	domains := map[string][2]float64{}
	for _, x := range d.TopDomains {
		if x.Undeliverable+x.Unknown > 0 {
			domains[x.Domain] = [2]float64{float64(x.Undeliverable), float64(x.Unknown)}
		}
	}
	hosts := map[string][2]float64{}
	for _, x := range d.Hosts {
		if x.Undeliverable+x.Unknown > 0 {
			hosts[x.Host] = [2]float64{float64(x.Undeliverable), float64(x.Unknown)}
		}
	}
	for name, values := range map[string]map[string][2]float64{"domains": domains, "hosts": hosts} {
		c := p.Charts[name]
		if len(c.Bars) != len(values) {
			t.Errorf("%s chart has %d bars, want %d", name, len(c.Bars), len(values))
		}
		top := 0.0
		for _, v := range values {
			top = max(top, v[0]+v[1])
		}
		for _, b := range c.Bars {
			v, ok := values[b.Key]
			if !ok || len(b.Segs) != 2 {
				t.Errorf("%s chart: bar %q with %d segments is not in the data", name, b.Key, len(b.Segs))
				continue
			}
			for i := range 2 {
				if !near(b.Segs[i]/b.Track, v[i]/top) {
					t.Errorf("%s chart: bar %q segment %d is %.4f of the track, want %.4f", name, b.Key, i, b.Segs[i]/b.Track, v[i]/top)
				}
			}
		}
	}
}

func checkBars(t *testing.T, name string, c chartEl, values map[string]float64, near func(a, b float64) bool) {
	t.Helper()
	if len(c.Bars) != min(len(values), ChartBars) {
		t.Errorf("%s chart has %d bars, want %d", name, len(c.Bars), min(len(values), ChartBars))
	}
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	for _, b := range c.Bars {
		v, ok := values[b.Key]
		if !ok || len(b.Segs) != 1 {
			t.Errorf("%s chart: bar %q with %d segments is not in the data", name, b.Key, len(b.Segs))
			continue
		}
		if !near(b.Segs[0]/b.Track, v/top) {
			t.Errorf("%s chart: bar %q is %.4f of the track, want %.4f", name, b.Key, b.Segs[0]/b.Track, v/top)
		}
	}
}

// The report a real run writes shows the numbers of that run's summary JSON
// (its "report" field): the bulkverify binary verifies the sandbox's example
// list with --report and --summary, and the browser reads the page.
func TestRunReportMatchesSummary(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bulkverify")
	build := exec.Command("go", "build", "-o", bin, "../cmd/bulkverify")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building bulkverify: %v\n%s", err, out)
	}
	html, summary := filepath.Join(dir, "report.html"), filepath.Join(dir, "summary.json")
	run := exec.Command(bin, "verify", "--sandbox", "../examples/leads.csv", "-o", filepath.Join(dir, "out.csv"),
		"--report", html, "--summary", summary, "--progress", "off", "--no-store")
	run.Env = append(os.Environ(), "BULKVERIFY_CONFIG=")
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("bulkverify verify --sandbox: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Rows     int            `json:"rows"`
		ByStatus map[string]int `json:"by_status"`
		Report   *Data          `json:"report"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.Report == nil {
		t.Fatalf("summary without report data: %v\n%s", err, raw)
	}
	d := *s.Report
	if d.Rows != s.Rows || !maps.Equal(d.ByStatus, s.ByStatus) || d.Rows == 0 {
		t.Fatalf("the summary's report data (%d rows, %v) differs from the summary itself (%d rows, %v)", d.Rows, d.ByStatus, s.Rows, s.ByStatus)
	}
	if d.Signals.Disposable == 0 || d.Signals.Role == 0 || d.Signals.TypoSuggested == 0 || d.Signals.ByProvider["google"] == 0 {
		t.Errorf("the example run's signals are not all counted: %+v", d.Signals)
	}
	c := listen(ctx)
	p := load(t, ctx, html, 1280, false)
	if probs := c.problems(t, ctx); len(probs) > 0 {
		t.Errorf("console problems:\n%s", strings.Join(probs, "\n"))
	}
	checkNumbers(t, p, pointers(t, d))
	checkCharts(t, p, d)
}
