package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"runtime/pprof"
	"sync"
	"sync/atomic"

	socks5 "github.com/armon/go-socks5"

	"github.com/bulkverify/bulkverify/egress"
	"github.com/bulkverify/bulkverify/input"
	"github.com/bulkverify/bulkverify/output"
	"github.com/bulkverify/bulkverify/pipeline"
	"github.com/bulkverify/bulkverify/resolve"
)

// SideProxy labels the CPU samples of the in-process SOCKS5 proxy of the
// BulkSOCKS strategy (see LabelSide).
const SideProxy = "proxy"

// socksProxy is a SOCKS5 server (github.com/armon/go-socks5, no
// authentication) on a free loopback port of this process: the proxy path
// of the BulkSOCKS strategy, for measuring what going through a proxy costs
// bulkverify. It is a benchmark's stand-in for a proxy elsewhere on the
// network: its relaying CPU is counted with the client's.
type socksProxy struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startSOCKSProxy(ctx context.Context) (*socksProxy, error) {
	srv, err := socks5.New(&socks5.Config{Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &socksProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(func() {
		// The proxy's goroutines (and the ones go-socks5 starts to relay)
		// inherit the label.
		pprof.Do(context.WithoutCancel(ctx), pprof.Labels(LabelSide, SideProxy), func(context.Context) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				p.accepted.Add(1)
				p.mu.Lock()
				p.conns[c] = struct{}{}
				p.mu.Unlock()
				p.wg.Go(func() {
					_ = srv.ServeConn(c)
					p.mu.Lock()
					delete(p.conns, c)
					p.mu.Unlock()
				})
			}
		})
	})
	return p, nil
}

// url is the proxy as bulkverify's egress configuration names it.
func (p *socksProxy) url() string { return "socks5://" + p.ln.Addr().String() }

// close stops the proxy and waits for its goroutines.
func (p *socksProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// runBulkSOCKS is runBulk with every connection going through a SOCKS5
// proxy in this process; it returns how many connections the proxy
// accepted.
func runBulkSOCKS(ctx context.Context, w Workload, world World, rows io.Reader, sink output.Writer) (int, error) {
	src, err := input.NewReader(rows, input.Options{})
	if err != nil {
		return 0, fmt.Errorf("input: %w", err)
	}
	p, err := startSOCKSProxy(ctx)
	if err != nil {
		return 0, fmt.Errorf("SOCKS5 proxy: %w", err)
	}
	defer p.close()
	pool, err := egress.New(egress.Config{Proxies: []string{p.url()}})
	if err != nil {
		return 0, err
	}
	r, err := resolve.New(resolve.Config{Servers: []string{world.DNSAddr()}})
	if err != nil {
		return 0, err
	}
	cfg := w.PipelineConfig(world.SMTPPort())
	cfg.Egress = pool
	_, err = pipeline.Run(ctx, cfg, r, src, sink)
	return int(p.accepted.Load()), err
}
