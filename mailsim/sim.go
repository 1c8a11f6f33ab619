package mailsim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// Options are the listening and timing settings of a Sim.
type Options struct {
	SMTPPort int    // 0 = choose a free port that is free on every host IP
	DNSAddr  string // "" = "127.0.0.1:0"

	// RTT injects network latency, for benchmarks: every SMTP write (banner,
	// replies, TLS handshake, hostile output) reaches the client RTT after
	// the server made it, i.e. RTT after the client bytes that caused it
	// plus the server's own time (RcptDelay, BannerDelay), and every DNS
	// answer is sent RTT after its query arrived. Replies written together
	// arrive together, so pipelining saves round trips as on a real network.
	// DNS queries pipelined on one TCP connection are answered one by one.
	RTT time.Duration
	// RecordRecipients makes every host remember, for each recipient
	// address it was asked about (RCPT TO, as the client wrote it,
	// lower-cased), how many times and from which client address; see
	// Sim.RecipientClients. Off by default: it costs memory per address. At
	// most 65536 distinct recipients are kept per host.
	RecordRecipients bool
	// Now is the clock of greylisting (Domain.Greylist), so that tests can
	// move time forward; nil means time.Now. Everything else uses real time.
	Now func() time.Time
}

// Sim is a running simulated world. Its counters are safe for concurrent use
// and remain readable after Close.
type Sim struct {
	dnsAddr  string
	smtpPort int

	hosts map[string]*hostState // by normalized host name
	dnsC  dnsCounter
	conc  concurrency
	certs *x509.CertPool // nil when no host offers STARTTLS

	closing   chan struct{} // closed first by Close, wakes RCPT delays
	closeOnce sync.Once
	closeErr  error

	dnsServers []*dns.Server
	smtp       []smtpRunning
	wg         sync.WaitGroup // every goroutine Start launched

	errMu    sync.Mutex
	serveErr error // first unexpected serve error, reported by Close
}

type smtpRunning struct {
	srv *smtp.Server // nil for a hostile host
	l   *trackingListener
}

// dnsStartAttempts bounds the retries when the UDP port is taken on TCP.
const dnsStartAttempts = 10

// Start validates w and brings up its DNS and SMTP servers. ctx bounds the
// start-up only; the Sim runs until Close. A World that is inconsistent
// (unknown MX host, non-loopback or duplicate host IP, ...) yields an error
// wrapping ErrInvalidWorld.
func Start(ctx context.Context, w World, opts Options) (*Sim, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := buildModel(w)
	if err != nil {
		return nil, err
	}
	if opts.SMTPPort < 0 || opts.SMTPPort > 65535 {
		return nil, fmt.Errorf("mailsim: SMTP port %d out of range", opts.SMTPPort)
	}
	if opts.RTT < 0 {
		return nil, fmt.Errorf("mailsim: negative RTT %v", opts.RTT)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	tlsConf, certs, err := newTLSConfig(m.hosts)
	if err != nil {
		return nil, err
	}
	s := &Sim{
		hosts:   make(map[string]*hostState, len(m.hosts)),
		dnsC:    dnsCounter{counts: make(map[dnsKey]int)},
		certs:   certs,
		closing: make(chan struct{}),
	}
	for _, h := range m.hosts {
		s.hosts[h.name] = newHostState(h.name)
	}

	listeners, port, err := listenCommonPort(m.hosts, opts.SMTPPort)
	if err != nil {
		return nil, err
	}
	s.smtpPort = port
	env := connEnv{rtt: opts.RTT, closing: s.closing, conc: &s.conc, wg: &s.wg}
	grey := &greylist{first: make(map[greyKey]time.Time)}
	for i, h := range m.hosts {
		if listeners[i] == nil {
			continue
		}
		tl := &trackingListener{Listener: listeners[i], host: s.hosts[h.name], env: env, conns: make(map[*hostConn]struct{})}
		if h.hostile != "" {
			s.smtp = append(s.smtp, smtpRunning{l: tl})
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveHostile(tl, h.name, h.hostile)
			}()
			continue
		}
		sl := smtpListener{trackingListener: tl, host: h}
		if h.startTLS {
			sl.tlsConf = tlsConf
		}
		srv := newSMTPServer(&backend{host: h, m: m, closing: s.closing, grey: grey, now: now,
			st: s.hosts[h.name], recipients: opts.RecordRecipients})
		s.smtp = append(s.smtp, smtpRunning{srv: srv, l: tl})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.noteServeErr(srv.Serve(sl))
		}()
	}

	if err := s.startDNS(newZone(m), opts.DNSAddr, opts.RTT); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sim) noteServeErr(err error) {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	s.errMu.Lock()
	if s.serveErr == nil {
		s.serveErr = err
	}
	s.errMu.Unlock()
}

func (s *Sim) startDNS(z *zone, addr string, rtt time.Duration) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("mailsim: DNS address %q: %w", addr, err)
	}
	auto := port == "0"

	var (
		pc net.PacketConn
		tl net.Listener
	)
	for attempt := 1; ; attempt++ {
		pc, err = net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("mailsim: DNS listen UDP %s: %w", addr, err)
		}
		ua := pc.LocalAddr().(*net.UDPAddr)
		tl, err = net.Listen("tcp", net.JoinHostPort(ua.IP.String(), strconv.Itoa(ua.Port)))
		if err == nil {
			s.dnsAddr = pc.LocalAddr().String()
			break
		}
		_ = pc.Close()
		if !auto || attempt == dnsStartAttempts {
			return fmt.Errorf("mailsim: DNS listen TCP on the UDP port %d: %w", ua.Port, err)
		}
	}

	h := dnsHandler(z, &s.dnsC, rtt, s.closing)
	started := make(chan struct{}, 2)
	failed := make(chan error, 2)
	notify := func() { started <- struct{}{} }
	s.dnsServers = []*dns.Server{
		{PacketConn: pc, Handler: h, NotifyStartedFunc: notify},
		{Listener: tl, Handler: h, NotifyStartedFunc: notify},
	}
	for _, srv := range s.dnsServers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := srv.ActivateAndServe()
			s.noteServeErr(err) // reported by Close if it happens after start
			failed <- err       // buffered for both servers: never blocks
		}()
	}
	// Not bounded by ctx on purpose: a server that was asked to start either
	// notifies or returns at once, and one left half-started could not be
	// shut down.
	for n := 0; n < len(s.dnsServers); {
		select {
		case <-started:
			n++
		case err := <-failed:
			if err == nil {
				err = errors.New("stopped before it started")
			}
			return fmt.Errorf("mailsim: DNS server did not start: %w", err)
		}
	}
	return nil
}

// DNSAddr is the "127.0.0.1:port" address serving the zone over UDP and TCP.
func (s *Sim) DNSAddr() string { return s.dnsAddr }

// SMTPPort is the port every listening host accepts SMTP on.
func (s *Sim) SMTPPort() int { return s.smtpPort }

// Close stops every server, closes open client connections, and returns once
// all goroutines started by Start have ended. It is safe to call more than once.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		var errs []error
		// Stop accepting first, so that no connection can appear after the
		// open ones are closed below.
		for _, r := range s.smtp {
			if err := r.l.Listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for _, r := range s.smtp {
			r.l.closeConns()
		}
		for _, r := range s.smtp {
			if r.srv == nil {
				continue // hostile: its goroutines are in s.wg
			}
			// Shutdown waits for the connection handlers; their connections
			// are closed, so they end promptly.
			if err := r.srv.Shutdown(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for _, srv := range s.dnsServers {
			// A server that failed to start reports "server not started";
			// Start already returned that failure.
			_ = srv.ShutdownContext(context.Background())
		}
		s.wg.Wait()
		s.errMu.Lock()
		if s.serveErr != nil {
			errs = append(errs, s.serveErr)
		}
		s.errMu.Unlock()
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("mailsim: close: %w", errors.Join(errs...))
		}
	})
	return s.closeErr
}

// Connections is the number of SMTP connections the named host has accepted
// so far. A connection is counted before its greeting is sent.
func (s *Sim) Connections(host string) int {
	if h := s.hosts[normName(host)]; h != nil {
		return int(h.conns.Load())
	}
	return 0
}

// ConnectionsFrom is the number of SMTP connections the named host has
// accepted from the client address ip ("127.0.0.5"), so tests can tell which
// source address or proxy a session came from.
func (s *Sim) ConnectionsFrom(host, ip string) int {
	h := s.hosts[normName(host)]
	a, err := netip.ParseAddr(ip)
	if h == nil || err != nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients[a.Unmap()]
}

// TotalConnections is the number of SMTP connections accepted by all hosts.
func (s *Sim) TotalConnections() int {
	n := 0
	for _, h := range s.hosts {
		n += int(h.conns.Load())
	}
	return n
}

// Commands is the number of command lines with the given verb ("EHLO",
// "RCPT", "DATA", ...) the named host has read from its clients, counted from
// the raw byte stream before the server answers them. Lines of a DATA body
// (after the server's 354) and BDAT chunk bytes are not commands.
func (s *Sim) Commands(host, verb string) int {
	if h := s.hosts[normName(host)]; h != nil {
		return h.commands(strings.ToUpper(verb))
	}
	return 0
}

// TotalCommands is Commands summed over all hosts.
func (s *Sim) TotalCommands(verb string) int {
	verb = strings.ToUpper(verb)
	n := 0
	for _, h := range s.hosts {
		n += h.commands(verb)
	}
	return n
}

// DNSQueries is the number of queries received for name (any case, with or
// without the trailing dot) and qtype.
func (s *Sim) DNSQueries(name string, qtype uint16) int {
	key := dnsKey{strings.ToLower(dns.Fqdn(strings.TrimSpace(name))), qtype}
	s.dnsC.mu.Lock()
	defer s.dnsC.mu.Unlock()
	return s.dnsC.counts[key]
}

// TotalDNSQueries is the number of queries received, all names and types.
func (s *Sim) TotalDNSQueries() int {
	s.dnsC.mu.Lock()
	defer s.dnsC.mu.Unlock()
	return s.dnsC.total
}

// CommandTimes is when each command with the given verb reached the named
// host, in arrival order: the time of the read that completed its line (real
// time, not Options.Now). Commands pipelined in one read share a time. At most
// the first 65536 per host and verb are kept.
func (s *Sim) CommandTimes(host, verb string) []time.Time {
	h := s.hosts[normName(host)]
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.times[strings.ToUpper(verb)])
}

// Turns is the number of times a client of the named host sent bytes after
// the server had written since that client's previous bytes, summed over
// connections: the client's turns in the conversation, counted per read at
// the server. A banner then one EHLO is one turn; a pipelined MAIL and fifty
// RCPT that arrive in one read are one more; the same commands sent
// lock-step are fifty-one. TLS handshake bytes are not counted, and neither
// is anything sent to a hostile host.
func (s *Sim) Turns(host string) int {
	if h := s.hosts[normName(host)]; h != nil {
		return int(h.turns.Load())
	}
	return 0
}

// TLSSessions is the number of STARTTLS handshakes the named host completed.
func (s *Sim) TLSSessions(host string) int {
	if h := s.hosts[normName(host)]; h != nil {
		return int(h.tlsSessions.Load())
	}
	return 0
}

// MaxConcurrent is the highest number of connections the named host had open
// at once. A connection is open from its accept until the server's side of it
// is closed.
func (s *Sim) MaxConcurrent(host string) int {
	h := s.hosts[normName(host)]
	if h == nil {
		return 0
	}
	s.conc.mu.Lock()
	defer s.conc.mu.Unlock()
	return h.maxOpen
}

// RecipientClients is how many RCPT TO commands for recipient (compared
// without regard to case) the named host has read, by client address
// ("127.0.0.5" -> 2): which source addresses or proxies asked about an
// address, and how often. It needs Options.RecordRecipients; without it,
// or for a recipient never asked, it is empty.
func (s *Sim) RecipientClients(host, recipient string) map[string]int {
	h := s.hosts[normName(host)]
	if h == nil {
		return map[string]int{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.rcpts[strings.ToLower(recipient)])
}

// WatchConcurrency starts counting the connections open at once to the
// named hosts taken together, as one operator's fleet of host names sees
// a client: the returned watch's Max is the highest such count from now
// on. Names of hosts the world does not have count nothing.
func (s *Sim) WatchConcurrency(hosts ...string) *ConcurrencyWatch {
	w := &ConcurrencyWatch{c: &s.conc, hosts: map[*hostState]bool{}}
	for _, name := range hosts {
		if h := s.hosts[normName(name)]; h != nil {
			w.hosts[h] = true
		}
	}
	s.conc.mu.Lock()
	defer s.conc.mu.Unlock()
	for h := range w.hosts {
		w.open += h.open
	}
	w.maxOpen = w.open
	s.conc.watches = append(s.conc.watches, w)
	return w
}

// ConcurrencyWatch counts the connections open at once to a set of hosts
// (Sim.WatchConcurrency). Its methods are safe for concurrent use.
type ConcurrencyWatch struct {
	c     *concurrency
	hosts map[*hostState]bool // read-only after creation
	// open and maxOpen are guarded by c.mu.
	open, maxOpen int
}

// Max is the highest number of connections open at once to the watched
// hosts together since the watch began.
func (w *ConcurrencyWatch) Max() int {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.maxOpen
}

// Open is the number of connections open to the watched hosts now.
func (w *ConcurrencyWatch) Open() int {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.open
}

// MaxConcurrentTotal is the highest number of SMTP connections open at once
// over all hosts.
func (s *Sim) MaxConcurrentTotal() int {
	s.conc.mu.Lock()
	defer s.conc.mu.Unlock()
	return s.conc.maxOpen
}

// CertPool holds the self-signed certificate that STARTTLS hosts present
// (one for the whole Sim, naming every such host and its IP), for clients
// that want to verify it; nil when no host offers STARTTLS.
func (s *Sim) CertPool() *x509.CertPool { return s.certs }
