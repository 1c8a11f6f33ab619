package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Reads see what was committed (by the batch timer, Flush or Close), not
// what is still buffered, and never an entry older than the retention.

// Bounds on one read transaction of LookupDomains: a long read
// transaction would keep the writer from reusing freed pages, and from
// growing the file's mapping (which waits for the readers), so verdicts are
// read in short transactions into a buffer and handed to fn only after the
// transaction ended: fn may block, even on the writer, without deadlock.
const (
	lookupBatch   = 4096 // verdicts
	lookupDomains = 1024 // domains, when they hold few verdicts
)

// LookupDomain calls fn, in address order, with each verdict of domain
// stored in any of namespaces (the run's own first, then the shared ones
// named explicitly), until fn returns false. An address stored in several
// namespaces is given once: its most recent verdict (the earlier namespace
// on a tie). Verdicts past retention are left out; whether one is fresh
// enough to reuse is for the caller to ask (Fresh).
func (s *Store) LookupDomain(ctx context.Context, namespaces []string, domain string, fn func(Verdict) bool) error {
	_, err := s.LookupDomains(ctx, namespaces, []string{domain}, func(_ int, v Verdict) bool { return fn(v) })
	return err
}

// LookupDomains is LookupDomain for many domains at once, much cheaper per
// domain and fastest when domains are sorted (each segment is then read
// forward, never searched again). fn gets the index of the verdict's domain
// in domains. It returns how many verdicts it gave.
func (s *Store) LookupDomains(ctx context.Context, namespaces []string, domains []string, fn func(i int, v Verdict) bool) (int, error) {
	type found struct {
		i int
		v Verdict
	}
	d := &decoder{intern: true}
	buf := make([]found, 0, lookupBatch)
	given := 0
	var derr error
	err := s.scanDomains(ctx, namespaces, domains, func(r *rawVerdict) bool {
		v := Verdict{Namespace: namespaces[r.ns], Domain: domains[r.domain], Address: string(r.addr)}
		if err := decodeVerdict(d, r.val, &v); err != nil {
			derr = s.corrupt(fmt.Sprintf("segment %d", r.seg), r.key, err)
			return false
		}
		buf = append(buf, found{r.domain, v})
		return true
	}, func() bool {
		if derr != nil {
			return false
		}
		for _, f := range buf {
			given++
			if !fn(f.i, f.v) {
				return false
			}
		}
		buf = buf[:0]
		return true
	})
	if err == nil {
		err = derr
	}
	return given, err
}

// rawVerdict is a verdict as the scan meets it, still encoded: its slices
// are valid only until the scan moves on.
type rawVerdict struct {
	domain int    // index in the domains scanned
	ns     int    // index in the namespaces scanned
	key    []byte // the whole key
	addr   []byte // the address part of key
	val    []byte
	at     int64 // checked_at, Unix seconds
	seg    uint64
}

// scanDomains calls visit, in (domain, address) order, with each unexpired
// verdict of domains stored in any of namespaces, an address stored in
// several namespaces once (its most recent verdict; the earlier namespace
// on a tie), until visit returns false. It reads in short transactions (see
// lookupBatch) and calls between after each, outside it; false from between
// stops the scan too.
func (s *Store) scanDomains(ctx context.Context, namespaces []string, domains []string, visit func(*rawVerdict) bool, between func() bool) error {
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return err
		}
	}
	if len(namespaces) == 0 {
		return fmt.Errorf("%w: no namespace to look in", ErrBadKey)
	}
	cutoff := s.cutoff()
	// The next verdict to read: domain di, addresses after "after" (nil =
	// from its first).
	di, after := 0, []byte(nil)
	stop := false
	for di < len(domains) && !stop {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.View(func(tx *bolt.Tx) error {
			segs, err := s.readSegments(tx)
			if err != nil {
				return err
			}
			sc := newScanner(s, tx, segs, namespaces, cutoff)
			n := 0
			for nd := 0; nd < lookupDomains && di < len(domains); nd++ {
				if !validKeyPart(domains[di]) {
					di, after = di+1, nil
					continue // no such key can have been stored
				}
				full := false
				err := sc.scan(di, domains[di], after, func(r *rawVerdict) bool {
					if !visit(r) {
						stop = true
						return false
					}
					if n++; n == lookupBatch {
						full, after = true, append(after[:0:0], r.addr...)
						return false
					}
					return true
				})
				if err != nil || full || stop {
					return err
				}
				di, after = di+1, nil
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !between() {
			return nil
		}
	}
	return nil
}

// Get returns the verdict of address stored in any of namespaces (the most
// recent), or ErrNotFound.
func (s *Store) Get(ctx context.Context, namespaces []string, address string) (Verdict, error) {
	var found Verdict
	if err := ctx.Err(); err != nil {
		return found, err
	}
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return found, err
		}
	}
	domain := address
	if i := bytes.LastIndexByte([]byte(address), '@'); i >= 0 {
		domain = address[i+1:]
	}
	if !validKeyPart(address) || !validKeyPart(domain) {
		return found, ErrNotFound
	}
	cutoff := s.cutoff()
	ok := false
	err := s.db.View(func(tx *bolt.Tx) error {
		segs, err := s.readSegments(tx)
		if err != nil {
			return err
		}
		for _, ns := range namespaces {
			key := verdictKey(nil, ns, domain, address)
			end := append(bytes.Clone(key), 0) // just this key
			its := make([]*segIter, len(segs))
			for rank, m := range segs {
				its[rank] = newSegIter(s, tx, m, rank)
				its[rank].seek(key, end)
			}
			mi := newMergeIter(its)
			has, err := mi.next()
			if err != nil {
				return err
			}
			if !has {
				continue
			}
			if at, _ := valueCheckedAt(mi.val); at < cutoff {
				continue
			}
			v := Verdict{Namespace: ns, Domain: domain, Address: address}
			if err := decodeVerdict(&decoder{}, mi.val, &v); err != nil {
				return s.corrupt(fmt.Sprintf("segment %d", mi.from.id), mi.key, err)
			}
			if !ok || v.CheckedAt.After(found.CheckedAt) {
				found, ok = v, true
			}
		}
		return nil
	})
	if err != nil {
		return found, err
	}
	if !ok {
		return found, ErrNotFound
	}
	return found, nil
}

// scanner reads the verdicts of domains in one read transaction.
type scanner struct {
	s          *Store
	tx         *bolt.Tx
	segs       []segMeta
	namespaces []string
	cutoff     int64
	its        [][]*segIter // per namespace, per segment
	curs       []*nsCursor  // per namespace
	live       []*nsCursor
	raw        rawVerdict
}

func newScanner(s *Store, tx *bolt.Tx, segs []segMeta, namespaces []string, cutoff int64) *scanner {
	sc := &scanner{s: s, tx: tx, segs: segs, namespaces: namespaces, cutoff: cutoff}
	sc.its = make([][]*segIter, len(namespaces))
	for n := range namespaces {
		for rank, m := range segs {
			sc.its[n] = append(sc.its[n], newSegIter(s, tx, m, rank))
		}
		sc.curs = append(sc.curs, &nsCursor{ns: n})
	}
	return sc
}

// nsCursor is one namespace's merged view of a domain.
type nsCursor struct {
	ns     int
	m      *mergeIter
	prefix int // length of "ns\0domain\0"
	ok     bool
	at     int64  // checked_at of the current verdict
	addr   []byte // its address
}

// scan gives fn the verdicts of domain (index di) whose address comes
// after after (nil = all of them). fn's argument is valid until it returns.
func (sc *scanner) scan(di int, domain string, after []byte, fn func(*rawVerdict) bool) error {
	curs := sc.live[:0]
	var prefix []byte
	for n, ns := range sc.namespaces {
		prefix = verdictKey(prefix[:0], ns, domain, "")
		end := prefixEnd(prefix)
		start := prefix
		if after != nil {
			start = append(append(bytes.Clone(prefix), after...), 0) // the first key after it
		}
		its := make([]*segIter, 0, len(sc.its[n]))
		for _, it := range sc.its[n] {
			it.seek(start, end)
			if it.err != nil {
				return it.err
			}
			if it.valid {
				its = append(its, it)
			}
		}
		c := sc.curs[n]
		c.m, c.prefix = newMergeIter(its), len(prefix)
		if err := sc.advance(c); err != nil {
			return err
		}
		if c.ok {
			curs = append(curs, c)
		}
	}
	defer func() { sc.live = curs[:0] }()
	r := &sc.raw
	for len(curs) > 0 {
		// The smallest address; of equal ones, the most recent verdict.
		best := curs[0]
		for _, c := range curs[1:] {
			cmp := bytes.Compare(c.addr, best.addr)
			if cmp < 0 || cmp == 0 && c.at > best.at {
				best = c
			}
		}
		*r = rawVerdict{domain: di, ns: best.ns, key: best.m.key, addr: best.addr, val: best.m.val, at: best.at, seg: best.m.from.id}
		if !fn(r) {
			return nil
		}
		addr := r.addr
		live := curs[:0]
		for _, c := range curs {
			if bytes.Equal(c.addr, addr) {
				if err := sc.advance(c); err != nil {
					return err
				}
			}
			if c.ok {
				live = append(live, c)
			}
		}
		curs = live
	}
	return nil
}

// advance moves c to its next unexpired verdict.
func (sc *scanner) advance(c *nsCursor) error {
	for {
		ok, err := c.m.next()
		if err != nil || !ok {
			c.ok = false
			return err
		}
		at, _ := valueCheckedAt(c.m.val)
		if at < sc.cutoff {
			continue
		}
		c.at, c.addr, c.ok = at, c.m.key[c.prefix:], true
		return nil
	}
}

// Domain returns what is known about domain, or ErrNotFound.
func (s *Store) Domain(ctx context.Context, domain string) (DomainInfo, error) {
	d := DomainInfo{Domain: domain}
	if err := ctx.Err(); err != nil {
		return d, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDomains).Get([]byte(domain))
		if v == nil {
			return ErrNotFound
		}
		if err := decodeDomain(v, &d); err != nil {
			return s.corrupt("domains", []byte(domain), err)
		}
		if d.CatchAllAt.Unix() < s.cutoff() {
			return ErrNotFound
		}
		return nil
	})
	return d, err
}

// MX returns what is known about an MX host, or ErrNotFound. Facts past
// retention are left out.
func (s *Store) MX(ctx context.Context, host string) (MXInfo, error) {
	m := MXInfo{Host: host}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMX).Get([]byte(host))
		if v == nil {
			return ErrNotFound
		}
		if err := decodeMX(v, &m); err != nil {
			return s.corrupt("mx", []byte(host), err)
		}
		m.dropBefore(s.now().Add(-s.opts.Retention))
		if m.newest().IsZero() {
			return ErrNotFound
		}
		return nil
	})
	return m, err
}
