package store

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Tri is a yes/no answer that may not be known.
type Tri uint8

// Tri values. The zero value is TriUnknown.
const (
	TriUnknown Tri = iota
	TriYes
	TriNo
)

// TriOf converts the *bool convention of output.Result (nil = not known).
func TriOf(b *bool) Tri {
	switch {
	case b == nil:
		return TriUnknown
	case *b:
		return TriYes
	default:
		return TriNo
	}
}

// Bool returns t as output.Result's *bool (nil when unknown).
func (t Tri) Bool() *bool {
	switch t {
	case TriYes:
		v := true
		return &v
	case TriNo:
		v := false
		return &v
	default:
		return nil
	}
}

func (t Tri) String() string {
	switch t {
	case TriYes:
		return "true"
	case TriNo:
		return "false"
	default:
		return ""
	}
}

// Verdict is what the store remembers about one address in one namespace.
// Address, Domain and Namespace form its key; the pipeline passes them
// normalised (lower-case A-label domain), and the store compares bytes.
type Verdict struct {
	Namespace    string // "" on Put means DefaultNamespace
	Address      string // the normalised address that was probed
	Domain       string // "" on Put means the part of Address after its last "@"
	Status       string // output.Status* word
	Reason       string // pipeline reason word
	SMTPCode     int
	EnhancedCode string
	Message      string // server text, already sanitised by the caller; cut to MaxMessageBytes
	MXHost       string
	CatchAll     Tri
	TLS          Tri
	Egress       string // name of the egress the answer came through ("" = direct)
	Attempts     int
	CheckedAt    time.Time // stored with second precision, UTC
}

// Bounds on stored text, in bytes: the store is not where untrusted server
// text gets to grow, whatever the caller passes.
const (
	MaxMessageBytes = 512
	maxShortBytes   = 255 // status, reason, enhanced code, host and egress names
	maxKeyPartBytes = 320 // an address is at most 254 octets (RFC 5321 §4.5.3.1.3); some slack for raw input
)

// DomainInfo is what the store remembers about a domain: the answer of the
// catch-all check. It is shared by all namespaces (see doc.go).
type DomainInfo struct {
	Domain     string
	CatchAll   Tri       // TriYes: the domain accepted a local part that cannot exist
	CatchAllMX string    // the MX host that answered the check
	CatchAllAt time.Time // when it answered; zero = nothing known
}

// MXInfo is what the store remembers about one MX host: what was learnt
// about its limits and behaviour, each fact with its time (zero = not known).
// It is shared by all namespaces (see doc.go).
type MXInfo struct {
	Host string

	// Recipient limits learnt from the host's pushback (0 = none learnt).
	RcptPerTransaction int
	RcptPerConnection  int
	LimitsAt           time.Time

	StartTLS   Tri // whether the host offered STARTTLS
	StartTLSAt time.Time

	GreylistedAt time.Time // last time the host greylisted us

	// Refusals of our own address: each is recorded against the egress that
	// was refused, so that it binds that egress only, never all of them.
	Refusals []Refusal
}

// Refusal is a policy block of one egress by an MX host.
type Refusal struct {
	Egress   string // our egress that was refused ("" = direct)
	Operator string // the provider that runs the host, when known
	Reply    string // the server's reply text, sanitised by the caller; cut to MaxMessageBytes
	At       time.Time
}

// maxRefusals bounds the refusals kept per MX host: the newest win.
const maxRefusals = 32

// Encoding of a verdict value (schema 1). The key is
// namespace \x00 domain \x00 address; the value is:
//
//	checked_at   8 bytes, big-endian Unix seconds (first, so retention reads it without decoding)
//	tri          1 byte: catch_all | tls<<2
//	smtp_code    uvarint
//	attempts     uvarint
//	status, reason, enhanced_code, message, mx_host, egress: uvarint length + bytes each
const checkedAtBytes = 8

var errMalformed = errors.New("malformed value")

// keySep separates the parts of a verdict key. No part may contain it.
const keySep = 0

func verdictKey(dst []byte, ns, domain, address string) []byte {
	dst = append(dst, ns...)
	dst = append(dst, keySep)
	dst = append(dst, domain...)
	dst = append(dst, keySep)
	return append(dst, address...)
}

// domainPrefix is the key prefix of every verdict of domain in ns.
func domainPrefix(ns, domain string) []byte {
	return verdictKey(nil, ns, domain, "")
}

func namespacePrefix(ns string) []byte {
	return append([]byte(ns), keySep)
}

// splitKey returns the parts of a verdict key.
func splitKey(k []byte) (ns, domain, address []byte, ok bool) {
	i := indexByte(k, keySep)
	if i < 0 {
		return nil, nil, nil, false
	}
	j := indexByte(k[i+1:], keySep)
	if j < 0 {
		return nil, nil, nil, false
	}
	return k[:i], k[i+1 : i+1+j], k[i+2+j:], true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func appendString(dst []byte, s string, limit int) []byte {
	s = clip(s, limit)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func encodeVerdict(dst []byte, v *Verdict) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(v.CheckedAt.Unix()))
	dst = append(dst, byte(v.CatchAll&3)|byte(v.TLS&3)<<2)
	dst = binary.AppendUvarint(dst, uint64(max(v.SMTPCode, 0)))
	dst = binary.AppendUvarint(dst, uint64(max(v.Attempts, 0)))
	dst = appendString(dst, v.Status, maxShortBytes)
	dst = appendString(dst, v.Reason, maxShortBytes)
	dst = appendString(dst, v.EnhancedCode, maxShortBytes)
	dst = appendString(dst, v.Message, MaxMessageBytes)
	dst = appendString(dst, v.MXHost, maxShortBytes)
	return appendString(dst, v.Egress, maxShortBytes)
}

// valueCheckedAt reads the time of an encoded verdict without decoding it.
func valueCheckedAt(val []byte) (int64, bool) {
	if len(val) < checkedAtBytes {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(val)), true
}

// decoder reads an encoded value, remembering the first problem.
type decoder struct {
	b   []byte
	bad bool
	// recent keeps the last values of each short, repetitive field
	// (status, reason, host...), so that reading a million verdicts does
	// not allocate them a million times. Comparing a few strings is cheaper
	// than hashing into a map.
	recent [fieldSlots][4]string
	next   [fieldSlots]uint8
	intern bool
	// words holds the values met before, beyond the recent ones (a run
	// meets a host name per domain, a hundred in turn): bounded, started
	// afresh when full.
	words map[string]string
}

// maxInternedWords bounds decoder.words.
const maxInternedWords = 4096

// Fields whose values repeat from verdict to verdict.
const (
	fieldStatus = iota
	fieldReason
	fieldEnhanced
	fieldMX
	fieldEgress
	fieldSlots
)

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes()) }

// word is str for values that repeat across verdicts.
func (d *decoder) word(field int) string {
	b := d.bytes()
	if len(b) == 0 {
		return ""
	}
	if !d.intern {
		return string(b)
	}
	slots := &d.recent[field]
	for _, s := range slots {
		if s == string(b) {
			return s
		}
	}
	s, ok := d.words[string(b)]
	if !ok {
		if d.words == nil || len(d.words) >= maxInternedWords {
			d.words = make(map[string]string)
		}
		s = string(b)
		d.words[s] = s
	}
	slots[d.next[field]%4] = s
	d.next[field]++
	return s
}

func (d *decoder) tri() Tri {
	if len(d.b) == 0 {
		d.bad = true
		return TriUnknown
	}
	t := d.b[0]
	d.b = d.b[1:]
	return Tri(t)
}

func (d *decoder) time() time.Time {
	if len(d.b) < 8 {
		d.bad = true
		d.b = nil
		return time.Time{}
	}
	sec := int64(binary.BigEndian.Uint64(d.b))
	d.b = d.b[8:]
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func (d *decoder) small(limit uint64) int {
	x := d.uvarint()
	if x > limit {
		d.bad = true
	}
	return int(x)
}

func validTri(t Tri) bool { return t <= TriNo }

// decodeVerdict fills v (all but its key fields) from an encoded value.
func decodeVerdict(d *decoder, val []byte, v *Verdict) error {
	d.b = val
	d.bad = false
	if len(val) < checkedAtBytes+1 {
		return errMalformed
	}
	v.CheckedAt = time.Unix(int64(binary.BigEndian.Uint64(val)), 0).UTC()
	flags := val[checkedAtBytes]
	d.b = val[checkedAtBytes+1:]
	v.CatchAll, v.TLS = Tri(flags&3), Tri(flags>>2&3)
	v.SMTPCode = d.small(999)
	v.Attempts = d.small(1 << 20)
	v.Status = d.word(fieldStatus)
	v.Reason = d.word(fieldReason)
	v.EnhancedCode = d.word(fieldEnhanced)
	v.Message = d.str()
	v.MXHost = d.word(fieldMX)
	v.Egress = d.word(fieldEgress)
	if d.bad || len(d.b) != 0 || flags>>4 != 0 || !validTri(v.CatchAll) || !validTri(v.TLS) {
		return errMalformed
	}
	return nil
}

// Domain and MX values: a version byte, then the fields in order.
const infoVersion = 1

func appendTime(dst []byte, t time.Time) []byte {
	var sec int64
	if !t.IsZero() {
		sec = t.Unix()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(sec))
}

func encodeDomain(d *DomainInfo) []byte {
	b := []byte{infoVersion, byte(d.CatchAll & 3)}
	b = appendString(b, d.CatchAllMX, maxShortBytes)
	return appendTime(b, d.CatchAllAt)
}

func decodeDomain(val []byte, di *DomainInfo) error {
	if len(val) < 2 || val[0] != infoVersion {
		return errMalformed
	}
	d := decoder{b: val[1:]}
	di.CatchAll = d.tri()
	di.CatchAllMX = d.str()
	di.CatchAllAt = d.time()
	if d.bad || len(d.b) != 0 || !validTri(di.CatchAll) {
		return errMalformed
	}
	return nil
}

func encodeMX(m *MXInfo) []byte {
	b := []byte{infoVersion}
	b = binary.AppendUvarint(b, uint64(max(m.RcptPerTransaction, 0)))
	b = binary.AppendUvarint(b, uint64(max(m.RcptPerConnection, 0)))
	b = appendTime(b, m.LimitsAt)
	b = append(b, byte(m.StartTLS&3))
	b = appendTime(b, m.StartTLSAt)
	b = appendTime(b, m.GreylistedAt)
	b = binary.AppendUvarint(b, uint64(len(m.Refusals)))
	for _, r := range m.Refusals {
		b = appendString(b, r.Egress, maxShortBytes)
		b = appendString(b, r.Operator, maxShortBytes)
		b = appendString(b, r.Reply, MaxMessageBytes)
		b = appendTime(b, r.At)
	}
	return b
}

func decodeMX(val []byte, m *MXInfo) error {
	if len(val) < 1 || val[0] != infoVersion {
		return errMalformed
	}
	d := decoder{b: val[1:]}
	m.RcptPerTransaction = d.small(1 << 20)
	m.RcptPerConnection = d.small(1 << 20)
	m.LimitsAt = d.time()
	m.StartTLS = d.tri()
	m.StartTLSAt = d.time()
	m.GreylistedAt = d.time()
	n := d.small(maxRefusals)
	m.Refusals = nil
	for i := 0; i < n && !d.bad; i++ {
		m.Refusals = append(m.Refusals, Refusal{Egress: d.str(), Operator: d.str(), Reply: d.str(), At: d.time()})
	}
	if d.bad || len(d.b) != 0 || !validTri(m.StartTLS) {
		return errMalformed
	}
	return nil
}

// mergeMX folds what was learnt (upd) into what was known (old): a fact
// replaces the known one when it is newer; refusals are kept per
// (egress, operator), the newest of each, at most maxRefusals.
func mergeMX(old, upd MXInfo) MXInfo {
	m := old
	m.Host = upd.Host
	if upd.LimitsAt.After(m.LimitsAt) {
		m.RcptPerTransaction, m.RcptPerConnection, m.LimitsAt = upd.RcptPerTransaction, upd.RcptPerConnection, upd.LimitsAt
	}
	if upd.StartTLSAt.After(m.StartTLSAt) {
		m.StartTLS, m.StartTLSAt = upd.StartTLS, upd.StartTLSAt
	}
	if upd.GreylistedAt.After(m.GreylistedAt) {
		m.GreylistedAt = upd.GreylistedAt
	}
	refusals := append([]Refusal(nil), old.Refusals...)
	for _, r := range upd.Refusals {
		r.Reply = clip(r.Reply, MaxMessageBytes)
		found := false
		for i := range refusals {
			if refusals[i].Egress == r.Egress && strings.EqualFold(refusals[i].Operator, r.Operator) {
				found = true
				if r.At.After(refusals[i].At) {
					refusals[i] = r
				}
			}
		}
		if !found {
			refusals = append(refusals, r)
		}
	}
	// Keep the newest.
	for len(refusals) > maxRefusals {
		oldest := 0
		for i := range refusals {
			if refusals[i].At.Before(refusals[oldest].At) {
				oldest = i
			}
		}
		refusals = append(refusals[:oldest], refusals[oldest+1:]...)
	}
	m.Refusals = refusals
	return m
}

// newest is the latest time a fact about the host was learnt.
func (m *MXInfo) newest() time.Time {
	t := m.LimitsAt
	for _, x := range []time.Time{m.StartTLSAt, m.GreylistedAt} {
		if x.After(t) {
			t = x
		}
	}
	for _, r := range m.Refusals {
		if r.At.After(t) {
			t = r.At
		}
	}
	return t
}

// dropBefore forgets the facts learnt before cutoff.
func (m *MXInfo) dropBefore(cutoff time.Time) {
	if m.LimitsAt.Before(cutoff) {
		m.RcptPerTransaction, m.RcptPerConnection, m.LimitsAt = 0, 0, time.Time{}
	}
	if m.StartTLSAt.Before(cutoff) {
		m.StartTLS, m.StartTLSAt = TriUnknown, time.Time{}
	}
	if m.GreylistedAt.Before(cutoff) {
		m.GreylistedAt = time.Time{}
	}
	kept := m.Refusals[:0]
	for _, r := range m.Refusals {
		if !r.At.Before(cutoff) {
			kept = append(kept, r)
		}
	}
	m.Refusals = kept
	if len(m.Refusals) == 0 {
		m.Refusals = nil
	}
}
