package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// A host queue keeps its head in memory. When the host falls behind while
// the rest of the run waits for memory (router.evict), the tail of its queue
// goes to disk, and so does every address routed to it after that, until
// the queue has been worked down: the queue is then head (memory), chunks
// (disk, oldest first), tail (memory, the newest, written out a chunk at a
// time). take refills the head from the oldest chunk, reading it outside the
// router's lock. Order within a host is kept.
//
// All hosts share one append-only file, unlinked as soon as it is created:
// its space goes back to the system however the run ends. Its chunks are
// never rewritten; the file grows by what was spilled.

// chunkRef is where one chunk of a host's queue is in the spill file.
type chunkRef struct {
	off   int64
	size  int32 // bytes
	count int32 // targets
}

// diskQueue is the part of a host's queue that is not its in-memory head.
type diskQueue struct {
	chunks  []chunkRef
	onDisk  int       // targets in chunks
	tail    []*target // routed here after the host began spilling, not yet written
	reading bool      // a worker is reading the oldest chunk back
}

func (q *diskQueue) len() int { return q.onDisk + len(q.tail) }

// spilling: addresses routed to the host go to the tail, after what is on
// disk, not to the head.
func (q *diskQueue) spilling() bool { return q.onDisk > 0 || len(q.tail) > 0 }

// spillable reports whether t can wait on disk: it carries nothing but its
// address, rows and counters. Targets in the middle of a suspicion or a
// failover stay in memory; they are few.
func spillable(t *target) bool {
	return t.suspect == 0 && t.failed == nil && t.suspectReply == nil
}

// spillFile is the file the host queues spill to.
type spillFile struct {
	dir   string
	chunk int // targets per chunk

	mu   sync.Mutex
	f    *os.File
	size int64
	err  error // the first write that failed: nothing more is spilled
	doms map[*domainState]*spilledDomain
	byID map[uint32]*spilledDomain
	next uint32
	buf  []byte
}

// spilledDomain gives targets on disk their domainState back: it stays in
// memory (one small record) while any of its targets is on disk.
type spilledDomain struct {
	dom  *domainState
	id   uint32
	refs int
}

// newSpillFile prepares a spill file in dir; nothing is created before the
// first chunk is written.
func newSpillFile(dir string, memoryRows int) *spillFile {
	return &spillFile{dir: dir, chunk: spillChunk(memoryRows), doms: map[*domainState]*spilledDomain{}, byID: map[uint32]*spilledDomain{}}
}

// spillChunk is how many targets one chunk holds: small against the memory
// limit, so that refilling many hosts' heads stays within it.
func spillChunk(memoryRows int) int {
	return min(max(memoryRows/64, 8), 512)
}

func (s *spillFile) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if s.err == nil {
		s.err = errors.New("closed")
	}
}

// write appends targets as one chunk. On failure the targets are left to
// the caller, which keeps them in memory.
func (s *spillFile) write(targets []*target) (chunkRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return chunkRef{}, s.err
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "bulkverify-queue-*")
		if err != nil {
			s.err = fmt.Errorf("spilling a host queue to disk: %w", err)
			return chunkRef{}, s.err
		}
		os.Remove(f.Name()) // unlinked: the space goes back however the run ends
		s.f = f
	}
	b := s.buf[:0]
	for _, t := range targets {
		b = s.encode(b, t)
	}
	if _, err := s.f.WriteAt(b, s.size); err != nil {
		// Undo the domains' references: the targets stay in memory.
		for _, t := range targets {
			s.release(s.doms[t.dom])
		}
		s.err = fmt.Errorf("spilling a host queue to disk: %w", err)
		return chunkRef{}, s.err
	}
	ref := chunkRef{off: s.size, size: int32(len(b)), count: int32(len(targets))}
	s.size += int64(len(b))
	if cap(b) <= 1<<20 {
		s.buf = b
	}
	return ref, nil
}

// read reads a chunk back as targets.
func (s *spillFile) read(ref chunkRef) ([]*target, error) {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f == nil {
		return nil, errors.New("reading a host queue back from disk: the spill file is closed")
	}
	b := make([]byte, ref.size)
	if _, err := f.ReadAt(b, ref.off); err != nil {
		return nil, fmt.Errorf("reading a host queue back from disk: %w", err)
	}
	// One string for the whole chunk: every text of its targets is a slice
	// of it, so a chunk costs two allocations, not one per field.
	str := string(b)
	out := make([]*target, 0, ref.count)
	block := make([]target, ref.count)
	s.mu.Lock()
	defer s.mu.Unlock()
	d := decoder{s: str}
	for i := range block {
		t := &block[i]
		if err := s.decode(&d, t); err != nil {
			return nil, fmt.Errorf("reading a host queue back from disk: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

func (s *spillFile) release(sd *spilledDomain) {
	if sd == nil {
		return
	}
	sd.refs--
	if sd.refs <= 0 {
		delete(s.doms, sd.dom)
		delete(s.byID, sd.id)
	}
}

// Target encoding, fields in order:
//
//	uvarint domain id, byte flags (1 SMTPUTF8, 2 catch-all check, 4 TLS known, 8 TLS),
//	uvarint mxIdx, tries, retries; varint firstTry (Unix ns, 0 = none);
//	string local part, string last egress;
//	uvarint rows, each: uvarint row, uvarint fields, each field a string.
//
// A string is its uvarint length, then its bytes.
func (s *spillFile) encode(b []byte, t *target) []byte {
	sd := s.doms[t.dom]
	if sd == nil {
		s.next++
		sd = &spilledDomain{dom: t.dom, id: s.next}
		s.doms[t.dom] = sd
		s.byID[sd.id] = sd
	}
	sd.refs++
	b = binary.AppendUvarint(b, uint64(sd.id))
	var flags byte
	if t.utf8 {
		flags |= 1
	}
	if t.catchAll {
		flags |= 2
	}
	if t.lastTLS != nil {
		flags |= 4
		if *t.lastTLS {
			flags |= 8
		}
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(t.mxIdx))
	b = binary.AppendUvarint(b, uint64(t.tries))
	b = binary.AppendUvarint(b, uint64(t.retries))
	b = binary.AppendVarint(b, t.firstTry)
	b = appendStr(b, t.text[:t.localLen])
	b = appendStr(b, t.lastEgress)
	n := 0
	if t.rows.first.fields != nil {
		n = 1 + len(t.rows.more)
	}
	b = binary.AppendUvarint(b, uint64(n))
	if n > 0 {
		t.rows.each(func(r rowRef) {
			b = binary.AppendUvarint(b, uint64(r.row))
			b = binary.AppendUvarint(b, uint64(len(r.fields)))
			for _, f := range r.fields {
				b = appendStr(b, f)
			}
		})
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (s *spillFile) decode(d *decoder, t *target) error {
	id := d.uvarint()
	flags := d.byte()
	sd := s.byID[uint32(id)]
	if sd == nil || d.err != nil {
		return errDamagedSpill
	}
	t.dom = sd.dom
	s.release(sd)
	t.utf8 = flags&1 != 0
	t.catchAll = flags&2 != 0
	if flags&4 != 0 {
		tls := flags&8 != 0
		t.lastTLS = &tls
	}
	t.mxIdx = int32(d.uvarint())
	t.tries = int16(d.uvarint())
	t.retries = int16(d.uvarint())
	t.firstTry = d.varint()
	local := d.str()
	t.text, t.localLen = local+"@"+t.dom.name, uint16(len(local))
	t.lastEgress = d.str()
	n := int(d.uvarint())
	for i := range n {
		var r rowRef
		r.row = int(d.uvarint())
		nf := int(d.uvarint())
		if d.err != nil || nf > len(d.s) {
			return errDamagedSpill
		}
		r.fields = make([]string, nf)
		for j := range r.fields {
			r.fields[j] = d.str()
		}
		if i == 0 {
			t.rows.first = r
		} else {
			t.rows.more = append(t.rows.more, r)
		}
	}
	if d.err != nil {
		return errDamagedSpill
	}
	return nil
}

var errDamagedSpill = errors.New("damaged spill chunk")

// decoder reads the encoding of spill files (host queues and partitions)
// from a string, slicing its texts out of it without copying.
type decoder struct {
	s   string
	err error
}

func (d *decoder) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < len(d.s); i++ {
		c := d.s[i]
		if c < 0x80 {
			if i > 9 || i == 9 && c > 1 {
				break
			}
			d.s = d.s[i+1:]
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	if d.err == nil {
		d.err = errDamagedSpill
	}
	d.s = ""
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) byte() byte {
	if len(d.s) == 0 {
		if d.err == nil {
			d.err = errDamagedSpill
		}
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		if d.err == nil {
			d.err = errDamagedSpill
		}
		d.s = ""
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

// toTailLocked queues t at the tail of h, which is spilling, writing the
// tail out once it fills a chunk.
func (r *router) toTailLocked(h *hostQueue, t *target) {
	q := &h.disk
	q.tail = append(q.tail, t)
	if len(q.tail) < r.spill.chunk {
		return
	}
	ref, err := r.spill.write(q.tail)
	if err != nil {
		// The disk refuses: keep them in memory, as if never spilled.
		h.pending.push(q.tail...)
		q.tail = nil
		return
	}
	n := countTargets(q.tail)
	r.mem.add(-n)
	r.mem.spilt.Add(int64(n))
	q.chunks = append(q.chunks, ref)
	q.onDisk += int(ref.count)
	q.tail = make([]*target, 0, r.spill.chunk)
}

// refillLocked moves the oldest part of h's disk queue to its head: the
// tail at once, a chunk by reading it outside the lock. It reports whether
// the head grew.
func (r *router) refillLocked(h *hostQueue) bool {
	q := &h.disk
	if q.onDisk == 0 {
		h.pending.push(q.tail...)
		q.tail = nil
		return true
	}
	ref := q.chunks[0]
	q.chunks = q.chunks[1:]
	q.reading = true
	r.mu.Unlock()
	ts, err := r.spill.read(ref)
	r.mu.Lock()
	q.reading = false
	q.onDisk -= int(ref.count)
	r.notifyLocked()
	if err != nil {
		r.fatal(err)
		return false
	}
	r.mem.add(countTargets(ts))
	h.pending.push(ts...)
	return true
}

// drainOne takes the oldest part of h's disk queue (a chunk, else the tail)
// for a caller that moves or concludes all of it: a host that went down or
// refuses us. false when nothing is left.
func (r *router) drainOne(h *hostQueue) ([]*target, bool) {
	r.mu.Lock()
	q := &h.disk
	if len(q.chunks) == 0 {
		ts := q.tail
		q.tail = nil
		r.mu.Unlock()
		return ts, len(ts) > 0
	}
	ref := q.chunks[0]
	q.chunks = q.chunks[1:]
	r.mu.Unlock()
	ts, err := r.spill.read(ref)
	r.mu.Lock()
	q.onDisk -= int(ref.count)
	r.mu.Unlock()
	if err != nil {
		r.fatal(err)
		return nil, false
	}
	r.mem.add(countTargets(ts))
	return ts, true
}

// evict moves the tails of the longest host queues to disk, longest first,
// until at most goal addresses are active in memory or every queue is down
// to its head. Each chunk is written under the lock, one at a time.
func (r *router) evict(goal int) {
	keep := 2 * r.spill.chunk
	type cand struct {
		h *hostQueue
		n int
	}
	var hosts []cand
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	now := r.cfg.Clock.Now()
	for _, h := range r.hosts {
		if h.pending.len() > keep && !h.isDown(now) {
			hosts = append(hosts, cand{h, h.pending.len()})
		}
	}
	r.mu.Unlock()
	slices.SortFunc(hosts, func(a, b cand) int { return b.n - a.n })
	for _, c := range hosts {
		for r.mem.active() > goal {
			r.mu.Lock()
			ok := r.evictChunkLocked(c.h, keep)
			r.mu.Unlock()
			if !ok {
				break
			}
		}
	}
}

// evictChunkLocked writes up to a chunk of the newest addresses of h's head
// to the front of its disk queue (they are older than what is there).
func (r *router) evictChunkLocked(h *hostQueue, keep int) bool {
	if r.stopped || h.pending.len() <= keep {
		return false
	}
	from := max(keep, h.pending.len()-r.spill.chunk)
	tail := h.pending.items()[from:]
	var out, stay []*target
	for _, t := range tail {
		if spillable(t) {
			out = append(out, t)
		} else {
			stay = append(stay, t)
		}
	}
	if len(out) == 0 {
		return false
	}
	ref, err := r.spill.write(out)
	if err != nil {
		return false
	}
	n := countTargets(out)
	r.mem.add(-n)
	r.mem.spilt.Add(int64(n))
	h.pending.cutTail(from)
	h.pending.push(stay...)
	q := &h.disk
	q.chunks = append([]chunkRef{ref}, q.chunks...)
	q.onDisk += int(ref.count)
	return true
}
