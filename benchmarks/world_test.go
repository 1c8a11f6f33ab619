package benchmarks

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRemoteWorld serves a world over pipes, as the bench command does
// across processes, runs bulkverify against it and checks that the counts
// come back from the other side.
func TestRemoteWorld(t *testing.T) {
	w := smallWorkload()
	w.RTT = 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang only
	defer cancel()
	toServer, serverIn := io.Pipe()
	serverOut, fromServer := io.Pipe()
	served := make(chan error, 1)
	go func() {
		err := ServeWorld(ctx, w, toServer, fromServer)
		fromServer.Close()
		served <- err
	}()
	world, err := RemoteWorld(serverOut, serverIn)
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunAgainst(ctx, w, Bulk, world, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != w.Addresses || res.Wrong != 0 {
		t.Fatalf("%d rows, %d wrong: %v", res.Rows, res.Wrong, res.Mismatches)
	}
	// Addresses, one catch-all probe per domain, at most one positive
	// control per transaction.
	if got, least := res.ByVerb["RCPT"], w.Addresses+w.Domains; got < least || got > least+res.ByVerb["MAIL"] {
		t.Errorf("RCPT counted by the served world = %d, want %d plus at most one per transaction (%d)", got, least, res.ByVerb["MAIL"])
	}
	if res.Connections < w.LeastConnections() || res.DNSQueries == 0 {
		t.Errorf("connections %d (least %d), DNS queries %d", res.Connections, w.LeastConnections(), res.DNSQueries)
	}
	serverIn.Close() // end of input: the world closes
	if err := <-served; err != nil {
		t.Fatalf("ServeWorld: %v", err)
	}
}

func TestWorldProtocolErrors(t *testing.T) {
	tests := []struct {
		name   string
		server string // what the "server" side says
	}{
		{"not JSON", "hello\n"},
		{"no address", `{"dns_addr": "", "smtp_port": 25}` + "\n"},
		{"silent", ""},
		{"endless line", strings.Repeat("x", maxProtocolLine+10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := RemoteWorld(strings.NewReader(tt.server), io.Discard); !errors.Is(err, ErrProtocol) {
				t.Errorf("RemoteWorld = %v, want ErrProtocol", err)
			}
		})
	}

	t.Run("unknown command", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against a hang only
		defer cancel()
		err := ServeWorld(ctx, smallWorkload(), strings.NewReader("frobnicate\n"), io.Discard)
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("ServeWorld = %v, want ErrProtocol", err)
		}
	})
	t.Run("begin answered wrongly", func(t *testing.T) {
		rw, err := RemoteWorld(strings.NewReader(`{"dns_addr": "127.0.0.1:53", "smtp_port": 25}`+"\nnope\n"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := rw.Begin(); !errors.Is(err, ErrProtocol) {
			t.Errorf("Begin = %v, want ErrProtocol", err)
		}
	})
}

func TestMedian(t *testing.T) {
	runs := []Result{{Wall: 3 * time.Second, Rows: 3}, {Wall: time.Second, Rows: 1}, {Wall: 2 * time.Second, Rows: 2}, {Wall: 4 * time.Second, Rows: 4}}
	m := Median(runs)
	if m.Rows != 2 || m.Runs != 4 || m.WallMin != time.Second || m.WallMax != 4*time.Second {
		t.Errorf("Median = %+v, want the 2 s run of 4, from 1 s to 4 s", m)
	}
	if runs[0].Rows != 3 {
		t.Error("Median reordered its argument")
	}
	if m := Median(nil); m.Runs != 0 {
		t.Errorf("Median(nil) = %+v", m)
	}
}
