package pipeline

import (
	"errors"

	"github.com/bulkverify/bulkverify/input"
)

// rowRef is one input row waiting for the verdict on its address.
type rowRef struct {
	row    int
	fields []string
}

// rowRefs are the rows that asked for one address. Most addresses appear
// once, so the first row is held inline: no slice per address.
type rowRefs struct {
	first rowRef
	more  []rowRef
}

// each calls f for every row.
func (r rowRefs) each(f func(rowRef)) {
	f(r.first)
	for _, ref := range r.more {
		f(ref)
	}
}

func (r rowRefs) count() int {
	if r.first.fields == nil {
		return 0
	}
	return 1 + len(r.more)
}

// invalidRow is a row that holds no address worth probing.
type invalidRow struct {
	ref    rowRef
	raw    string
	reason string
}

// parsedRow is one input row as the loader handles it: its address parsed
// and normalised, or the reason it has none.
type parsedRow struct {
	ref     rowRef
	addr    input.Address
	key     string // addr as text (local@domain); the input's own text when it already is that
	invalid string // reason the row has no address; "" when it has one
	raw     string // the address column as read
}

// parseRow reads the address of one record.
func parseRow(rec input.Record) parsedRow {
	p := parsedRow{ref: rowRef{row: rec.Row, fields: rec.Fields}, raw: rec.Email}
	addr, err := input.ParseAddress(rec.Email)
	switch {
	case rec.Ragged:
		p.invalid = ReasonRaggedRow
	case err != nil:
		p.invalid = input.ReasonSyntax
		var se *input.SyntaxError
		if errors.As(err, &se) {
			p.invalid = se.Reason
		}
	default:
		p.addr = addr
		p.key = keyOf(rec.Email, &p.addr)
	}
	return p
}

// keyOf returns a's text, reusing raw (and pointing a.Local into it) when
// raw already is exactly that, as it is in most lists: no new string per row.
func keyOf(raw string, a *input.Address) string {
	n := len(a.Local)
	if len(raw) == n+1+len(a.Domain) && raw[n] == '@' && raw[:n] == a.Local && raw[n+1:] == a.Domain {
		a.Local = raw[:n]
		return raw
	}
	return a.String()
}

// grouper collects rows in memory: distinct addresses grouped by domain,
// each with the rows that asked for it.
type grouper struct {
	domIdx map[string]int32
	groups []DomainGroup
	// byKey finds an address's place: group index << 32 | index in the group.
	byKey   map[string]uint64
	invalid []invalidRow
	rows    int             // rows held, invalid ones included
	split   map[string]bool // domains fed in several parts (DomainGroup.split)
}

func newGrouper(split map[string]bool) *grouper {
	return &grouper{domIdx: map[string]int32{}, byKey: map[string]uint64{}, split: split}
}

func (g *grouper) add(p parsedRow) {
	g.rows++
	if p.invalid != "" {
		g.invalid = append(g.invalid, invalidRow{ref: p.ref, raw: p.raw, reason: p.invalid})
		return
	}
	if at, ok := g.byKey[p.key]; ok {
		rs := &g.groups[at>>32].rows[uint32(at)]
		rs.more = append(rs.more, p.ref)
		return
	}
	gi, ok := g.domIdx[p.addr.Domain]
	if !ok {
		gi = int32(len(g.groups))
		g.domIdx[p.addr.Domain] = gi
		g.groups = append(g.groups, DomainGroup{Domain: p.addr.Domain, split: g.split[p.addr.Domain]})
	}
	grp := &g.groups[gi]
	p.addr.Domain = grp.Domain // one string per domain, not per address
	g.byKey[p.key] = uint64(gi)<<32 | uint64(len(grp.Addresses))
	grp.Addresses = append(grp.Addresses, p.addr)
	grp.rows = append(grp.rows, rowRefs{first: p.ref})
	grp.keys = append(grp.keys, p.key)
}

// addresses is the number of distinct addresses held.
func (g *grouper) addresses() int { return len(g.byKey) }

// find returns the group and index of an address, if held.
func (g *grouper) find(key string) (gi, ai int, ok bool) {
	at, ok := g.byKey[key]
	return int(at >> 32), int(uint32(at)), ok
}
