package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bulkverify/bulkverify/cluster"
)

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprint(stderr, "Usage: bulkverify cluster status --nats URL [--json]\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return exitOK
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSharedFlags(fs)
	natsURL := fs.String("nats", "", "NATS server `URL` with JetStream (default cluster.nats_url)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	hosts := fs.Int("hosts", 10, "hosts shown per job, biggest first")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bulkverify cluster status --nats URL [flags]\n\n"+
			"Shows the workers alive (from their heartbeats), each job's units queued, in flight and\n"+
			"done, and its progress per MX host. Reads JetStream only.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := noArguments(fs, args[1:], "cluster status", stderr); !ok {
		return code
	}
	err := clusterStatus(ctx, sf, fs, *natsURL, *asJSON, *hosts, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "bulkverify cluster status: %v\n", err)
	}
	return exitCode(ctx, err)
}

func clusterStatus(ctx context.Context, sf *sharedFlags, fs *flag.FlagSet, natsURL string, asJSON bool, hosts int, stdout io.Writer) error {
	cfg, err := sf.config(fs)
	if err != nil {
		return err
	}
	ccfg, err := clusterConfig(cfg, natsURL)
	if err != nil {
		return err
	}
	// A status that cannot reach its server says so soon, rather than
	// waiting for the server as a worker does.
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := cluster.Connect(cctx, ccfg)
	if err != nil {
		if errors.Is(err, cluster.ErrUnavailable) && ctx.Err() == nil {
			return fmt.Errorf("%w (is nats-server -js running there?)", err)
		}
		return err
	}
	defer conn.Close()
	st, err := conn.Status(cctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st, hosts)
	return nil
}

func printStatus(w io.Writer, st cluster.Status, hosts int) {
	fmt.Fprintf(w, "workers alive: %d\n", len(st.Workers))
	if len(st.Workers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  WORKER\tHOST\tBUSY\tUNITS\tRESULTS\tGIVEN BACK\tLAST BEAT\tEGRESS")
		for _, hb := range st.Workers {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s ago\t%v\n", hb.ID, hb.Host, hb.Busy, hb.Stats.Units, hb.Stats.Results,
				hb.Stats.GivenBack, st.At.Sub(hb.At).Round(time.Second), hb.Egress)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "jobs: %d\n", len(st.Jobs))
	for _, j := range st.Jobs {
		state := "submitting"
		switch {
		case j.Progress.Finished:
			state = "finished"
		case j.Record.Submitted:
			state = "running"
		}
		fmt.Fprintf(w, "  %s (%s): units %d: %d queued, %d in flight, %d done; addresses %d done of %d\n",
			j.Record.ID, state, j.Record.Units, j.Queued, len(j.InFlight), j.Progress.DoneUnits,
			j.Progress.DoneAddresses, j.Record.Addresses)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for i, h := range j.Record.Hosts {
			if i == hosts {
				fmt.Fprintf(tw, "    ... %d more hosts\t\t\n", len(j.Record.Hosts)-hosts)
				break
			}
			fmt.Fprintf(tw, "    %s\t%d/%d addresses\t%d units\n", h.Host, j.Progress.Hosts[h.Host], h.Addresses, h.Units)
		}
		tw.Flush()
	}
}
