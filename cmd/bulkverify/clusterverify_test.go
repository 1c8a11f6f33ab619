package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bulkverify/bulkverify/mailsim"
)

// startExampleWorld runs the sandbox's simulated world in the test, for
// processes that are not --sandbox (a cluster's coordinator and workers).
func startExampleWorld(t *testing.T) *mailsim.Sim {
	t.Helper()
	sim, err := mailsim.Start(context.Background(), mailsim.Example(), mailsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// worldFlags point a command at sim instead of the internet.
func worldFlags(sim *mailsim.Sim) []string {
	return []string{"--resolver", sim.DNSAddr(), "--port", strconv.Itoa(sim.SMTPPort()), "--no-preflight",
		"--helo", "probe.bulkverify.test"}
}

// startWorker runs "bulkverify worker" in this process until the test ends,
// and checks then that it stopped as asked (exit 0).
func startWorker(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	errOut := &lockedWriter{w: &bytes.Buffer{}}
	go func() {
		done <- run(ctx, append([]string{"worker"}, args...), nil, &bytes.Buffer{}, errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("worker exit %d:\n%s", code, errOut.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("the worker did not stop within 60s of SIGTERM")
		}
	})
}

// A cluster job (verify --nats, a worker) writes what a local verify of
// the same input writes, row for row; a second run of it reuses the
// verdicts the first left in the cluster's cache; the job is gone from
// JetStream once its output is complete.
func TestVerifyThroughTheCluster(t *testing.T) {
	isolateStore(t)
	url := startNATS(t)
	sim := startExampleWorld(t)
	startWorker(t, append([]string{"--nats", url, "--units", "3"}, worldFlags(sim)...)...)
	world := append(worldFlags(sim), "--progress", "off")
	dir := t.TempDir()
	in := "../../examples/leads.csv"

	local := filepath.Join(dir, "local.csv")
	code, _, stderr := runCLI(t, "", append([]string{"verify", in, "-o", local, "--no-store"}, world...)...)
	if code != exitOK {
		t.Fatalf("local verify: exit %d\n%s", code, stderr)
	}
	clustered := filepath.Join(dir, "cluster.csv")
	code, _, stderr = runCLI(t, "", append([]string{"verify", "--nats", url, in, "-o", clustered, "--keep-order"}, world...)...)
	if code != exitOK {
		t.Fatalf("verify --nats: exit %d\n%s", code, stderr)
	}
	if testing.Verbose() {
		t.Logf("verify --nats:\n%s", stderr)
	}
	if !strings.Contains(stderr, "cluster job j") {
		t.Errorf("the coordinator does not name its job:\n%s", stderr)
	}
	want := rowsByNumber(t, local)
	got := rowsByNumber(t, clustered)
	compareRows(t, want, got, "checked_at")
	data, _ := os.ReadFile(clustered)
	rows := readCSV(t, string(data))
	for i, r := range rows {
		if r["row"] != strconv.Itoa(i+1) {
			t.Fatalf("--keep-order: output row %d is input row %s", i+1, r["row"])
		}
	}

	again := filepath.Join(dir, "again.csv")
	code, _, stderr = runCLI(t, "", append([]string{"verify", "--nats", url, in, "-o", again}, world...)...)
	if code != exitOK {
		t.Fatalf("second verify --nats: exit %d\n%s", code, stderr)
	}
	stored := 0
	for n, r := range rowsByNumber(t, again) {
		if r["source"] == "stored" {
			stored++
		}
		if w := want[n]; w["status"] != r["status"] || w["reason"] != r["reason"] || w["smtp_code"] != r["smtp_code"] {
			t.Errorf("second run, row %d: %s/%s/%s, first %s/%s/%s", n, r["status"], r["reason"], r["smtp_code"], w["status"], w["reason"], w["smtp_code"])
		}
	}
	if stored == 0 {
		t.Errorf("the second run reused no verdict of the cluster's cache:\n%s", stderr)
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"cluster", "status", "--nats", url}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("cluster status: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "jobs: 0") || !strings.Contains(out.String(), "workers alive: 1") {
		t.Errorf("after the jobs, status says:\n%s", out.String())
	}
}

// rowsByNumber reads an output file into its rows by row number, failing on
// a row number seen twice.
func rowsByNumber(t *testing.T, path string) map[int]map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]map[string]string{}
	for _, r := range readCSV(t, string(data)) {
		n, err := strconv.Atoi(r["row"])
		if err != nil {
			t.Fatalf("%s: bad row %q", path, r["row"])
		}
		if _, dup := out[n]; dup {
			t.Errorf("%s: row %d twice", path, n)
		}
		out[n] = r
	}
	return out
}

// compareRows asserts that got has the rows of want, equal in every column
// but those named.
func compareRows(t *testing.T, want, got map[int]map[string]string, except ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, c := range except {
		skip[c] = true
	}
	if len(got) != len(want) {
		t.Errorf("%d rows, want %d", len(got), len(want))
	}
	for n, w := range want {
		g, ok := got[n]
		if !ok {
			t.Errorf("row %d missing", n)
			continue
		}
		for col, v := range w {
			if !skip[col] && g[col] != v {
				t.Errorf("row %d (%s): %s = %q, want %q", n, w["email"], col, g[col], v)
			}
		}
	}
}

// lockedWriter lets a process-in-a-goroutine write while the test reads.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// The commands deploy/ runs (compose services, the worker Deployment, the
// CronJob) are flags this binary knows: each parses, up to its -h.
func TestDeployCommandsParse(t *testing.T) {
	var commands [][]string
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	readYAML(t, "../../deploy/compose.yaml", func(dec *yaml.Decoder) error { return dec.Decode(&compose) })
	for name, s := range compose.Services {
		if strings.HasPrefix(s.Image, "bulkverify") {
			commands = append(commands, s.Command)
		} else if name != "nats" {
			t.Errorf("compose service %s runs image %q", name, s.Image)
		}
	}
	for _, f := range []string{"../../deploy/k8s/worker.yaml", "../../deploy/k8s/cronjob.yaml"} {
		readYAML(t, f, func(dec *yaml.Decoder) error {
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				commands = append(commands, containerArgs(doc)...)
			}
		})
	}
	if len(commands) != 4 {
		t.Fatalf("found %d bulkverify commands in deploy/, want 4 (compose worker and job, k8s worker and CronJob): %q", len(commands), commands)
	}
	for _, args := range commands {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append(slices.Clone(args), "-h"), nil, &out, &errOut); code != exitOK {
			t.Errorf("%q: exit %d\n%s", args, code, errOut.String())
		}
	}
}

func readYAML(t *testing.T, path string, decode func(*yaml.Decoder) error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := decode(yaml.NewDecoder(f)); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// containerArgs finds the args of containers running a bulkverify image
// anywhere in a Kubernetes object.
func containerArgs(v any) [][]string {
	var out [][]string
	switch x := v.(type) {
	case map[string]any:
		if img, ok := x["image"].(string); ok && strings.Contains(img, "bulkverify") {
			var args []string
			for _, a := range x["args"].([]any) {
				args = append(args, fmt.Sprint(a))
			}
			return [][]string{args}
		}
		for _, e := range x {
			out = append(out, containerArgs(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, containerArgs(e)...)
		}
	}
	return out
}
