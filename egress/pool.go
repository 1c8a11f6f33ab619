package egress

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Pool. The zero value is usable: one direct egress from
// the system's source address, with the defaults documented on each field.
type Config struct {
	// SourceIPs are local addresses to send from, one direct egress each.
	SourceIPs []string
	// Proxies are SOCKS5 proxies, one egress each:
	// "socks5://[user[:password]@]host:port". A user or password written
	// exactly "${NAME}" is read from the environment variable NAME, so a
	// config file need not hold the secret; otherwise it is percent-decoded.
	// The proxy's own host name is resolved by the system when dialing it;
	// targets are always given to it as addresses.
	Proxies []string
	// FailureThreshold is how many egress failures in a row (*ProxyError,
	// *BindError) take an egress out of rotation, default 3.
	FailureThreshold int
	// CoolDown is how long an egress stays out of rotation the first time,
	// default 30s. It doubles each time the egress fails again right after
	// coming back, up to MaxCoolDown (default 10m); a successful connection
	// resets it.
	CoolDown    time.Duration
	MaxCoolDown time.Duration
	// Now is the clock of cool-downs and refusals; nil means time.Now.
	Now func() time.Time
	// LookupEnv resolves "${NAME}" credentials; nil means none may be used
	// (the CLI passes os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

const (
	defaultFailureThreshold = 3
	defaultCoolDown         = 30 * time.Second
	defaultMaxCoolDown      = 10 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = defaultFailureThreshold
	}
	if c.CoolDown <= 0 {
		c.CoolDown = defaultCoolDown
	}
	if c.MaxCoolDown <= 0 {
		c.MaxCoolDown = defaultMaxCoolDown
	}
	c.MaxCoolDown = max(c.MaxCoolDown, c.CoolDown)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Pool is the set of egresses of a run and their health. It is safe for
// concurrent use.
//
// Invariant: state[i] is the health of egresses[i]. An egress is out of
// rotation while now is before its downUntil, or for the rest of the run once
// disabled. consecutive counts egress failures since its last successful
// connection; a failure that brings it to FailureThreshold or beyond while the
// egress is in rotation starts a cool-down of CoolDown << trips (capped), and
// trips counts those cool-downs since the last success. refused[operator]
// entries are only ever added: a refused egress stays refused for the run.
type Pool struct {
	cfg      Config
	egresses []*Egress

	mu    sync.Mutex
	state []egressState
	next  int // rotation cursor: the index Pick tries first
}

type egressState struct {
	dials, connected         int64
	egressFails, targetFails int64
	consecutive              int
	trips                    int
	downUntil                time.Time
	disabled                 string // why, when disabled for the run
	bound                    netip.Addr
	refused                  map[string]Refusal
}

// New checks cfg and builds the pool. It touches no network.
func New(cfg Config) (*Pool, error) {
	cfg = cfg.withDefaults()
	if cfg.CoolDown < 0 || cfg.FailureThreshold < 0 {
		return nil, fmt.Errorf("egress: negative threshold or cool-down")
	}
	p := &Pool{cfg: cfg}
	seen := map[string]int{}
	add := func(e *Egress) {
		seen[e.name]++
		if n := seen[e.name]; n > 1 {
			e.name += "#" + strconv.Itoa(n)
		}
		e.index = len(p.egresses)
		e.pool = p
		p.egresses = append(p.egresses, e)
	}
	for _, s := range cfg.SourceIPs {
		a, err := parseSource(s)
		if err != nil {
			return nil, err
		}
		if seen[a.String()] > 0 {
			return nil, fmt.Errorf("egress: source address %s given twice", a)
		}
		add(&Egress{name: a.String(), kind: Direct, source: a})
	}
	for _, raw := range cfg.Proxies {
		hostport, auth, err := parseProxy(raw, cfg.LookupEnv)
		if err != nil {
			return nil, err
		}
		add(&Egress{name: "socks5://" + hostport, kind: SOCKS5, proxyAddr: hostport, auth: auth})
	}
	if len(p.egresses) == 0 {
		add(&Egress{name: DirectName, kind: Direct})
	}
	p.state = make([]egressState, len(p.egresses))
	return p, nil
}

// Egresses returns every egress of the pool, in configuration order (source
// addresses, then proxies).
func (p *Pool) Egresses() []*Egress { return slices.Clone(p.egresses) }

// Lookup returns the egress with the given name, or nil.
func (p *Pool) Lookup(name string) *Egress {
	for _, e := range p.egresses {
		if e.name == name {
			return e
		}
	}
	return nil
}

// Pick chooses the egress for the next connection to operator's hosts:
// the next one in rotation that is neither cooling down, disabled, nor
// refused by operator. When every egress that is not disabled has been
// refused by operator it returns a *RefusedError (do not ask that operator
// from anywhere); when the others are cooling down or disabled, an
// *UnavailableError. operator "" is nobody: no refusal applies.
func (p *Pool) Pick(operator string) (*Egress, error) {
	operator = strings.ToLower(operator)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	var (
		refusals []Refusal
		waiting  []string
		until    time.Time
	)
	n := len(p.egresses)
	for i := range n {
		j := (p.next + i) % n
		st := &p.state[j]
		switch r, isRefused := st.refused[operator]; {
		case st.disabled != "":
		case isRefused:
			refusals = append(refusals, r)
		case now.Before(st.downUntil):
			waiting = append(waiting, p.egresses[j].name+" (cooling down)")
			if until.IsZero() || st.downUntil.Before(until) {
				until = st.downUntil
			}
		default:
			p.next = (j + 1) % n
			return p.egresses[j], nil
		}
	}
	if len(waiting) == 0 && len(refusals) > 0 {
		slices.SortFunc(refusals, func(a, b Refusal) int {
			return cmp.Compare(p.Lookup(a.Egress).index, p.Lookup(b.Egress).index)
		})
		return nil, &RefusedError{Operator: operator, Refusals: refusals}
	}
	for i, st := range p.state {
		if st.disabled != "" {
			waiting = append(waiting, p.egresses[i].name+" (disabled: "+st.disabled+")")
		}
	}
	return nil, &UnavailableError{Until: until, Egresses: waiting}
}

// Dial picks an egress for nobody in particular (operator "") and dials
// addr through it; it has probe.Config.Dial's signature, for callers that
// need neither operators nor to know the egress (the probe command).
func (p *Pool) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	e, err := p.Pick("")
	if err != nil {
		return nil, err
	}
	return e.DialContext(ctx, network, addr)
}

// Refused records that operator refused e (its reply said our address is
// blocked): Pick never returns e for operator again in this run. It returns
// true the first time this pair is recorded, so the caller can say so loudly
// once. The first reason is kept.
func (p *Pool) Refused(e *Egress, operator, reason string) (first bool) {
	operator = strings.ToLower(operator)
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &p.state[e.index]
	if _, ok := st.refused[operator]; ok {
		return false
	}
	if st.refused == nil {
		st.refused = map[string]Refusal{}
	}
	st.refused[operator] = Refusal{Egress: e.name, Operator: operator, Reason: reason, At: p.cfg.Now()}
	return true
}

// IsRefused reports whether operator has refused e in this run.
func (p *Pool) IsRefused(e *Egress, operator string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.state[e.index].refused[strings.ToLower(operator)]
	return ok
}

// Refusals returns every refusal recorded, by egress in pool order, then
// by operator.
func (p *Pool) Refusals() []Refusal {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Refusal
	for _, st := range p.state {
		out = append(out, sortedRefusals(st.refused)...)
	}
	return out
}

// Disable takes e out of rotation for the rest of the run (for instance when
// the port-25 preflight found it reaches nothing); reason is shown in Stats
// and errors.
func (p *Pool) Disable(e *Egress, reason string) {
	if reason == "" {
		reason = "disabled"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state[e.index].disabled = reason
}

// State is where an egress stands in rotation.
type State string

const (
	StateUsable      State = "usable"
	StateCoolingDown State = "cooling_down"
	StateDisabled    State = "disabled"
)

// EgressStats is a snapshot of one egress's health.
type EgressStats struct {
	Name  string
	Kind  Kind
	State State
	// Until is when the cool-down ends (StateCoolingDown only).
	Until time.Time
	// Reason is why the egress is disabled (StateDisabled only).
	Reason string
	// Dials counts connection attempts; Connected those that succeeded;
	// EgressFailures those that failed because of the egress (proxy or
	// source address); TargetFailures those where the target refused or did
	// not answer. Attempts the caller abandoned are in Dials only.
	Dials, Connected, EgressFailures, TargetFailures int64
	// ConsecutiveFailures counts egress failures since the last success.
	ConsecutiveFailures int
	// CoolDowns counts the times the egress was taken out of rotation since
	// its last success.
	CoolDowns int
	// BoundAddr is the address a proxy last reported binding for us (its
	// outgoing address, often its public one); invalid when unknown.
	BoundAddr netip.Addr
	Refusals  []Refusal // by operator
}

// Stats returns a snapshot of every egress, in pool order.
func (p *Pool) Stats() []EgressStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	out := make([]EgressStats, len(p.egresses))
	for i, e := range p.egresses {
		st := p.state[i]
		s := EgressStats{
			Name: e.name, Kind: e.kind, State: StateUsable,
			Dials: st.dials, Connected: st.connected,
			EgressFailures: st.egressFails, TargetFailures: st.targetFails,
			ConsecutiveFailures: st.consecutive, CoolDowns: st.trips,
			BoundAddr: st.bound, Refusals: sortedRefusals(st.refused),
		}
		switch {
		case st.disabled != "":
			s.State, s.Reason = StateDisabled, st.disabled
		case now.Before(st.downUntil):
			s.State, s.Until = StateCoolingDown, st.downUntil
		}
		out[i] = s
	}
	return out
}

func sortedRefusals(m map[string]Refusal) []Refusal {
	out := make([]Refusal, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Refusal) int { return strings.Compare(a.Operator, b.Operator) })
	if len(out) == 0 {
		return nil
	}
	return out
}

type outcome int

const (
	outcomeConnected outcome = iota
	outcomeEgressFailed
	outcomeTargetFailed
	outcomeAbandoned // the caller's context was cancelled: no verdict
)

func (p *Pool) dialing(e *Egress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state[e.index].dials++
}

func (p *Pool) record(e *Egress, o outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &p.state[e.index]
	switch o {
	case outcomeConnected:
		st.connected++
		// A success resets the failure history, but does not end a
		// cool-down in progress: the dial may have started before it.
		st.consecutive, st.trips = 0, 0
	case outcomeTargetFailed:
		st.targetFails++
		// The egress worked (the proxy answered, the address was bound).
		st.consecutive = 0
	case outcomeEgressFailed:
		st.egressFails++
		st.consecutive++
		now := p.cfg.Now()
		// Failures of dials that started before a cool-down must not
		// extend or double it.
		if st.consecutive >= p.cfg.FailureThreshold && !now.Before(st.downUntil) {
			d := p.cfg.CoolDown
			for range st.trips {
				if d >= p.cfg.MaxCoolDown {
					break
				}
				d *= 2
			}
			st.downUntil = now.Add(min(d, p.cfg.MaxCoolDown))
			st.trips++
		}
	}
}

func (p *Pool) recordBound(e *Egress, bound netip.Addr) {
	p.mu.Lock()
	if bound.IsValid() && !bound.IsUnspecified() {
		p.state[e.index].bound = bound
	}
	p.mu.Unlock()
	p.record(e, outcomeConnected)
}
