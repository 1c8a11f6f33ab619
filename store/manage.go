package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Each calls fn with every unexpired verdict of namespaces (nil = all), in
// (namespace, domain, address) order, until fn returns an error, which Each
// returns. It reads in one transaction: a consistent snapshot.
func (s *Store) Each(ctx context.Context, namespaces []string, fn func(Verdict) error) error {
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, ns := range namespaces {
		want[ns] = true
	}
	cutoff := s.cutoff()
	d := &decoder{intern: true}
	return s.db.View(func(tx *bolt.Tx) error {
		segs, err := s.readSegments(tx)
		if err != nil {
			return err
		}
		its := make([]*segIter, len(segs))
		for rank, m := range segs {
			its[rank] = newSegIter(s, tx, m, rank)
			its[rank].seek(nil, nil)
		}
		mi := newMergeIter(its)
		var prevNS, prevDomain []byte
		var nsStr, domainStr string
		for n := 0; ; n++ {
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			ok, err := mi.next()
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			ns, domain, address, ok := splitKey(mi.key)
			if !ok {
				return s.corrupt(fmt.Sprintf("segment %d", mi.from.id), mi.key, errMalformed)
			}
			if !bytes.Equal(ns, prevNS) {
				prevNS, nsStr = ns, string(ns)
			}
			if !bytes.Equal(domain, prevDomain) {
				prevDomain, domainStr = domain, string(domain)
			}
			if len(want) > 0 && !want[nsStr] {
				continue
			}
			if at, _ := valueCheckedAt(mi.val); at < cutoff {
				continue
			}
			v := Verdict{Namespace: nsStr, Domain: domainStr, Address: string(address)}
			if err := decodeVerdict(d, mi.val, &v); err != nil {
				return s.corrupt(fmt.Sprintf("segment %d", mi.from.id), mi.key, err)
			}
			if err := fn(v); err != nil {
				return err
			}
		}
	})
}

// Stats describes the content of a store.
type Stats struct {
	Path       string
	FileBytes  int64
	Schema     int
	Retention  time.Duration
	LastPrune  time.Time // when entries past retention were last deleted
	Segments   int
	Namespaces []NamespaceStats // sorted by name
	Domains    int              // domains with a stored catch-all answer
	MXHosts    int              // MX hosts with stored knowledge
}

// NamespaceStats counts the verdicts of one namespace.
type NamespaceStats struct {
	Name     string
	Verdicts int
	ByStatus map[string]int
	Oldest   time.Time
	Newest   time.Time
}

// Stats counts what the store holds (unexpired entries only). It reads
// every verdict once.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Path: s.path, Schema: SchemaVersion, Retention: s.opts.Retention}
	if fi, err := os.Stat(s.path); err == nil {
		st.FileBytes = fi.Size()
	}
	byNS := map[string]*NamespaceStats{}
	err := s.Each(ctx, nil, func(v Verdict) error {
		ns := byNS[v.Namespace]
		if ns == nil {
			ns = &NamespaceStats{Name: v.Namespace, ByStatus: map[string]int{}, Oldest: v.CheckedAt, Newest: v.CheckedAt}
			byNS[v.Namespace] = ns
		}
		ns.Verdicts++
		ns.ByStatus[v.Status]++
		if v.CheckedAt.Before(ns.Oldest) {
			ns.Oldest = v.CheckedAt
		}
		if v.CheckedAt.After(ns.Newest) {
			ns.Newest = v.CheckedAt
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, ns := range byNS {
		st.Namespaces = append(st.Namespaces, *ns)
	}
	slices.SortFunc(st.Namespaces, func(a, b NamespaceStats) int { return cmpString(a.Name, b.Name) })
	cutoff := s.now().Add(-s.opts.Retention)
	err = s.db.View(func(tx *bolt.Tx) error {
		segs, err := s.readSegments(tx)
		if err != nil {
			return err
		}
		st.Segments = len(segs)
		if v := tx.Bucket(bucketMeta).Get(metaPruned); len(v) == 8 {
			st.LastPrune = time.Unix(int64(binary.BigEndian.Uint64(v)), 0).UTC()
		}
		if err := tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
			var d DomainInfo
			if decodeDomain(v, &d) == nil && !d.CatchAllAt.Before(cutoff) {
				st.Domains++
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketMX).ForEach(func(k, v []byte) error {
			var m MXInfo
			if decodeMX(v, &m) == nil {
				m.dropBefore(cutoff)
				if !m.newest().IsZero() {
					st.MXHosts++
				}
			}
			return nil
		})
	})
	return st, err
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Removed counts what a prune or forget deleted.
type Removed struct {
	Verdicts int
	Domains  int
	MXHosts  int
}

// Prune deletes every entry checked more than olderThan ago, and in any
// case every entry past retention (olderThan <= 0: retention alone).
func (s *Store) Prune(ctx context.Context, olderThan time.Duration) (Removed, error) {
	if s.w == nil {
		return Removed{}, ErrReadOnly
	}
	if err := s.Flush(ctx); err != nil {
		return Removed{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.prune(ctx, olderThan)
}

// autoPrune deletes what is past retention when that was last done more
// than a day ago, so that a store used every night keeps no personal data
// past its retention for longer than a day.
func (s *Store) autoPrune() error {
	var last int64
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaPruned); len(v) == 8 {
			last = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	}); err != nil {
		return err
	}
	if s.now().Sub(time.Unix(last, 0)) < pruneEvery {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.prune(context.Background(), 0)
	return err
}

// pruneChunkBlocks bounds the blocks one prune transaction rewrites.
const pruneChunkBlocks = 512

func (s *Store) prune(ctx context.Context, olderThan time.Duration) (Removed, error) {
	var rm Removed
	now := s.now()
	cutoffTime := now.Add(-s.opts.Retention)
	if olderThan > 0 && now.Add(-olderThan).After(cutoffTime) {
		cutoffTime = now.Add(-olderThan)
	}
	cutoff := cutoffTime.Unix()
	keep := func(_, v []byte) bool {
		at, _ := valueCheckedAt(v)
		return at >= cutoff
	}
	segs, err := s.liveSegments()
	if err != nil {
		return rm, err
	}
	for _, m := range segs {
		if m.minAt >= cutoff {
			continue // nothing in it is old enough
		}
		n, err := s.rewriteSegment(ctx, m, nil, nil, func(blk []byte) bool { return blockMinAt(blk) < cutoff }, keep)
		rm.Verdicts += n
		if err != nil {
			return rm, err
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		var drop [][]byte
		if err := tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
			var d DomainInfo
			if decodeDomain(v, &d) != nil || d.CatchAllAt.Before(cutoffTime) {
				drop = append(drop, k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range drop {
			if err := tx.Bucket(bucketDomains).Delete(k); err != nil {
				return err
			}
		}
		rm.Domains = len(drop)
		mxs := tx.Bucket(bucketMX)
		type upd struct{ k, v []byte }
		var updates []upd
		if err := mxs.ForEach(func(k, v []byte) error {
			var m MXInfo
			if decodeMX(v, &m) != nil {
				updates = append(updates, upd{k, nil})
				return nil
			}
			m.dropBefore(cutoffTime)
			switch enc := encodeMX(&m); {
			case m.newest().IsZero():
				updates = append(updates, upd{k, nil})
			case !bytes.Equal(enc, v):
				updates = append(updates, upd{k, enc})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, u := range updates {
			var err error
			if u.v == nil {
				err = mxs.Delete(u.k)
				rm.MXHosts++
			} else {
				err = mxs.Put(u.k, u.v)
			}
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaPruned, binary.BigEndian.AppendUint64(nil, uint64(now.Unix())))
	})
	if err != nil {
		return rm, fmt.Errorf("store: pruning %s: %w", s.path, err)
	}
	return rm, nil
}

// rewriteSegment removes from segment m the entries keep rejects, in the
// blocks from the one holding start up to the one holding end (nil = all)
// that touch says may hold some. It returns how many entries it removed.
// Called with writeMu held.
func (s *Store) rewriteSegment(ctx context.Context, m segMeta, start, end []byte, touch func(blk []byte) bool, keep func(k, v []byte) bool) (int, error) {
	total := 0
	from := start
	for {
		removed := 0
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var next []byte
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSeg).Bucket(segID(m.id))
			if b == nil {
				return nil // merged away meanwhile: nothing to do
			}
			// Collect first: a cursor must not walk a bucket being changed.
			var keys [][]byte
			c := b.Cursor()
			k, v := c.Seek(from)
			if from == nil {
				k, v = c.First()
			}
			for ; k != nil; k, v = c.Next() {
				if len(keys) == pruneChunkBlocks {
					next = bytes.Clone(k)
					break
				}
				if !checkBlock(v) {
					return s.corrupt(fmt.Sprintf("segment %d", m.id), k, errMalformed)
				}
				if touch(v) {
					keys = append(keys, bytes.Clone(k))
				}
				if end != nil && bytes.Compare(k, end) >= 0 {
					break // this block holds the last keys of the range
				}
			}
			for _, k := range keys {
				n, err := s.rewriteBlock(b, m.id, k, keep)
				removed += n
				if err != nil {
					return err
				}
			}
			return s.updateSegmentMeta(tx, m.id, removed)
		})
		if err != nil {
			return total + removed, fmt.Errorf("store: rewriting %s: %w", s.path, err)
		}
		total += removed
		if next == nil {
			return total, nil
		}
		from = next
	}
}

// rewriteBlock rewrites block k of b without the entries keep rejects,
// deleting it when none is left. The block keeps its key: it is still
// greater than or equal to every key left in it.
func (s *Store) rewriteBlock(b *bolt.Bucket, id uint64, k []byte, keep func(k, v []byte) bool) (int, error) {
	v := b.Get(k)
	if v == nil || !checkBlock(v) {
		return 0, s.corrupt(fmt.Sprintf("segment %d", id), k, errMalformed)
	}
	out := make([]byte, blockHeader, len(v))
	out[0] = blockVersion
	minAt := int64(math.MaxInt64)
	removed := 0
	it := blockIter{b: v[blockHeader:]}
	for {
		ek, ev, ok, bad := it.next()
		if bad {
			return 0, s.corrupt(fmt.Sprintf("segment %d", id), k, errMalformed)
		}
		if !ok {
			break
		}
		if !keep(ek, ev) {
			removed++
			continue
		}
		at, _ := valueCheckedAt(ev)
		minAt = min(minAt, at)
		out = binary.AppendUvarint(out, uint64(len(ek)))
		out = append(out, ek...)
		out = binary.AppendUvarint(out, uint64(len(ev)))
		out = append(out, ev...)
	}
	if removed == 0 {
		return 0, nil
	}
	if len(out) == blockHeader {
		return removed, b.Delete(k)
	}
	binary.BigEndian.PutUint64(out[1:], uint64(minAt))
	return removed, b.Put(k, out)
}

// updateSegmentMeta takes removed entries off segment id's count, and
// drops the segment when it is empty.
func (s *Store) updateSegmentMeta(tx *bolt.Tx, id uint64, removed int) error {
	if removed == 0 {
		return nil
	}
	segments := tx.Bucket(bucketSegments)
	m, ok := decodeSegMeta(segID(id), segments.Get(segID(id)))
	if !ok {
		return s.corrupt("segments", segID(id), errMalformed)
	}
	m.entries -= int64(removed)
	if k, _ := tx.Bucket(bucketSeg).Bucket(segID(id)).Cursor().First(); m.entries <= 0 || k == nil {
		if err := segments.Delete(segID(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketSeg).DeleteBucket(segID(id))
	}
	return segments.Put(segID(id), m.encode())
}

// Namespaces lists the namespaces that hold verdicts.
func (s *Store) Namespaces(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		segs, err := s.readSegments(tx)
		if err != nil {
			return err
		}
		var from []byte
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			// The smallest key from "from" on, over all segments, names the
			// next namespace.
			var first []byte
			for rank, m := range segs {
				it := newSegIter(s, tx, m, rank)
				it.seek(from, nil)
				if it.err != nil {
					return it.err
				}
				if it.valid && (first == nil || bytes.Compare(it.key, first) < 0) {
					first = it.key
				}
			}
			if first == nil {
				return nil
			}
			ns, _, _, ok := splitKey(first)
			if !ok {
				return s.corrupt("segments", first, errMalformed)
			}
			out = append(out, string(ns))
			from = prefixEnd(namespacePrefix(string(ns)))
		}
	})
	return out, err
}

// ForgetAddress deletes the verdicts of address in namespaces (nil = all),
// including any still buffered, and returns how many it deleted. The local
// part matches without regard to case: a person's address typed in another
// case is still theirs.
func (s *Store) ForgetAddress(ctx context.Context, namespaces []string, address string) (int, error) {
	domain := address
	if i := bytes.LastIndexByte([]byte(address), '@'); i >= 0 {
		domain = address[i+1:]
	}
	if !validKeyPart(address) || !validKeyPart(domain) {
		return 0, fmt.Errorf("%w: address %q", ErrBadKey, address)
	}
	rm, err := s.forget(ctx, namespaces, func(ns string) (start, end []byte, drop func(k []byte) bool) {
		p := domainPrefix(ns, domain)
		return p, prefixEnd(p), func(k []byte) bool { return bytes.EqualFold(k[len(p):], []byte(address)) }
	})
	return rm.Verdicts, err
}

// ForgetDomain deletes every verdict of domain in namespaces (nil = all),
// including any still buffered; when it is all namespaces, it also deletes
// the domain's catch-all answer. (MX host knowledge is about the host,
// which many domains share, and stays.)
func (s *Store) ForgetDomain(ctx context.Context, namespaces []string, domain string) (Removed, error) {
	if !validKeyPart(domain) {
		return Removed{}, fmt.Errorf("%w: domain %q", ErrBadKey, domain)
	}
	rm, err := s.forget(ctx, namespaces, func(ns string) (start, end []byte, drop func(k []byte) bool) {
		p := domainPrefix(ns, domain)
		return p, prefixEnd(p), func([]byte) bool { return true }
	})
	if err != nil || namespaces != nil {
		return rm, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketDomains).Get([]byte(domain)) != nil {
			rm.Domains++
		}
		return tx.Bucket(bucketDomains).Delete([]byte(domain))
	})
	return rm, err
}

// forget deletes the keys in [start, end) of each namespace that drop
// accepts, from every segment.
func (s *Store) forget(ctx context.Context, namespaces []string, keyRange func(ns string) (start, end []byte, drop func(k []byte) bool)) (Removed, error) {
	var rm Removed
	if s.w == nil {
		return rm, ErrReadOnly
	}
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return rm, err
		}
	}
	// What is still buffered is committed first, so that it is forgotten too.
	if err := s.Flush(ctx); err != nil {
		return rm, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if namespaces == nil {
		var err error
		if namespaces, err = s.Namespaces(ctx); err != nil {
			return rm, err
		}
	}
	segs, err := s.liveSegments()
	if err != nil {
		return rm, err
	}
	for _, ns := range namespaces {
		start, end, drop := keyRange(ns)
		keep := func(k, _ []byte) bool {
			return bytes.Compare(k, start) < 0 || bytes.Compare(k, end) >= 0 || !drop(k)
		}
		for _, m := range segs {
			n, err := s.rewriteSegment(ctx, m, start, end, func([]byte) bool { return true }, keep)
			rm.Verdicts += n
			if err != nil {
				return rm, err
			}
		}
	}
	return rm, nil
}
