package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testData is the example run in testdata/data.json: a million rows, and
// host names, domains and providers that try to break out of the page.
func testData(t testing.TB) Data {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d Data
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func render(t testing.TB, d Data) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		data Data
	}{
		{"report", testData(t)},
		{"empty", Data{Command: "find"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.data)
			path := filepath.Join("testdata", tc.name+".golden.html")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./report -run Golden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendered report; if the change is intended, run go test ./report -run Golden -update and review the diff", path)
			}
		})
	}
}

// Nothing in the page may load from elsewhere or run: the file must open
// from disk, offline, and untrusted names must stay text.
func TestSelfContainedAndEscaped(t *testing.T) {
	page := render(t, testData(t))
	for _, bad := range []string{
		"<script", "<img", "<link", "<iframe", "@import", "url(", "http://", "https://", "href=",
		" src=\"", "<b>Evil",
	} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, escaped := range []string{
		"&lt;script&gt;alert(&#39;domain&#39;)&lt;/script&gt;.test",
		"&#34;&gt;&lt;img src=x onerror=alert(1)&gt;",
		"&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
		"&lt;b&gt;Evil&lt;/b&gt; &amp; Co",
		"leads &lt;2026&gt;.csv",
	} {
		if !strings.Contains(page, escaped) {
			t.Errorf("page does not contain the escaped text %q", escaped)
		}
	}
	if !strings.Contains(page, `http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"`) {
		t.Error("the page must forbid loading anything with a Content-Security-Policy")
	}
}

func TestLimits(t *testing.T) {
	d := Data{ByStatus: map[string]int{"deliverable": 1}}
	for i := range 70 {
		d.Hosts = append(d.Hosts, Host{Host: fmt.Sprintf("mx%02d.example", i), Addresses: 100 - i, Unknown: i + 1})
		d.TopDomains = append(d.TopDomains, Domain{Domain: fmt.Sprintf("d%02d.example", i), Rows: 10, Undeliverable: i})
		d.ByReason = append(d.ByReason, Reason{Status: "unknown", Reason: fmt.Sprintf("r%02d", i), Rows: i + 1})
	}
	page := render(t, d)
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllStringIndex(page, -1)) }
	if n := count(`<tr data-key="mx`); n != TableRows {
		t.Errorf("%d host rows, want %d", n, TableRows)
	}
	if !strings.Contains(page, fmt.Sprintf("%d more hosts not shown", 70-TableRows)) {
		t.Error("omitted hosts not mentioned")
	}
	// Bars: reasons, domains (d00 has nothing undeliverable or unknown and
	// is left out), hosts; the signals chart always has its five.
	if n := count(`<g class="bar"`); n != 3*ChartBars+5 {
		t.Errorf("%d bars, want %d", n, 3*ChartBars+5)
	}
	// The most undeliverable/unknown first; the host table by addresses.
	if i, j := strings.Index(page, `data-key="d69.example"`), strings.Index(page, `data-key="d68.example"`); i < 0 || j < i {
		t.Error("domains not sorted by undeliverable+unknown")
	}
	if strings.Contains(page, `data-key="d00.example"`) || strings.Contains(page, `data-key="d54.example"`) {
		t.Error("domains beyond the top ones, or without problems, are shown")
	}
	if i, j := strings.Index(page, `<tr data-key="mx00.example"`), strings.Index(page, `<tr data-key="mx01.example"`); i < 0 || j < i {
		t.Error("host table not sorted by addresses")
	}
	long := strings.Repeat("x", 300) + ".example"
	page = render(t, Data{Hosts: []Host{{Host: long, Unknown: 1}}, Settings: []Setting{{Key: "k", Value: long}}})
	if strings.Contains(page, long) || !strings.Contains(page, strings.Repeat("x", 254)+"…") {
		t.Error("long names are not clipped")
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1052669: "1,052,669", -1234: "-1,234", 100000: "100,000"} {
		if got := formatInt(n); got != want {
			t.Errorf("formatInt(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0 s", 850 * time.Millisecond: "850 ms", 8470 * time.Millisecond: "8.5 s",
		245 * time.Second: "4 min 05 s", 2*time.Hour + 3*time.Minute + 20*time.Second: "2 h 03 min",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "–", 400 * time.Microsecond: "0.4 ms", 3500 * time.Microsecond: "3.5 ms", 84300 * time.Microsecond: "84 ms",
		1500 * time.Millisecond: "1500 ms",
	} {
		if got := formatLatency(d); got != want {
			t.Errorf("formatLatency(%v) = %q, want %q", d, got, want)
		}
	}
	if got := pointer("signals", "by_provider", "a/b~c"); got != "/signals/by_provider/a~1b~0c" {
		t.Errorf("pointer = %q", got)
	}
	if got := clip("h\xffllo", 10); got != "h\uFFFDllo" {
		t.Errorf("clip of invalid UTF-8 = %q", got)
	}
}

// The JSON form is what the summary embeds: it must round-trip.
func TestDataJSON(t *testing.T) {
	d := testData(t)
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Data
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if render(t, back) != render(t, d) {
		t.Error("Data does not survive a JSON round trip")
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.html")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testData(t)
	if err := WriteFile(path, d); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != render(t, d) {
		t.Fatalf("file holds %d bytes, err %v; want the rendered report", len(got), err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "run.html"), d); err == nil {
		t.Error("no error for a missing directory")
	}
}
