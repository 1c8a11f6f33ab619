package pipeline

import (
	"errors"
	"hash/maphash"

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
// array appended to is a cache miss; dedupe then makes the DomainGroup of
// them in place, without the garbage of three growing arrays.
type grouper struct {
	domIdx  map[string]int32
	groups  []DomainGroup  // Domain and split; the rest filled by dedupe
	pending [][]groupedRow // by group: its rows, as added, until dedupe
	invalid []invalidRow
	rows    int             // rows held, invalid ones included
	split   map[string]bool // domains fed in several parts (DomainGroup.split)
	index   addrIndex       // dedupe's, reused
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
	return g.groups[gi].size()
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

// dedupe collapses the duplicate addresses of group gi, in place: the
// group's rows become one per distinct address, in the order first met,
// and the rows of later duplicates go to its dups. It returns an index of
// the group's addresses, valid until the next dedupe.
func (g *grouper) dedupe(gi int) *addrIndex {
	grp := &g.groups[gi]
	rows := g.pending[gi]
	ix := &g.index
	ix.reset(len(rows))
	n := 0
	for _, r := range rows {
		if _, dup := ix.find(rows[:n], r.key); dup {
			if grp.dups == nil {
				grp.dups = map[string][]rowRef{}
			}
			grp.dups[r.key] = append(grp.dups[r.key], r.ref)
			continue
		}
		ix.add(r.key, n)
		rows[n] = r
		n++
	}
	clear(rows[n:])
	grp.compact = rows[:n:n]
	ix.rows = grp.compact
	g.pending[gi] = nil
	return ix
}

// addrIndex finds an address among a group's rows: open addressing on
// the address's hash, slots holding a position + 1. The grouper keeps one
// and reuses it from group to group, where a map per group cost an
// allocation per address.
type addrIndex struct {
	seed  maphash.Seed
	slots []int32
	rows  []groupedRow // what positions point into
}

func (ix *addrIndex) reset(n int) {
	size := 8
	for size < 2*n {
		size *= 2
	}
	if cap(ix.slots) < size {
		ix.slots = make([]int32, size)
		if ix.seed == (maphash.Seed{}) {
			ix.seed = maphash.MakeSeed()
		}
	}
	ix.slots = ix.slots[:size]
	clear(ix.slots)
	ix.rows = nil
}

func (ix *addrIndex) add(key string, pos int) {
	mask := uint64(len(ix.slots) - 1)
	for i := maphash.String(ix.seed, key) & mask; ; i = (i + 1) & mask {
		if ix.slots[i] == 0 {
			ix.slots[i] = int32(pos + 1)
			return
		}
	}
}

// find returns the position of key among rows.
func (ix *addrIndex) find(rows []groupedRow, key string) (int, bool) {
	mask := uint64(len(ix.slots) - 1)
	for i := maphash.String(ix.seed, key) & mask; ; i = (i + 1) & mask {
		s := ix.slots[i]
		if s == 0 {
			return 0, false
		}
		if rows[s-1].key == key {
			return int(s - 1), true
		}
	}
}

// lookup is find among the rows of the group last deduped.
func (ix *addrIndex) lookup(key string) (int, bool) { return ix.find(ix.rows, key) }

// size is how many addresses g holds.
func (g *DomainGroup) size() int {
	if g.compact != nil {
		return len(g.compact)
	}
	return len(g.Addresses)
}

// at returns address i of g, its text ("" = to be made from it) and the
// input rows that asked for it (none for find's groups).
func (g *DomainGroup) at(i int) (input.Address, string, rowRefs) {
	if g.compact == nil {
		return g.Addresses[i], "", rowRefs{}
	}
	r := &g.compact[i]
	rows := rowRefs{first: r.ref}
	if g.dups != nil {
		rows.more = g.dups[r.key]
	}
	return input.Address{Local: r.key[:r.localLen], Domain: g.Domain, NeedsSMTPUTF8: r.utf8}, r.key, rows
}

// dedupeAll dedupes every group and returns how many distinct addresses
// they hold.
func (g *grouper) dedupeAll() int {
	n := 0
	for gi := range g.groups {
		g.dedupe(gi)
		n += g.groups[gi].size()
	}
	return n
}
