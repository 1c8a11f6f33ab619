package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"time"
)

// VerdictSet holds the fresh verdicts of some domains, read from the store
// in one pass, for looking addresses up one at a time as a caller meets
// them (a run reading its input row by row). It is compact and holds no
// pointer per verdict: each verdict stays encoded, copied with its address
// into an arena, and is decoded only when asked for (Verdict), so that
// holding a million of them costs the garbage collector nothing to scan.
// A lookup touches two places in memory: its slot in the index, which
// holds where the verdict is, and the verdict.
//
// A VerdictSet is a snapshot: what is Put after LoadFresh is not in it, and
// freshness is judged once, when it is loaded. It is not safe for
// concurrent use.
type VerdictSet struct {
	namespaces []string
	domains    []string
	loaded     int // domains[:loaded] are in the set whole
	n          int // verdicts held
	// arena holds the records, in chunks (a record never straddles two)
	// that double in size up to arenaChunk: growing it never copies what
	// it holds. A record is its header (recordHeader), the address, then
	// the encoded verdict.
	arena [][]byte
	// index is open addressing on the address: a slot is a record's
	// offset << 32 | the high half of the address's hash (never 0, so 0 is
	// an empty slot).
	index []uint64
	seed  maphash.Seed
	d     decoder
}

// SetRef is where a VerdictSet holds a verdict, as Lookup finds it.
type SetRef struct {
	off uint32
	id  uint32
}

// ID numbers the set's verdicts from 0 to Len()-1, for callers that keep
// something per verdict.
func (r SetRef) ID() int { return int(r.id) }

// Record header: id, domain index (4 bytes each), address length, value
// length (2 each), namespace index (1).
const recordHeader = 4 + 4 + 2 + 2 + 1

// Bounds of one VerdictSet: offsets are 32-bit (4,096 chunks of 1 MiB at
// most), namespaces counted in a byte.
const (
	maxSetNamespaces = 255
	arenaBits        = 20
	arenaChunk       = 1 << arenaBits // > the biggest record: an address and a value of at most 64 KiB each
	firstChunk       = 16 << 10
	maxChunks        = 1 << (32 - arenaBits)
)

// add copies a verdict into the arena and returns its offset; false when
// the arena is full.
func (vs *VerdictSet) add(id uint32, r *rawVerdict) (uint32, bool) {
	addr, val := r.addr, r.val
	n := recordHeader + len(addr) + len(val)
	last := len(vs.arena) - 1
	if last < 0 || len(vs.arena[last])+n > cap(vs.arena[last]) {
		if len(vs.arena) == maxChunks {
			return 0, false
		}
		size := firstChunk
		if last >= 0 {
			size = min(2*cap(vs.arena[last]), arenaChunk)
		}
		for size < n {
			size *= 2
		}
		vs.arena = append(vs.arena, make([]byte, 0, size))
		last++
	}
	c := vs.arena[last]
	off := uint32(last)<<arenaBits | uint32(len(c))
	c = binary.LittleEndian.AppendUint32(c, id)
	c = binary.LittleEndian.AppendUint32(c, uint32(r.domain))
	c = binary.LittleEndian.AppendUint16(c, uint16(len(addr)))
	c = binary.LittleEndian.AppendUint16(c, uint16(len(val)))
	c = append(c, byte(r.ns))
	vs.arena[last] = append(append(c, addr...), val...)
	return off, true
}

// record is a record as read from the arena.
type record struct {
	id, domain uint32
	ns         int
	addr, val  []byte
}

// record returns the record at off.
func (vs *VerdictSet) record(off uint32) record {
	c := vs.arena[off>>arenaBits][off&(arenaChunk-1):]
	alen, vlen := int(binary.LittleEndian.Uint16(c[8:])), int(binary.LittleEndian.Uint16(c[10:]))
	r := record{id: binary.LittleEndian.Uint32(c), domain: binary.LittleEndian.Uint32(c[4:]), ns: int(c[12])}
	c = c[recordHeader:]
	r.addr, r.val = c[:alen], c[alen:alen+vlen]
	return r
}

// LoadFresh reads into a VerdictSet the verdicts of domains, stored in any
// of namespaces (as LookupDomains gives them: an address once, its most
// recent verdict), that are fresh now (Fresh). It reads the domains in the
// order given and stops before the first one that would take the set past
// limit verdicts (0 = no limit), or past the set's own bounds: Loaded says
// which domains the set holds whole. Domains should be sorted, as for
// LookupDomains.
func (s *Store) LoadFresh(ctx context.Context, namespaces []string, domains []string, limit int) (*VerdictSet, error) {
	if len(namespaces) > maxSetNamespaces {
		return nil, fmt.Errorf("%w: more than %d namespaces", ErrBadKey, maxSetNamespaces)
	}
	vs := &VerdictSet{namespaces: namespaces, domains: domains, seed: maphash.MakeSeed(), d: decoder{intern: true}}
	now := s.now()
	retention := now.Add(-s.opts.Retention).Unix()
	fr := s.opts.Freshness
	d := decoder{intern: true}
	// Of every record, for the index: where it is and its address's hash
	// (made while the address is at hand).
	var offs []uint32
	var hashes []uint64
	cur := -1     // the domain being read
	curStart := 0 // its first record
	full := false // the domain being read does not fit
	complete := func(upto int) {
		// Domains before upto have been read to their end.
		vs.loaded = max(vs.loaded, upto)
	}
	var derr error
	err := s.scanDomains(ctx, namespaces, domains, func(r *rawVerdict) bool {
		if r.domain != cur {
			complete(r.domain)
			cur, curStart = r.domain, len(offs)
		}
		status, reason, ok := d.statusReason(r.val)
		if !ok {
			derr = s.corrupt(fmt.Sprintf("segment %d", r.seg), r.key, errMalformed)
			return false
		}
		if r.at < retention || !fr.freshAt(r.at, status, reason, now) {
			return true
		}
		if (limit > 0 && len(offs) >= limit) || len(r.addr) > 0xffff || len(r.val) > 0xffff {
			full = true
			return false
		}
		off, ok := vs.add(uint32(len(offs)), r)
		if !ok {
			full = true
			return false
		}
		offs = append(offs, off)
		hashes = append(hashes, maphash.Bytes(vs.seed, r.addr))
		return true
	}, func() bool { return true })
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	if full {
		// The domain that did not fit is left out whole (its records stay
		// in the arena, unused).
		offs, hashes = offs[:curStart], hashes[:curStart]
		complete(cur)
	} else {
		complete(len(domains))
	}
	vs.buildIndex(offs, hashes)
	return vs, nil
}

// freshAt is VerdictFresh for a verdict still encoded: checked at (Unix
// seconds), with its status and reason.
func (f Freshness) freshAt(at int64, status, reason string, now time.Time) bool {
	if f.Refresh || at > now.Unix() {
		return false
	}
	return now.Sub(time.Unix(at, 0)) < f.Lifetime(status, reason)
}

// statusReason reads the status and reason of an encoded verdict.
func (d *decoder) statusReason(val []byte) (status, reason string, ok bool) {
	if len(val) < checkedAtBytes+1 {
		return "", "", false
	}
	d.b, d.bad = val[checkedAtBytes+1:], false
	d.small(999)
	d.small(1 << 20)
	status = d.word(fieldStatus)
	reason = d.word(fieldReason)
	return status, reason, !d.bad
}

// slot is what the index holds for a record at off whose address hashes
// to h.
func slot(off uint32, h uint64) uint64 { return uint64(off)<<32 | h>>32 | 1 }

func (vs *VerdictSet) buildIndex(offs []uint32, hashes []uint64) {
	vs.n = len(offs)
	n := 8
	for n < 2*len(offs) {
		n *= 2
	}
	vs.index = make([]uint64, n)
	mask := uint64(n - 1)
	for k, off := range offs {
		h := hashes[k]
		for i := h & mask; ; i = (i + 1) & mask {
			if vs.index[i] == 0 {
				vs.index[i] = slot(off, h)
				break
			}
		}
	}
}

// Len is how many verdicts the set holds.
func (vs *VerdictSet) Len() int { return vs.n }

// Loaded reports whether the set holds domain i (an index in the domains
// of LoadFresh) whole: every fresh verdict the store had of it.
func (vs *VerdictSet) Loaded(i int) bool { return i < vs.loaded }

// Lookup finds the verdict of address, if the set holds one.
func (vs *VerdictSet) Lookup(address string) (SetRef, bool) {
	h := maphash.String(vs.seed, address)
	tag := uint32(h>>32 | 1)
	mask := uint64(len(vs.index) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := vs.index[i]
		if s == 0 {
			return SetRef{}, false
		}
		if uint32(s) != tag {
			continue
		}
		off := uint32(s >> 32)
		if r := vs.record(off); string(r.addr) == address {
			return SetRef{off: off, id: r.id}, true
		}
	}
}

// Verdict decodes the verdict at r. Its Address is address when that is
// not "" (sparing a copy): the address given to Lookup.
func (vs *VerdictSet) Verdict(r SetRef, address string) (Verdict, error) {
	rec := vs.record(r.off)
	if address == "" {
		address = string(rec.addr)
	}
	v := Verdict{Namespace: vs.namespaces[rec.ns], Domain: vs.domains[rec.domain], Address: address}
	if err := decodeVerdict(&vs.d, rec.val, &v); err != nil {
		return v, fmt.Errorf("store: verdict of %q: %w", rec.addr, err)
	}
	return v, nil
}
