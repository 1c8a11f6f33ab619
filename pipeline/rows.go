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

// rowQueue holds rows in chunks of a fixed size: growing it never copies
// the rows it holds.
type rowQueue struct {
	chunks [][]parsedRow
	n      int
}

const rowQueueChunk = 1024

func (q *rowQueue) push(p parsedRow) {
	last := len(q.chunks) - 1
	if last < 0 || len(q.chunks[last]) == rowQueueChunk {
		q.chunks = append(q.chunks, make([]parsedRow, 0, rowQueueChunk))
		last++
	}
	q.chunks[last] = append(q.chunks[last], p)
	q.n++
}

func (q *rowQueue) len() int { return q.n }

// moveFrom moves o's rows to the end of q.
func (q *rowQueue) moveFrom(o *rowQueue) {
	q.n += o.n
	q.chunks = append(q.chunks, o.takeAll()...)
}

// takeAll empties the queue and returns its rows, in the order pushed.
func (q *rowQueue) takeAll() [][]parsedRow {
	chunks := q.chunks
	*q = rowQueue{}
	return chunks
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

// grouper collects rows in memory: addresses grouped by domain, each with
// the rows that asked for it. Duplicates are collapsed per domain (dedupe),
// not through one map of every address: a domain's map is small and stays
// in the processor's cache while it is built and used, where a map of a
// million addresses costs a cache miss or two per row.
//
// Until a domain is deduped its rows are held in one compact array
// (groupedRow: the address is its text), not in DomainGroup's three
// parallel ones: rows of interleaved domains come one at a time, and each
// array appended to is a cache miss; dedupe then builds the DomainGroup at
// its exact size, without the garbage of three growing arrays.
type grouper struct {
	domIdx  map[string]int32
	groups  []DomainGroup  // Domain and split; the rest filled by dedupe
	pending [][]groupedRow // by group: its rows, as added, until dedupe
	invalid []invalidRow
	rows    int             // rows held, invalid ones included
	split   map[string]bool // domains fed in several parts (DomainGroup.split)
}

// groupedRow is a row of a group not yet deduped. Its address is key,
// whose local part is key[:localLen] (keyOf makes it so) and whose domain
// is the group's.
type groupedRow struct {
	ref      rowRef
	key      string
	localLen int32
	utf8     bool // Address.NeedsSMTPUTF8
}

func newGrouper(split map[string]bool) *grouper {
	return &grouper{domIdx: map[string]int32{}, split: split}
}

func (g *grouper) add(p parsedRow) {
	g.rows++
	if p.invalid != "" {
		g.invalid = append(g.invalid, invalidRow{ref: p.ref, raw: p.raw, reason: p.invalid})
		return
	}
	gi, ok := g.domIdx[p.addr.Domain]
	if !ok {
		gi = int32(len(g.groups))
		g.domIdx[p.addr.Domain] = gi
		g.groups = append(g.groups, DomainGroup{Domain: p.addr.Domain, split: g.split[p.addr.Domain]})
		g.pending = append(g.pending, nil)
	}
	g.pending[gi] = append(g.pending[gi], groupedRow{ref: p.ref, key: p.key, localLen: int32(len(p.addr.Local)), utf8: p.addr.NeedsSMTPUTF8})
}

// held is how many rows group gi holds, deduped or not.
func (g *grouper) held(gi int) int {
	if g.pending[gi] != nil {
		return len(g.pending[gi])
	}
	return len(g.groups[gi].Addresses)
}

// each calls f with every row of group gi that is not deduped yet (none
// once it is).
func (g *grouper) each(gi int, f func(p parsedRow) error) error {
	domain := g.groups[gi].Domain
	for _, r := range g.pending[gi] {
		addr := input.Address{Local: r.key[:r.localLen], Domain: domain, NeedsSMTPUTF8: r.utf8}
		if err := f(parsedRow{ref: r.ref, addr: addr, key: r.key}); err != nil {
			return err
		}
	}
	return nil
}

// release lets group gi go, handed on.
func (g *grouper) release(gi int) {
	g.groups[gi] = DomainGroup{}
	g.pending[gi] = nil
}

// dedupe builds group gi from its rows, collapsing duplicate addresses
// (the rows of a duplicate join those of the address's first row), and
// returns the index of each address by its text.
func (g *grouper) dedupe(gi int) map[string]int32 {
	grp := &g.groups[gi]
	rows := g.pending[gi]
	index := make(map[string]int32, len(rows))
	grp.Addresses = make([]input.Address, 0, len(rows))
	grp.rows = make([]rowRefs, 0, len(rows))
	grp.keys = make([]string, 0, len(rows))
	for _, r := range rows {
		if at, dup := index[r.key]; dup {
			rs := &grp.rows[at]
			rs.more = append(rs.more, r.ref)
			continue
		}
		index[r.key] = int32(len(grp.keys))
		grp.Addresses = append(grp.Addresses, input.Address{Local: r.key[:r.localLen], Domain: grp.Domain, NeedsSMTPUTF8: r.utf8})
		grp.rows = append(grp.rows, rowRefs{first: r.ref})
		grp.keys = append(grp.keys, r.key)
	}
	g.pending[gi] = nil
	return index
}

// dedupeAll dedupes every group and returns how many distinct addresses
// they hold.
func (g *grouper) dedupeAll() int {
	n := 0
	for gi := range g.groups {
		g.dedupe(gi)
		n += len(g.groups[gi].Addresses)
	}
	return n
}
