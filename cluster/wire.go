package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Message sizes. NATS refuses a message larger than the server's
// max_payload, 1 MB by default; a unit is kept well under that, so a server
// left at its defaults carries every unit bulkverify makes. An address takes
// about 50 bytes on the wire: 2,000 addresses are about 100 KB.
const (
	// MaxUnitBytes is the largest encoded Unit that Submit publishes.
	MaxUnitBytes = 512 << 10
	// DefaultUnitAddresses is how many addresses a unit holds at most unless
	// configured otherwise (cluster.unit_size).
	DefaultUnitAddresses = 2000
)

// Unit is one piece of work: addresses whose domains share a primary MX
// host, all probed by one worker, through the same connections. A big
// host's addresses are cut into several units (SplitUnit).
type Unit struct {
	Version  int      `json:"v"`
	Job      string   `json:"job"`
	ID       string   `json:"unit"`
	Operator string   `json:"operator,omitempty"` // operator table name of the MX host, "" = none
	MXHosts  []string `json:"mx_hosts"`           // the host the unit is grouped by first, then its domains' other hosts
	Domains  []Domain `json:"domains"`
	// Addresses are the unit's addresses, each once.
	Addresses []Address `json:"addresses"`
}

// Domain is what the coordinator already knows of one of a unit's domains,
// so the worker need not ask again.
type Domain struct {
	Name string `json:"name"` // lower-case A-label form
	// MX are the domain's mail exchangers by preference, as resolved by the
	// coordinator; empty = the worker resolves the domain itself.
	MX       []MX `json:"mx,omitempty"`
	Implicit bool `json:"implicit,omitempty"` // no MX record: MX is the domain's own A/AAAA (RFC 5321 §5.1)
	// CatchAll is the domain's accept-all answer if known (from the store
	// or an earlier unit); nil = not known yet.
	CatchAll *bool `json:"catch_all,omitempty"`
}

// MX is one mail exchanger of a domain.
type MX struct {
	Host       string `json:"host"`
	Preference uint16 `json:"pref"`
}

// Address is one address to probe. Key identifies it within its job: the
// coordinator's handle for it (a row or an index of distinct addresses),
// given back in its Result.
type Address struct {
	Key    uint64 `json:"k"`
	Local  string `json:"l"`
	Domain string `json:"d"`
}

// String is the address as written in RCPT TO.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Result is the verdict for one address of a unit: the facts of
// pipeline.Verdict and output.Result, without the input row.
type Result struct {
	Job          string    `json:"job"`
	Unit         string    `json:"unit"`
	Key          uint64    `json:"k"`
	Status       string    `json:"status"`
	Reason       string    `json:"reason"`
	SMTPCode     int       `json:"smtp_code,omitempty"`
	EnhancedCode string    `json:"enhanced_code,omitempty"`
	Message      string    `json:"message,omitempty"`
	MXHost       string    `json:"mx_host,omitempty"`
	CatchAll     *bool     `json:"catch_all,omitempty"` // nil = not determined
	TLS          *bool     `json:"tls,omitempty"`       // nil = no session answered
	Egress       string    `json:"egress,omitempty"`    // name of the egress that asked (never credentials)
	Provider     string    `json:"provider,omitempty"`  // operator of the MX host that answered
	Attempts     int       `json:"attempts"`
	CheckedAt    time.Time `json:"checked_at"`
}

// resultMsg is results of one unit on the wire, a batch of them (at most
// maxResultBatch), with what the collector needs to tell when its unit is
// complete: one message per address would cost the server, the worker and
// the collector a message's handling (and an acknowledgement) per address.
// It is encoded in binary (encodeResults): results are the bulk of what a
// cluster sends, and JSON's reflection cost more CPU than the rest of
// their way together.
type resultMsg struct {
	Version  int
	UnitSize int    // addresses in the unit
	Host     string // the unit's first MX host, for progress per host
	Results  []Result
}

// Batching of results: a batch goes out when it holds maxResultBatch
// results or resultBatchDelay after its first, whichever comes first, so
// that a result waits little and a slow unit's results are not held back.
const (
	maxResultBatch   = 64
	resultBatchDelay = 20 * time.Millisecond
)

// Errors of the wire and of ids; callers branch on them with errors.Is.
var (
	ErrBadID      = errors.New("cluster: bad id")
	ErrUnitTooBig = errors.New("cluster: unit too big")
	ErrBadUnit    = errors.New("cluster: bad unit")
	ErrBadVersion = errors.New("cluster: unknown wire version")
)

// Check reports whether u can be published: ids that fit in subjects,
// addresses with distinct keys, and at most MaxUnitBytes encoded.
func (u Unit) Check() error {
	if err := checkID("job", u.Job); err != nil {
		return err
	}
	if err := checkID("unit", u.ID); err != nil {
		return err
	}
	if len(u.Addresses) == 0 {
		return fmt.Errorf("%w: unit %s has no addresses", ErrBadUnit, u.ID)
	}
	seen := make(map[uint64]struct{}, len(u.Addresses))
	for _, a := range u.Addresses {
		if _, dup := seen[a.Key]; dup {
			return fmt.Errorf("%w: unit %s: key %d twice", ErrBadUnit, u.ID, a.Key)
		}
		seen[a.Key] = struct{}{}
	}
	return nil
}

// encodeUnit returns u on the wire, or ErrUnitTooBig.
func encodeUnit(u Unit) ([]byte, error) {
	u.Version = WireVersion
	data, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("cluster: encoding unit %s: %w", u.ID, err)
	}
	if len(data) > MaxUnitBytes {
		return nil, fmt.Errorf("%w: unit %s is %d bytes, more than %d: cut it with SplitUnit", ErrUnitTooBig, u.ID, len(data), MaxUnitBytes)
	}
	return data, nil
}

// decodeUnit reads a unit message; a message it cannot read is an error the
// worker terminates the message for, since no redelivery can fix it.
func decodeUnit(data []byte) (Unit, error) {
	var u Unit
	if err := json.Unmarshal(data, &u); err != nil {
		return Unit{}, fmt.Errorf("%w: %v", ErrBadUnit, err)
	}
	if u.Version != WireVersion {
		return Unit{}, fmt.Errorf("%w: unit version %d", ErrBadVersion, u.Version)
	}
	if err := u.Check(); err != nil {
		return Unit{}, err
	}
	return u, nil
}

// Results on the wire: the byte resultsMagic, then uvarint WireVersion,
// uvarint unit size, strings host, job and unit, uvarint count, and each
// result: uvarint key, strings status, reason, uvarint SMTP code, strings
// enhanced code and message, MX host, a byte catch_all and one tls (0 =
// not known, 1 = false, 2 = true), strings egress and provider, uvarint
// attempts, varint checked_at in Unix nanoseconds. A string is a uvarint
// length and its bytes.
const resultsMagic = 'R'

// maxResultText bounds each string of a result read from the wire.
const maxResultText = 4096

func encodeResults(m resultMsg) []byte {
	b := make([]byte, 0, 64+len(m.Results)*96)
	b = append(b, resultsMagic)
	b = binary.AppendUvarint(b, uint64(m.Version))
	b = binary.AppendUvarint(b, uint64(m.UnitSize))
	var job, unit string
	if len(m.Results) > 0 {
		job, unit = m.Results[0].Job, m.Results[0].Unit
	}
	for _, s := range []string{m.Host, job, unit} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Results)))
	for _, r := range m.Results {
		b = binary.AppendUvarint(b, r.Key)
		b = appendString(b, r.Status)
		b = appendString(b, r.Reason)
		b = binary.AppendUvarint(b, uint64(max(r.SMTPCode, 0)))
		b = appendString(b, r.EnhancedCode)
		b = appendString(b, r.Message)
		b = appendString(b, r.MXHost)
		b = append(b, triByte(r.CatchAll), triByte(r.TLS))
		b = appendString(b, r.Egress)
		b = appendString(b, r.Provider)
		b = binary.AppendUvarint(b, uint64(max(r.Attempts, 0)))
		var at int64
		if !r.CheckedAt.IsZero() {
			at = r.CheckedAt.UnixNano()
		}
		b = binary.AppendVarint(b, at)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func triByte(p *bool) byte {
	switch {
	case p == nil:
		return 0
	case *p:
		return 2
	}
	return 1
}

func byteTri(c byte) *bool {
	switch c {
	case 1:
		f := false
		return &f
	case 2:
		t := true
		return &t
	}
	return nil
}

// wireReader reads what encodeResults wrote; the first error sticks.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = cmpErr(r.err, errors.New("short"))
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > maxResultText || n > uint64(len(r.b)) {
		r.err = errors.New("bad string")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func cmpErr(have, next error) error {
	if have != nil {
		return have
	}
	return next
}

func decodeResult(data []byte) (resultMsg, error) {
	if len(data) == 0 || data[0] != resultsMagic {
		return resultMsg{}, fmt.Errorf("%w: result: not a batch of results", ErrBadUnit)
	}
	r := &wireReader{b: data[1:]}
	m := resultMsg{Version: int(r.uvarint())}
	if r.err == nil && m.Version != WireVersion {
		return resultMsg{}, fmt.Errorf("%w: result version %d", ErrBadVersion, m.Version)
	}
	m.UnitSize = int(min(r.uvarint(), 1<<31))
	m.Host = r.str()
	job, unit := r.str(), r.str()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errors.New("bad count")
	}
	if r.err != nil {
		return resultMsg{}, fmt.Errorf("%w: result: %v", ErrBadUnit, r.err)
	}
	m.Results = make([]Result, 0, n)
	for range n {
		res := Result{Job: job, Unit: unit, Key: r.uvarint(), Status: r.str(), Reason: r.str()}
		res.SMTPCode = int(min(r.uvarint(), 999))
		res.EnhancedCode, res.Message, res.MXHost = r.str(), r.str(), r.str()
		res.CatchAll, res.TLS = byteTri(r.byte()), byteTri(r.byte())
		res.Egress, res.Provider = r.str(), r.str()
		res.Attempts = int(min(r.uvarint(), 1<<20))
		if at := r.varint(); at != 0 {
			res.CheckedAt = time.Unix(0, at).UTC()
		}
		if r.err != nil {
			return resultMsg{}, fmt.Errorf("%w: result: %v", ErrBadUnit, r.err)
		}
		m.Results = append(m.Results, res)
	}
	return m, nil
}

// SplitUnit cuts u into units of at most maxAddresses addresses (0 =
// DefaultUnitAddresses) and at most MaxUnitBytes each, keeping each part's
// domains to those its addresses use. A unit that needs no cut is returned
// as it is; parts are named ID-1, ID-2, ... (ids must stay within 64
// characters). Addresses of one domain stay together when they fit.
func SplitUnit(u Unit, maxAddresses int) ([]Unit, error) {
	if maxAddresses <= 0 {
		maxAddresses = DefaultUnitAddresses
	}
	if len(u.Addresses) <= maxAddresses {
		if data, err := encodeUnit(u); err == nil && len(data) <= MaxUnitBytes {
			return []Unit{u}, nil
		}
	}
	var parts []Unit
	var cut func(addrs []Address, limit int) error
	cut = func(addrs []Address, limit int) error {
		for len(addrs) > 0 {
			n := min(limit, len(addrs))
			p := u
			p.ID = u.ID + "-" + strconv.Itoa(len(parts)+1)
			p.Addresses = addrs[:n]
			p.Domains = domainsOf(u.Domains, p.Addresses)
			if err := checkID("unit", p.ID); err != nil {
				return err
			}
			if _, err := encodeUnit(p); errors.Is(err, ErrUnitTooBig) {
				if n == 1 {
					return err
				}
				if err := cut(addrs[:n], n/2); err != nil {
					return err
				}
				addrs = addrs[n:]
				continue
			} else if err != nil {
				return err
			}
			parts = append(parts, p)
			addrs = addrs[n:]
		}
		return nil
	}
	if err := cut(u.Addresses, maxAddresses); err != nil {
		return nil, err
	}
	return parts, nil
}

// domainsOf returns those of domains that addrs use, in domains' order.
func domainsOf(domains []Domain, addrs []Address) []Domain {
	used := make(map[string]bool, 4)
	for _, a := range addrs {
		used[a.Domain] = true
	}
	var out []Domain
	for _, d := range domains {
		if used[d.Name] {
			out = append(out, d)
		}
	}
	return out
}
