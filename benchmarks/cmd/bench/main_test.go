package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkverify/bulkverify/benchmarks"
)

// TestMain lets the test binary stand in for the bench binary when run
// re-executes itself (-child) or starts a world process (-serve).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "-child" || os.Args[1] == "-serve") {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestPlan(t *testing.T) {
	l1, c1 := benchmarks.L1(), benchmarks.C1()
	tests := []struct {
		name                       string
		workloads, l1s, c1s, sweep string
		want                       []string // workload/addresses/strategy of each job
		wantErr                    bool
	}{
		{name: "defaults", workloads: "L1,C1", l1s: "bulkverify,naive", c1s: "bulkverify", sweep: "100000",
			want: []string{"L1/20000/bulkverify", "L1/20000/naive", "C1/100000/bulkverify", "C1/1000000/bulkverify"}},
		{name: "sweep size equal to C1 is not repeated", workloads: "c1", c1s: "bulkverify", sweep: "1000000",
			want: []string{"C1/1000000/bulkverify"}},
		{name: "small sweep shrinks domains", workloads: "C1", c1s: "bulkverify", sweep: "500",
			want: []string{"C1/500/bulkverify", "C1/1000000/bulkverify"}},
		{name: "store and memory", workloads: "C1,C1-store,C1-rerun,C2", c1s: "bulkverify", sweep: "",
			want: []string{"C1/1000000/bulkverify", "C1-store/1000000/bulkverify", "C1-rerun/1000000/bulkverify", "C2/10000000/bulkverify"}},
		{name: "cluster", workloads: "L1,L3,B1", l1s: "bulkverify,cluster-1",
			want: []string{"L1/20000/bulkverify", "L1/20000/cluster-1", "L3/10000/cluster-1", "L3/10000/cluster-2", "L3/10000/cluster-4", "B1/8000/cluster-1", "B1/8000/cluster-4"}},
		{name: "bad cluster size", workloads: "L1", l1s: "cluster-0", wantErr: true},
		{name: "unknown workload", workloads: "X9", wantErr: true},
		{name: "unknown strategy", workloads: "L1", l1s: "fast", wantErr: true},
		{name: "bad sweep", workloads: "C1", c1s: "bulkverify", sweep: "many", wantErr: true},
		{name: "nothing", workloads: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := plan(tt.workloads, l1, c1, benchmarks.C2(), benchmarks.L3(), benchmarks.B1(), tt.l1s, tt.c1s, tt.sweep,
				"cluster-1,cluster-2,cluster-4", "cluster-1,cluster-4")
			if (err != nil) != tt.wantErr {
				t.Fatalf("plan error %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, j := range jobs {
				if err := j.Workload.Validate(); err != nil {
					t.Errorf("planned an invalid workload: %v", err)
				}
				got = append(got, j.Workload.Name+"/"+strconv.Itoa(j.Workload.Addresses)+"/"+string(j.Strategy))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("jobs %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRun runs a tiny L1 through the command, in this process, in child
// processes and with the world in a process of its own.
func TestRun(t *testing.T) {
	tiny := []string{"-workloads", "L1", "-l1.addresses", "120", "-l1.domains", "12", "-l1.hosts", "4",
		"-l1.rtt", "2ms", "-l1.max-connections", "8"}
	tests := []struct {
		name  string
		extra []string
	}{
		{"in process", []string{"-inprocess"}},
		{"child processes", nil},
		{"world process", []string{"-world-process", "-count", "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			if code := run(ctx, append(tiny, tt.extra...), &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			for _, want := range []string{"Machine: ", "| L1 | bulkverify | 120 |", "| L1 | naive | 120 |", "| L1 | 120 | "} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-no-such-flag"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if code := run(context.Background(), []string{"-workloads", "Z"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}
