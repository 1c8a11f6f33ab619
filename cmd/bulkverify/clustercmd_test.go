package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bulkverify/bulkverify/cluster"
	"github.com/bulkverify/bulkverify/internal/natstest"
)

// startNATS starts a real nats-server with JetStream in the test process.
func startNATS(t *testing.T) string { return natstest.Start(t, server.Options{}).URL() }

func TestClusterStatus(t *testing.T) {
	url := startNATS(t)
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"cluster", "status", "--nats", url}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "workers alive: 0") || !strings.Contains(out.String(), "jobs: 0") {
		t.Errorf("empty cluster:\n%s", out.String())
	}

	conn, err := cluster.Connect(ctx, cluster.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	units := []cluster.Unit{
		{ID: "u1", MXHosts: []string{"mx.big.example"}, Addresses: []cluster.Address{{Key: 1, Local: "a", Domain: "big.example"}, {Key: 2, Local: "b", Domain: "big.example"}}},
		{ID: "u2", MXHosts: []string{"mx.small.example"}, Addresses: []cluster.Address{{Key: 3, Local: "c", Domain: "small.example"}}},
	}
	if _, err := conn.Coordinator().Submit(ctx, "nightly-1", slices.Values(units)); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(ctx, []string{"cluster", "status", "--nats", url}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"jobs: 1",
		"nightly-1 (running): units 2: 2 queued, 0 in flight, 0 done; addresses 0 done of 3",
		"mx.big.example", "0/2 addresses",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(ctx, []string{"cluster", "status", "--json", "--nats", url}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var st cluster.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Jobs) != 1 || st.Jobs[0].Queued != 2 {
		t.Errorf("--json: %v\n%s", err, out.String())
	}
}

func TestWorkerCommandArguments(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"worker"}, exitUsage, "no NATS server"},
		{[]string{"worker", "extra"}, exitUsage, "takes no arguments"},
		{[]string{"cluster"}, exitUsage, "Usage: bulkverify cluster status"},
		{[]string{"cluster", "status"}, exitUsage, "no NATS server"},
	} {
		var out, errOut bytes.Buffer
		code := run(ctx, tc.args, nil, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.msg)
		}
	}
	// A worker needs no sandbox: its coordinator resolved the world.
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"worker", "--nats", "nats://127.0.0.1:1", "--sandbox"}, nil, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "--sandbox is for one process") {
		t.Errorf("worker --sandbox: exit %d, stderr %q", code, errOut.String())
	}
}
