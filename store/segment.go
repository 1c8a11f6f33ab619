package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Verdicts live in segments: sorted, immutable runs of (key, value) entries,
// each a bucket of its own whose values are blocks of consecutive entries,
// keyed by the last key of the block. A committed batch of Puts becomes a new
// segment in one transaction; segments of a similar size are merged into one
// (compaction), so their number stays logarithmic in the number of verdicts.
// When a key is in several segments, the newest segment's entry wins.
//
// This layout is why writes are cheap: a batch is sorted in memory and written
// as a few large values, instead of one B-tree insertion per verdict, which
// touches a page per key once the tree is large (measured in bench_test.go).

// Block layout: version byte, the smallest checked_at of its entries (8
// bytes, so retention can skip a block without decoding it), then entries:
// uvarint key length, key, uvarint value length, value.
const (
	blockVersion    = 1
	blockHeader     = 1 + 8
	blockTarget     = 16 << 10 // bytes of entries per block
	segHeaderLen    = 1 + 8 + 8 + 8
	segHeaderFormat = 1
)

// segMeta describes a live segment (bucket "segments", key = id).
type segMeta struct {
	id      uint64
	entries int64
	bytes   int64
	minAt   int64 // smallest checked_at (Unix seconds) in the segment
}

func segID(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func (m segMeta) encode() []byte {
	b := []byte{segHeaderFormat}
	b = binary.BigEndian.AppendUint64(b, uint64(m.entries))
	b = binary.BigEndian.AppendUint64(b, uint64(m.bytes))
	return binary.BigEndian.AppendUint64(b, uint64(m.minAt))
}

func decodeSegMeta(k, v []byte) (segMeta, bool) {
	if len(k) != 8 || len(v) != segHeaderLen || v[0] != segHeaderFormat {
		return segMeta{}, false
	}
	return segMeta{
		id:      binary.BigEndian.Uint64(k),
		entries: int64(binary.BigEndian.Uint64(v[1:])),
		bytes:   int64(binary.BigEndian.Uint64(v[9:])),
		minAt:   int64(binary.BigEndian.Uint64(v[17:])),
	}, true
}

// level groups segments of a similar size: compaction merges levelFanout
// segments of one level into one of the next.
func (m segMeta) level() int {
	n := m.entries / minSegmentEntries
	l := 0
	for n >= levelFanout {
		n /= levelFanout
		l++
	}
	return l
}

const (
	minSegmentEntries = 4096
	levelFanout       = 8
)

// liveSegments lists the live segments, oldest first, in a transaction of
// its own.
func (s *Store) liveSegments() ([]segMeta, error) {
	var segs []segMeta
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		segs, err = s.readSegments(tx)
		return err
	})
	return segs, err
}

// readSegments lists the live segments, oldest first.
func (s *Store) readSegments(tx *bolt.Tx) ([]segMeta, error) {
	var segs []segMeta
	err := tx.Bucket(bucketSegments).ForEach(func(k, v []byte) error {
		m, ok := decodeSegMeta(k, v)
		if !ok {
			return s.corrupt("segments", k, errMalformed)
		}
		if tx.Bucket(bucketSeg).Bucket(k) == nil {
			return s.corrupt("segments", k, fmt.Errorf("segment %d has no data", m.id))
		}
		segs = append(segs, m)
		return nil
	})
	return segs, err
}

// segWriter writes sorted entries into a segment bucket as blocks.
type segWriter struct {
	s       *Store
	b       *bolt.Bucket
	block   []byte
	lastKey []byte
	minAt   int64
	meta    segMeta
	written int64 // bytes put since the last reset of the counter
}

func (s *Store) newSegWriter(b *bolt.Bucket, id uint64) *segWriter {
	w := &segWriter{s: s, b: b, meta: segMeta{id: id, minAt: math.MaxInt64}}
	w.reset()
	return w
}

// Block buffers are handed to bbolt, which keeps them until the transaction
// ends; then they are reused (recycleBlocks), sparing the garbage collector
// a block's worth of allocation per block written. Both are called with
// writeMu held.
func (s *Store) takeBlock() []byte {
	if n := len(s.freeBlocks); n > 0 {
		b := s.freeBlocks[n-1]
		s.freeBlocks = s.freeBlocks[:n-1]
		return b[:0]
	}
	return make([]byte, 0, blockTarget+blockTarget/4)
}

// recycleBlocks makes the blocks given to bbolt reusable: call it once the
// transaction that used them has ended.
func (s *Store) recycleBlocks() {
	s.freeBlocks = append(s.freeBlocks, s.usedBlocks...)
	clear(s.usedBlocks)
	s.usedBlocks = s.usedBlocks[:0]
	if len(s.freeBlocks) > maxFreeBlocks {
		clear(s.freeBlocks[maxFreeBlocks:])
		s.freeBlocks = s.freeBlocks[:maxFreeBlocks]
	}
}

// maxFreeBlocks bounds the memory kept for reuse (about 20 MB).
const maxFreeBlocks = 1024

func (w *segWriter) reset() {
	w.block = append(w.s.takeBlock(), make([]byte, blockHeader)...)
	w.block[0] = blockVersion
	w.minAt = math.MaxInt64
	w.lastKey = w.lastKey[:0]
}

// add appends one entry; keys must come in increasing order.
func (w *segWriter) add(k, v []byte) error {
	at, _ := valueCheckedAt(v)
	w.minAt = min(w.minAt, at)
	w.meta.minAt = min(w.meta.minAt, at)
	w.block = binary.AppendUvarint(w.block, uint64(len(k)))
	w.block = append(w.block, k...)
	w.block = binary.AppendUvarint(w.block, uint64(len(v)))
	w.block = append(w.block, v...)
	w.lastKey = append(w.lastKey[:0], k...)
	w.meta.entries++
	if len(w.block) >= blockTarget {
		return w.finishBlock()
	}
	return nil
}

// finishBlock writes the current block, if it has entries.
func (w *segWriter) finishBlock() error {
	if len(w.block) == blockHeader {
		return nil
	}
	binary.BigEndian.PutUint64(w.block[1:], uint64(w.minAt))
	// bbolt keeps the slices until the transaction commits: the block and
	// its key are not reused.
	key := bytes.Clone(w.lastKey)
	if err := w.b.Put(key, w.block); err != nil {
		return err
	}
	if cap(w.block) <= blockTarget+blockTarget/4 {
		w.s.usedBlocks = append(w.s.usedBlocks, w.block)
	}
	w.meta.bytes += int64(len(w.block))
	w.written += int64(len(w.block))
	w.reset()
	return nil
}

// blockIter walks the entries of one block.
type blockIter struct {
	b []byte
}

func (it *blockIter) next() (k, v []byte, ok, bad bool) {
	if len(it.b) == 0 {
		return nil, nil, false, false
	}
	kl, n := binary.Uvarint(it.b)
	if n <= 0 || kl > uint64(len(it.b)-n) {
		return nil, nil, false, true
	}
	k = it.b[n : n+int(kl)]
	it.b = it.b[n+int(kl):]
	vl, n := binary.Uvarint(it.b)
	if n <= 0 || vl > uint64(len(it.b)-n) {
		return nil, nil, false, true
	}
	v = it.b[n : n+int(vl)]
	it.b = it.b[n+int(vl):]
	return k, v, true, false
}

func checkBlock(v []byte) bool { return len(v) >= blockHeader && v[0] == blockVersion }

func blockMinAt(v []byte) int64 { return int64(binary.BigEndian.Uint64(v[1:])) }

// segIter walks the entries of one segment in key order, from a start key
// up to (not including) an end key.
type segIter struct {
	s    *Store
	c    *bolt.Cursor
	rank int // position in the segment list: a higher rank is newer
	id   uint64
	end  []byte // nil = to the end
	blk  blockIter
	bkey []byte // key of the current block: the last key in it
	// The current entry (has), and whether it is before end (valid).
	key, val   []byte
	has, valid bool
	// Every entry before the current one is < below, or <= prev when prev
	// is set: what lets a later seek go on from here instead of searching
	// the B-tree again (lookups come in key order).
	below, prev []byte
	err         error
}

func newSegIter(s *Store, tx *bolt.Tx, m segMeta, rank int) *segIter {
	b := tx.Bucket(bucketSeg).Bucket(segID(m.id))
	return &segIter{s: s, c: b.Cursor(), rank: rank, id: m.id}
}

// seek positions the iterator on the first entry >= start, and makes it
// stop before end (nil = no end).
func (it *segIter) seek(start, end []byte) {
	it.end = end
	if it.err != nil {
		return
	}
	if it.canGoOn(start) {
		// Walk on within the current block.
		for it.has && bytes.Compare(it.key, start) < 0 {
			it.stepRaw()
		}
	} else {
		it.has = false
		if k, v := it.c.Seek(start); it.loadBlock(k, v) {
			it.stepRaw()
			for it.has && bytes.Compare(it.key, start) < 0 {
				it.stepRaw()
			}
		}
		if it.err == nil {
			it.below, it.prev = start, nil
		}
	}
	it.valid = it.has && (end == nil || bytes.Compare(it.key, end) < 0)
}

// canGoOn: the first entry >= start is the current one or after it in the
// current block.
func (it *segIter) canGoOn(start []byte) bool {
	if !it.has || bytes.Compare(start, it.bkey) > 0 {
		return false
	}
	if it.prev != nil {
		return bytes.Compare(start, it.prev) > 0
	}
	return it.below != nil && bytes.Compare(start, it.below) >= 0
}

func (it *segIter) loadBlock(k, v []byte) bool {
	if k == nil {
		return false
	}
	if !checkBlock(v) {
		it.err = it.s.corrupt(fmt.Sprintf("segment %d", it.id), k, errMalformed)
		return false
	}
	it.bkey = k
	it.blk = blockIter{b: v[blockHeader:]}
	return true
}

// stepRaw moves to the next entry, ignoring end.
func (it *segIter) stepRaw() {
	if it.has {
		it.prev = it.key
	}
	for {
		k, v, ok, bad := it.blk.next()
		if bad {
			it.err = it.s.corrupt(fmt.Sprintf("segment %d", it.id), it.bkey, errMalformed)
			it.has = false
			return
		}
		if ok {
			it.key, it.val, it.has = k, v, true
			return
		}
		if !it.loadBlock(it.c.Next()) {
			it.has = false
			return
		}
	}
}

// step moves to the next entry; false at the end or on damage (see err).
func (it *segIter) step() bool {
	it.stepRaw()
	it.valid = it.has && (it.end == nil || bytes.Compare(it.key, it.end) < 0)
	return it.valid
}

// mergeIter yields the entries of several segments in key order; of equal
// keys, the newest segment's. It keeps its segments in a binary heap.
type mergeIter struct {
	err  error // damage met while positioning the segments
	h    []*segIter
	key  []byte
	val  []byte
	from *segIter // the segment of the current entry
}

// newMergeIter merges its, each already positioned (seek).
func newMergeIter(its []*segIter) *mergeIter {
	m := &mergeIter{h: make([]*segIter, 0, len(its))}
	for _, it := range its {
		if it.err != nil && m.err == nil {
			m.err = it.err
		}
		if it.valid {
			m.h = append(m.h, it)
		}
	}
	for i := len(m.h)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m
}

func (m *mergeIter) less(i, j int) bool {
	a, b := m.h[i], m.h[j]
	c := bytes.Compare(a.key, b.key)
	return c < 0 || c == 0 && a.rank > b.rank
}

func (m *mergeIter) down(i int) {
	n := len(m.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && m.less(r, l) {
			j = r
		}
		if !m.less(j, i) {
			return
		}
		m.h[i], m.h[j] = m.h[j], m.h[i]
		i = j
	}
}

// advanceTop steps the segment on top of the heap and restores the heap.
func (m *mergeIter) advanceTop() error {
	top := m.h[0]
	if !top.step() {
		if top.err != nil {
			return top.err
		}
		last := len(m.h) - 1
		m.h[0] = m.h[last]
		m.h = m.h[:last]
	}
	m.down(0)
	return nil
}

func (m *mergeIter) next() (bool, error) {
	if m.err != nil {
		return false, m.err
	}
	if len(m.h) == 0 {
		return false, nil
	}
	best := m.h[0]
	m.key, m.val, m.from = best.key, best.val, best
	// The keys stay valid for the transaction after the segments move on.
	if err := m.advanceTop(); err != nil {
		return false, err
	}
	// Older copies of the same key are shadowed: skip them.
	for len(m.h) > 0 && bytes.Equal(m.h[0].key, m.key) {
		if err := m.advanceTop(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
