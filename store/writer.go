package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// batch is what was Put and is waiting to be committed. Verdicts are
// encoded at Put time into one buffer, so a batch of 10,000 is a handful of
// allocations.
type batch struct {
	buf     []byte
	ents    []entRef
	domains []DomainInfo
	mx      []MXInfo
	done    []chan error // Flush calls waiting for this batch

	sortKeys, sortSpare []sortKey // sortBatch's scratch, kept for the next use of the batch
}

// entRef locates one entry in batch.buf: key buf[k:v], value buf[v:end].
type entRef struct{ k, v, end uint32 }

func (b *batch) size() int { return len(b.ents) + len(b.domains) + len(b.mx) }

func (b *batch) reset() {
	b.buf, b.ents, b.domains, b.mx, b.done = b.buf[:0], b.ents[:0], b.domains[:0], b.mx[:0], nil
}

// absorb prepends older's contents to b (used when a hand-off is abandoned).
func (b *batch) absorb(older *batch) {
	n := *older
	for _, e := range b.ents {
		off := uint32(len(n.buf))
		n.buf = append(n.buf, b.buf[e.k:e.end]...)
		n.ents = append(n.ents, entRef{off, off + e.v - e.k, off + e.end - e.k})
	}
	n.domains = append(n.domains, b.domains...)
	n.mx = append(n.mx, b.mx...)
	n.done = append(n.done, b.done...)
	*b = n
}

// maxBatchBytes commits a batch early when its verdicts are large.
const maxBatchBytes = 8 << 20

// writer buffers Puts and commits them from one goroutine, in order: a
// batch is committed, atomically, only after every earlier batch. A crash
// loses what was not committed yet, never part of a batch.
type writer struct {
	s *Store

	mu     sync.Mutex
	cur    *batch
	spare  *batch
	err    error // the first failed commit; later writes fail with it
	closed bool

	// sending is held while a batch is handed to the committer, so batches
	// reach it in the order they were taken; it is a channel so that
	// waiting for it can be cancelled.
	sending chan struct{}
	full    chan *batch
	quit    chan struct{}
	stopped chan struct{}
}

func newWriter(s *Store) *writer {
	w := &writer{
		s:       s,
		cur:     &batch{},
		sending: make(chan struct{}, 1),
		// One batch may wait while another is committed, so Put rarely
		// blocks; memory stays at most three batches.
		full:    make(chan *batch, 1),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go w.run()
	return w
}

// validNamespace: namespaces are names a user types (--store-namespace).
func validNamespace(ns string) bool {
	if ns == "" || len(ns) > 64 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateNamespace reports whether ns can name a namespace: 1 to 64 of
// A-Z a-z 0-9 . _ -.
func ValidateNamespace(ns string) error {
	if !validNamespace(ns) {
		return fmt.Errorf("%w: namespace %q: want 1 to 64 of A-Z a-z 0-9 . _ -", ErrBadKey, ns)
	}
	return nil
}

func validKeyPart(s string) bool {
	return s != "" && len(s) <= maxKeyPartBytes && strings.IndexByte(s, keySep) < 0
}

// normalise fills the defaults of v and checks its key.
func (s *Store) normalise(v *Verdict) error {
	if v.Namespace == "" {
		v.Namespace = DefaultNamespace
	}
	if v.Domain == "" {
		if i := strings.LastIndexByte(v.Address, '@'); i >= 0 {
			v.Domain = v.Address[i+1:]
		}
	}
	if err := ValidateNamespace(v.Namespace); err != nil {
		return err
	}
	if !validKeyPart(v.Address) || !validKeyPart(v.Domain) {
		return fmt.Errorf("%w: address %q, domain %q", ErrBadKey, v.Address, v.Domain)
	}
	if v.CheckedAt.IsZero() {
		v.CheckedAt = s.now()
	}
	return nil
}

// Put queues v to be written; it is committed with its batch (at most
// Options.FlushInterval later, or by Flush or Close). It blocks only while
// two earlier batches are still being written, until ctx is done. It fails
// when an earlier commit failed, with that error.
func (s *Store) Put(ctx context.Context, v Verdict) error {
	if s.w == nil {
		return ErrReadOnly
	}
	if err := s.normalise(&v); err != nil {
		return err
	}
	w := s.w
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return err
	}
	b := w.cur
	off := uint32(len(b.buf))
	b.buf = verdictKey(b.buf, v.Namespace, v.Domain, v.Address)
	voff := uint32(len(b.buf))
	b.buf = encodeVerdict(b.buf, &v)
	b.ents = append(b.ents, entRef{off, voff, uint32(len(b.buf))})
	full := b.size() >= s.opts.BatchSize || len(b.buf) >= maxBatchBytes
	w.mu.Unlock()
	if full {
		return w.handOff(ctx, nil)
	}
	return nil
}

// PutDomain queues what was learnt about a domain; it replaces what was
// known when it is newer (CatchAllAt).
func (s *Store) PutDomain(ctx context.Context, d DomainInfo) error {
	if s.w == nil {
		return ErrReadOnly
	}
	if !validKeyPart(d.Domain) {
		return fmt.Errorf("%w: domain %q", ErrBadKey, d.Domain)
	}
	d.CatchAllMX = clip(d.CatchAllMX, maxShortBytes)
	return s.w.queue(ctx, func(b *batch) { b.domains = append(b.domains, d) })
}

// PutMX queues what was learnt about an MX host. It is merged into what was
// known, fact by fact, the newer winning; refusals are merged per
// (Egress, Operator). Fields with a zero time are left as they were.
func (s *Store) PutMX(ctx context.Context, m MXInfo) error {
	if s.w == nil {
		return ErrReadOnly
	}
	if !validKeyPart(m.Host) {
		return fmt.Errorf("%w: MX host %q", ErrBadKey, m.Host)
	}
	m.Refusals = slices.Clone(m.Refusals)
	return s.w.queue(ctx, func(b *batch) { b.mx = append(b.mx, m) })
}

func (w *writer) queue(ctx context.Context, add func(*batch)) error {
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return err
	}
	add(w.cur)
	full := w.cur.size() >= w.s.opts.BatchSize
	w.mu.Unlock()
	if full {
		return w.handOff(ctx, nil)
	}
	return nil
}

// usable is called with mu held.
func (w *writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// Flush commits everything Put before it was called and returns once that
// is on disk, or when ctx is done.
func (s *Store) Flush(ctx context.Context) error {
	if s.w == nil {
		return nil
	}
	w := s.w
	w.mu.Lock()
	err := w.usable()
	w.mu.Unlock()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	if err := w.handOff(ctx, done); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOff gives the current batch to the committer, with done (if not nil)
// to be told when it is committed.
func (w *writer) handOff(ctx context.Context, done chan error) error {
	select {
	case w.sending <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stopped:
		return ErrClosed
	}
	defer func() { <-w.sending }()
	w.mu.Lock()
	b := w.cur
	if done != nil {
		b.done = append(b.done, done)
	}
	if b.size() == 0 && done == nil {
		w.mu.Unlock()
		return nil
	}
	w.cur = w.spare
	w.spare = nil
	if w.cur == nil {
		w.cur = &batch{}
	}
	w.mu.Unlock()
	select {
	case w.full <- b:
		return nil
	case <-ctx.Done():
	case <-w.stopped:
	}
	// Not handed over: put it back in front of what was Put since.
	w.mu.Lock()
	w.cur.absorb(b)
	w.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrClosed
}

func (w *writer) run() {
	defer close(w.stopped)
	tick := time.NewTicker(w.s.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case b := <-w.full:
			w.commit(b)
		case <-tick.C:
			// Commit what has waited a whole interval, unless a hand-off
			// is under way (its batch is on its way here).
			select {
			case w.sending <- struct{}{}:
				w.mu.Lock()
				b := w.cur
				if b.size() > 0 {
					w.cur = w.spare
					w.spare = nil
					if w.cur == nil {
						w.cur = &batch{}
					}
				} else {
					b = nil
				}
				w.mu.Unlock()
				<-w.sending
				if b != nil {
					w.commit(b)
				}
			default:
			}
		case <-w.quit:
			return
		}
	}
}

func (w *writer) commit(b *batch) {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	w.s.writeMu.Lock()
	if err == nil {
		err = w.s.writeBatch(b)
	}
	compact := err == nil && len(b.ents) > 0
	w.s.writeMu.Unlock()
	for _, d := range b.done {
		d <- err
	}
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	b.reset()
	if w.spare == nil {
		w.spare = b
	}
	w.mu.Unlock()
	if compact {
		w.s.writeMu.Lock()
		cerr := w.s.compact()
		w.s.writeMu.Unlock()
		if cerr != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = cerr
			}
			w.mu.Unlock()
		}
	}
}

// close commits what is buffered and stops the committer. Puts that race
// with it fail with ErrClosed.
func (w *writer) close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	done := make(chan error, 1)
	err := w.handOff(context.Background(), done)
	if err == nil {
		err = <-done
	}
	w.mu.Lock()
	if err == nil {
		err = w.err
	}
	w.mu.Unlock()
	close(w.quit)
	<-w.stopped
	return err
}

// sortBatch sorts the entries by key, and equal keys in the order they
// were Put (their place in buf), so the last one wins. Keys in a batch share
// a long prefix (namespace, then often "d"...), so each entry first gets the
// 16 bytes that follow the prefix common to the whole batch, as two
// integers, and only equal abbreviations compare the rest of the keys. Eight
// bytes were not enough: they hold little more than the domain, so the
// addresses of one domain all tied and compared whole keys. The keys are
// sorted in a slice kept with the batch, so a commit allocates nothing.
func sortBatch(b *batch) {
	if len(b.ents) < 2 {
		return
	}
	first := b.buf[b.ents[0].k:b.ents[0].v]
	common := len(first)
	for _, e := range b.ents[1:] {
		k := b.buf[e.k:e.v]
		n := min(common, len(k))
		i := 0
		for i < n && k[i] == first[i] {
			i++
		}
		common = i
	}
	keys := slices.Grow(b.sortKeys[:0], len(b.ents))[:len(b.ents)]
	for i, e := range b.ents {
		var a [sortAbbrevBytes]byte
		k := b.buf[e.k:e.v]
		if common < len(k) {
			copy(a[:], k[common:])
		}
		keys[i] = sortKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:]), e}
	}
	keys, b.sortSpare = radixSort(keys, slices.Grow(b.sortSpare[:0], len(keys))[:len(keys)])
	// Equal abbreviations stay in Put order; runs of them are ordered by
	// the rest of their keys.
	rest := uint32(common + sortAbbrevBytes) // bytes known equal when abbreviations are
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].hi == keys[i].hi && keys[j].lo == keys[i].lo {
			j++
		}
		if j-i > 1 {
			slices.SortStableFunc(keys[i:j], func(x, y sortKey) int { return compareTails(b.buf, x.e, y.e, rest) })
		}
		i = j
	}
	for i := range keys {
		b.ents[i] = keys[i].e
	}
	b.sortKeys = keys
}

// compareTails orders two keys whose abbreviations are equal: they are
// equal up to the shorter one's end or to rest, whichever comes first, and
// the longer one holds zeros there, so a key that ends within the
// abbreviation sorts before a longer one. Equal keys compare equal (the
// caller's stable sort keeps them in Put order).
func compareTails(buf []byte, x, y entRef, rest uint32) int {
	lx, ly := x.v-x.k, y.v-y.k
	if lx <= rest || ly <= rest {
		return cmp.Compare(lx, ly)
	}
	return bytes.Compare(buf[x.k+rest:x.v], buf[y.k+rest:y.v])
}

// radixSort sorts keys by (hi, lo), stably: a least-significant-digit
// radix sort on bytes, skipping the bytes that are the same in every key
// (a batch's keys share much: ".test", "\x00u"...). It returns the sorted
// slice and the other one, both for reuse.
func radixSort(keys, spare []sortKey) (sorted, other []sortKey) {
	var counts [sortAbbrevBytes][256]int
	for i := range keys {
		k := &keys[i]
		for d := range 8 {
			counts[d][byte(k.lo>>(8*d))]++
			counts[8+d][byte(k.hi>>(8*d))]++
		}
	}
	src, dst := keys, spare
	for d := range sortAbbrevBytes {
		c := &counts[d]
		if c[digit(&src[0], d)] == len(src) {
			continue // one value: this byte orders nothing
		}
		sum := 0
		for v := range c {
			sum, c[v] = sum+c[v], sum
		}
		for i := range src {
			v := digit(&src[i], d)
			dst[c[v]] = src[i]
			c[v]++
		}
		src, dst = dst, src
	}
	return src, dst
}

// digit is byte d of a key's abbreviation, from the least significant.
func digit(k *sortKey, d int) byte {
	if d < 8 {
		return byte(k.lo >> (8 * d))
	}
	return byte(k.hi >> (8 * (d - 8)))
}

const sortAbbrevBytes = 16

// sortKey is an entry with the 16 bytes of its key that follow the batch's
// common prefix.
type sortKey struct {
	hi, lo uint64
	e      entRef
}

// writeBatch commits a batch: its verdicts as a new segment, its domain
// and MX knowledge merged into their buckets, in one transaction.
func (s *Store) writeBatch(b *batch) error {
	sortBatch(b)
	defer s.recycleBlocks()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if len(b.ents) > 0 {
			id, err := nextSegmentID(tx)
			if err != nil {
				return err
			}
			bucket, err := tx.Bucket(bucketSeg).CreateBucket(segID(id))
			if err != nil {
				return err
			}
			bucket.FillPercent = 1 // written in key order, never updated in place
			sw := s.newSegWriter(bucket, id)
			for i, e := range b.ents {
				if i+1 < len(b.ents) && bytes.Equal(b.buf[e.k:e.v], b.buf[b.ents[i+1].k:b.ents[i+1].v]) {
					continue // shadowed by a later Put of the same key
				}
				if err := sw.add(b.buf[e.k:e.v], b.buf[e.v:e.end]); err != nil {
					return err
				}
			}
			if err := sw.finishBlock(); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSegments).Put(segID(id), sw.meta.encode()); err != nil {
				return err
			}
		}
		domains := tx.Bucket(bucketDomains)
		for i := range b.domains {
			d := &b.domains[i]
			var old DomainInfo
			if v := domains.Get([]byte(d.Domain)); v != nil && decodeDomain(v, &old) == nil && old.CatchAllAt.After(d.CatchAllAt) {
				continue
			}
			if err := domains.Put([]byte(d.Domain), encodeDomain(d)); err != nil {
				return err
			}
		}
		mxs := tx.Bucket(bucketMX)
		for _, m := range b.mx {
			var old MXInfo
			if v := mxs.Get([]byte(m.Host)); v != nil {
				if err := decodeMX(v, &old); err != nil {
					old = MXInfo{} // damaged knowledge is replaced, not fatal
				}
			}
			merged := mergeMX(old, m)
			if err := mxs.Put([]byte(m.Host), encodeMX(&merged)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: writing %s: %w", s.path, err)
	}
	return nil
}
