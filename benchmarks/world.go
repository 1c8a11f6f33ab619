package benchmarks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/bulkverify/bulkverify/mailsim"
)

// World is a running simulated world as a run sees it: where to reach it,
// and its counters. It may run in this process (InProcess) or in another
// one (ServeWorld / RemoteWorld), so that the world's CPU time and memory
// do not count as the strategy's.
type World interface {
	DNSAddr() string
	SMTPPort() int
	// Begin is called just before the strategy starts.
	Begin() error
	// Counts is called just after the strategy ends.
	Counts() (Counts, error)
}

// Counts is what the simulated servers counted, plus, for a world in a
// process of its own, that process's CPU time and peak RSS since Begin.
type Counts struct {
	Connections int            `json:"connections"`
	ByVerb      map[string]int `json:"by_verb"` // SMTP commands by verb, verbs of SMTPVerbs that occurred
	DNSQueries  int            `json:"dns_queries"`
	// MaxSessions is the most SMTP connections open at once to the
	// world's hosts together since Begin, as the servers saw them.
	MaxSessions int           `json:"max_sessions"`
	CPU         time.Duration `json:"cpu_ns"`
	PeakRSS     uint64        `json:"peak_rss"`
	// FirstRCPTAt and LastRCPTAt are when the first and the last RCPT since
	// Begin reached a host (zero when none did): the probing's span as
	// the servers saw it, for a run's timeline.
	FirstRCPTAt time.Time `json:"first_rcpt_at"`
	LastRCPTAt  time.Time `json:"last_rcpt_at"`
}

// StartWorld starts the workload's world in this process, with the
// workload's RTT. Its goroutines carry the profile label side=mailsim.
func StartWorld(ctx context.Context, w Workload) (*mailsim.Sim, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	var (
		sim *mailsim.Sim
		err error
	)
	pprof.Do(ctx, pprof.Labels(LabelSide, SideMailsim), func(ctx context.Context) {
		sim, err = mailsim.Start(ctx, w.World(), mailsim.Options{RTT: w.RTT})
	})
	if err != nil {
		return nil, fmt.Errorf("benchmarks: starting the world: %w", err)
	}
	return sim, nil
}

// CountsOf reads a Sim's counters.
func CountsOf(sim *mailsim.Sim) Counts {
	c := Counts{Connections: sim.TotalConnections(), DNSQueries: sim.TotalDNSQueries(), ByVerb: map[string]int{}}
	for _, v := range SMTPVerbs() {
		if n := sim.TotalCommands(v); n > 0 {
			c.ByVerb[v] = n
		}
	}
	return c
}

// rcptSpan is when the first and the last RCPT after since reached one of
// the workload's hosts. mailsim keeps the first 65536 arrival times per
// host: a world that serves very many runs stops seeing its busiest hosts.
func rcptSpan(sim *mailsim.Sim, hosts int, since time.Time) (first, last time.Time) {
	for k := range hosts {
		for _, t := range sim.CommandTimes(HostName(k), "RCPT") {
			if t.Before(since) {
				continue
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
	}
	return first, last
}

// watchAll starts counting the connections open at once to all of the
// workload's hosts together.
func watchAll(sim *mailsim.Sim, hosts int) *mailsim.ConcurrencyWatch {
	names := make([]string, hosts)
	for k := range names {
		names[k] = HostName(k)
	}
	return sim.WatchConcurrency(names...)
}

// InProcess is the World of a Sim of w in this process.
func InProcess(sim *mailsim.Sim, w Workload) World { return &inProcess{sim: sim, hosts: w.Hosts} }

type inProcess struct {
	sim   *mailsim.Sim
	hosts int
	watch *mailsim.ConcurrencyWatch
	begun time.Time
}

func (p *inProcess) DNSAddr() string { return p.sim.DNSAddr() }
func (p *inProcess) SMTPPort() int   { return p.sim.SMTPPort() }
func (p *inProcess) Begin() error {
	p.watch = watchAll(p.sim, p.hosts)
	p.begun = time.Now()
	return nil
}
func (p *inProcess) Counts() (Counts, error) {
	c := CountsOf(p.sim)
	if p.watch != nil {
		c.MaxSessions = p.watch.Max()
		c.FirstRCPTAt, c.LastRCPTAt = rcptSpan(p.sim, p.hosts, p.begun)
	}
	return c, nil
}

// The line protocol between RemoteWorld (in the process that runs the
// strategy) and ServeWorld (in the world's process), one JSON value or word
// per line:
//
//	server: {"dns_addr": ..., "smtp_port": ...}
//	client: begin            server: ok
//	client: counts           server: {Counts}
//	client: end of input     server closes the world and returns
const (
	cmdBegin  = "begin"
	cmdCounts = "counts"
	replyOK   = "ok"
	// maxProtocolLine bounds a line of the protocol; Counts is far smaller.
	maxProtocolLine = 1 << 20
)

type endpoint struct {
	DNSAddr  string `json:"dns_addr"`
	SMTPPort int    `json:"smtp_port"`
}

// ErrProtocol is wrapped by errors about the world-process protocol.
var ErrProtocol = errors.New("benchmarks: world protocol")

// ServeWorld starts the workload's world and serves it to one RemoteWorld
// over in and out until in ends (or ctx does), then closes the world.
func ServeWorld(ctx context.Context, w Workload, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the reader goroutine, unless it is blocked reading in
	sim, err := StartWorld(ctx, w)
	if err != nil {
		return err
	}
	defer sim.Close()
	enc := json.NewEncoder(out)
	if err := enc.Encode(endpoint{DNSAddr: sim.DNSAddr(), SMTPPort: sim.SMTPPort()}); err != nil {
		return err
	}
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 4096), maxProtocolLine)
		for sc.Scan() {
			select {
			case lines <- strings.TrimSpace(sc.Text()):
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
		readErr <- sc.Err()
	}()
	var cpu0 time.Duration
	var watch *mailsim.ConcurrencyWatch
	var begun time.Time
	for {
		var line string
		select {
		case line = <-lines:
		case err := <-readErr:
			if err != nil {
				return fmt.Errorf("%w: reading: %w", ErrProtocol, err)
			}
			return sim.Close()
		case <-ctx.Done():
			return ctx.Err()
		}
		switch line {
		case cmdBegin:
			resetPeakRSS()
			cpu0 = cpuTime()
			watch = watchAll(sim, w.Hosts)
			begun = time.Now()
			_, err = io.WriteString(out, replyOK+"\n")
		case cmdCounts:
			c := CountsOf(sim)
			c.CPU, c.PeakRSS = cpuTime()-cpu0, procStatus("VmHWM")
			if watch != nil {
				c.MaxSessions = watch.Max()
				c.FirstRCPTAt, c.LastRCPTAt = rcptSpan(sim, w.Hosts, begun)
			}
			err = enc.Encode(c)
		default:
			err = fmt.Errorf("%w: unknown command %q", ErrProtocol, line)
		}
		if err != nil {
			return err
		}
	}
}

// RemoteWorld is the World served by ServeWorld at the other end of r (its
// output) and w (its input). It reads the world's address at once.
func RemoteWorld(r io.Reader, w io.Writer) (World, error) {
	rw := &remote{in: bufio.NewReaderSize(r, 4096), out: w}
	var ep endpoint
	if err := rw.readJSON(&ep); err != nil {
		return nil, err
	}
	if ep.DNSAddr == "" || ep.SMTPPort <= 0 {
		return nil, fmt.Errorf("%w: bad endpoint %+v", ErrProtocol, ep)
	}
	rw.ep = ep
	return rw, nil
}

type remote struct {
	in  *bufio.Reader
	out io.Writer
	ep  endpoint
}

func (rw *remote) DNSAddr() string { return rw.ep.DNSAddr }
func (rw *remote) SMTPPort() int   { return rw.ep.SMTPPort }

func (rw *remote) Begin() error {
	if _, err := io.WriteString(rw.out, cmdBegin+"\n"); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	line, err := rw.line()
	if err != nil {
		return err
	}
	if line != replyOK {
		return fmt.Errorf("%w: begin answered %q", ErrProtocol, line)
	}
	return nil
}

func (rw *remote) Counts() (Counts, error) {
	if _, err := io.WriteString(rw.out, cmdCounts+"\n"); err != nil {
		return Counts{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	var c Counts
	err := rw.readJSON(&c)
	return c, err
}

func (rw *remote) line() (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := rw.in.ReadLine()
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		b = append(b, chunk...)
		if len(b) > maxProtocolLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxProtocolLine)
		}
		if !isPrefix {
			return strings.TrimSpace(string(b)), nil
		}
	}
}

func (rw *remote) readJSON(v any) error {
	line, err := rw.line()
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return nil
}
