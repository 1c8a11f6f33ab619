// Command preflight measures how long the bulkverify CLI takes to give up,
// with exit 1, on a network where port 25 is blocked: every canary mail
// server of the port-25 preflight refuses the connection (RST), drops it
// (the SYN is never answered, as most firewalls do), or accepts it and never
// greets (a middlebox that swallows port 25). It runs the real binary
// against a simulated world whose canary domains are set in a config file,
// with the default timeouts (connect 10s, greeting 30s, the preflight's own
// bound 60s) unless flags change them.
//
//	go build -o /tmp/bulkverify ./cmd/bulkverify
//	go run ./benchmarks/cmd/preflight -bin /tmp/bulkverify               # every mode, 1 and 2 egresses
//	go run ./benchmarks/cmd/preflight -bin /tmp/bulkverify -modes dropped -egresses 1,3,6
//
// Dropped SYNs are simulated on loopback with a listening socket whose
// accept queue (backlog 0) is full and never drained: the kernel drops
// every further SYN, and the client's connect times out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "", "the bulkverify binary to run (required)")
	modes := fs.String("modes", "refused,dropped,silent", "how the canaries fail: refused, dropped, silent")
	egresses := fs.String("egresses", "1,2", "numbers of source addresses (--source-ip 127.0.0.101...) to try")
	count := fs.Int("count", 1, "runs of each case; the median is reported")
	extra := fs.String("config", "", "more YAML for the config file (e.g. other timeouts), after the canaries")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bin == "" {
		fmt.Fprintln(stderr, "preflight: -bin is required")
		return 2
	}
	fmt.Fprintln(stdout, "| canaries | egresses | canary sessions | exit | wall to exit (median) | min–max (runs) | what it said |")
	fmt.Fprintln(stdout, "|---|--:|--:|--:|--:|--:|---|")
	for _, mode := range strings.Split(*modes, ",") {
		for _, e := range strings.Split(*egresses, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(e))
			if err != nil || n < 1 || n > 100 {
				fmt.Fprintf(stderr, "preflight: bad egress count %q\n", e)
				return 2
			}
			var walls []time.Duration
			var last result
			for range max(*count, 1) {
				last, err = measure(*bin, strings.TrimSpace(mode), n, *extra)
				if err != nil {
					fmt.Fprintln(stderr, "preflight:", err)
					return 1
				}
				fmt.Fprintf(stderr, "preflight: %s, %d egresses: exit %d after %v\n", mode, n, last.code, last.wall.Round(time.Millisecond))
				walls = append(walls, last.wall)
			}
			slices.Sort(walls)
			fmt.Fprintf(stdout, "| %s | %d | %d | %d | %s | %s–%s (%d) | %s |\n", mode, n, 3*n, last.code,
				fmtDur(walls[(len(walls)-1)/2]), fmtDur(walls[0]), fmtDur(walls[len(walls)-1]), len(walls), last.tally)
		}
	}
	return 0
}

type result struct {
	code  int
	wall  time.Duration
	tally string // the attempts' tally from the message, e.g. "6 timed out"
}

var canaries = []string{"c1.test", "c2.test", "c3.test"}

// measure runs bulkverify once against a world whose canaries fail as mode
// says, from n source addresses.
func measure(bin, mode string, n int, extra string) (result, error) {
	var w mailsim.World
	var canary mailsim.Host
	switch mode {
	case "refused", "dropped":
		canary = mailsim.Host{Down: true}
	case "silent":
		canary = mailsim.Host{Hostile: mailsim.HostileSilent}
	default:
		return result{}, fmt.Errorf("unknown mode %q", mode)
	}
	var ips []string
	for i, d := range canaries {
		h := canary
		h.Name, h.IP = "mx."+d, fmt.Sprintf("127.0.63.%d", 10+i)
		ips = append(ips, h.IP)
		w.Hosts = append(w.Hosts, h)
		w.Domains = append(w.Domains, mailsim.Domain{Name: d, MX: []mailsim.MX{{Preference: 10, Host: h.Name}}})
	}
	w.Hosts = append(w.Hosts, mailsim.Host{Name: "mx.list.test", IP: "127.0.63.20"})
	w.Domains = append(w.Domains, mailsim.Domain{Name: "list.test", MX: []mailsim.MX{{Preference: 10, Host: "mx.list.test"}}, Mailboxes: []string{"alice"}})
	ctx := context.Background()
	sim, err := mailsim.Start(ctx, w, mailsim.Options{})
	if err != nil {
		return result{}, err
	}
	defer sim.Close()
	if mode == "dropped" {
		for _, ip := range ips {
			stop, err := dropSYNs(ip, sim.SMTPPort())
			if err != nil {
				return result{}, err
			}
			defer stop()
		}
	}

	dir, err := os.MkdirTemp("", "bulkverify-preflight-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	in, cfg := filepath.Join(dir, "in.csv"), filepath.Join(dir, "bulkverify.yaml")
	if err := os.WriteFile(in, []byte("email\nalice@list.test\n"), 0o644); err != nil {
		return result{}, err
	}
	list := "[" + strings.Join(canaries, ", ") + "]"
	config := "egress:\n  canary_domains: " + list + "\n  dns_canary_domains: " + list + "\n" + extra
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return result{}, err
	}
	args := []string{"verify", in, "-o", filepath.Join(dir, "out.csv"), "--config", cfg,
		"--resolver", sim.DNSAddr(), "--port", strconv.Itoa(sim.SMTPPort()),
		"--helo", "probe.preflight.test", "--progress", "off", "--no-store"}
	for i := range n {
		args = append(args, "--source-ip", fmt.Sprintf("127.0.0.%d", 101+i))
	}
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	res := result{wall: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		return res, err
	}
	if sim.Connections("mx.list.test") != 0 {
		return res, errors.New("the list's host was contacted: the preflight did not stop the run")
	}
	msg := stderr.String()
	if i := strings.Index(msg, " attempts: "); i >= 0 {
		res.tally = msg[i+len(" attempts: "):]
		if j := strings.IndexByte(res.tally, ')'); j >= 0 {
			res.tally = res.tally[:j]
		}
	} else {
		res.tally = strings.TrimSpace(msg)
	}
	return res, nil
}

// dropSYNs listens on ip:port with a full accept queue that is never
// drained, so that the kernel drops every further SYN to it.
func dropSYNs(ip string, port int) (stop func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	a := net.ParseIP(ip).To4()
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte(a)}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind %s:%d: %w", ip, port, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// One connection fills a queue of backlog 0.
	filler, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("filling the accept queue: %w", err)
	}
	return func() {
		filler.Close()
		syscall.Close(fd)
	}, nil
}

func fmtDur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
