package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// compactChunkBytes bounds what one compaction transaction writes, so its
// memory stays small whatever the size of the segments it merges.
const compactChunkBytes = 8 << 20

// compact merges segments while the newest ones are numerous enough: the
// longest run of newest segments whose level is at most the newest one's is
// merged when it has levelFanout segments or more. Called with writeMu held.
func (s *Store) compact() error {
	for {
		segs, err := s.liveSegments()
		if err != nil {
			return err
		}
		n := len(segs)
		if n < levelFanout {
			return nil
		}
		lvl := segs[n-1].level()
		i := n - 1
		for i > 0 && segs[i-1].level() <= lvl {
			i--
		}
		if n-i < levelFanout {
			return nil
		}
		if err := s.mergeSegments(segs[i:]); err != nil {
			return err
		}
	}
}

// mergeSegments replaces inputs (consecutive in age, oldest first) by one
// segment holding, for each key, the newest input's entry, leaving out the
// entries past retention. The output is written over several transactions
// and becomes live, replacing its inputs, in the last one; a crash before
// that leaves an orphan that Open removes. Called with writeMu held.
func (s *Store) mergeSegments(inputs []segMeta) error {
	cutoff := s.cutoff()
	var (
		id      uint64
		resume  []byte
		meta    segMeta
		started bool
	)
	for {
		finished := false
		err := s.db.Update(func(tx *bolt.Tx) error {
			if !started {
				var err error
				if id, err = nextSegmentID(tx); err != nil {
					return err
				}
				if _, err := tx.Bucket(bucketSeg).CreateBucket(segID(id)); err != nil {
					return err
				}
			}
			bucket := tx.Bucket(bucketSeg).Bucket(segID(id))
			bucket.FillPercent = 1
			sw := s.newSegWriter(bucket, id)
			if started {
				sw.meta = meta
			}
			its := make([]*segIter, len(inputs))
			for i, in := range inputs {
				its[i] = newSegIter(s, tx, in, i)
				its[i].seek(resume, nil)
				if resume != nil && its[i].valid && bytes.Equal(its[i].key, resume) {
					its[i].step()
				}
			}
			m := newMergeIter(its)
			for {
				ok, err := m.next()
				if err != nil {
					return err
				}
				if !ok {
					finished = true
					break
				}
				if at, _ := valueCheckedAt(m.val); at < cutoff {
					continue
				}
				if err := sw.add(m.key, m.val); err != nil {
					return err
				}
				if sw.written >= compactChunkBytes && len(sw.block) == blockHeader {
					// A block boundary: the next transaction goes on after
					// this key.
					resume = bytes.Clone(m.key)
					break
				}
			}
			if err := sw.finishBlock(); err != nil {
				return err
			}
			meta = sw.meta
			started = true
			if !finished {
				return nil
			}
			segments := tx.Bucket(bucketSegments)
			for _, in := range inputs {
				if err := segments.Delete(segID(in.id)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketSeg).DeleteBucket(segID(in.id)); err != nil {
					return err
				}
			}
			if meta.entries == 0 {
				return tx.Bucket(bucketSeg).DeleteBucket(segID(id))
			}
			// The inputs were the newest segments and nothing was committed
			// meanwhile (writeMu), so the merged segment, with the highest
			// id, is in their place in the order of age.
			return segments.Put(segID(id), meta.encode())
		})
		s.recycleBlocks() // the transaction has ended
		if err != nil {
			return fmt.Errorf("store: compacting %s: %w", s.path, err)
		}
		if finished {
			return nil
		}
	}
}
