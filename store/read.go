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
	for _, ns := range namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return 0, err
		}
	}
	if len(namespaces) == 0 {
		return 0, fmt.Errorf("%w: no namespace to look in", ErrBadKey)
	}
	type found struct {
		i int
		v Verdict
	}
	cutoff := s.cutoff()
	d := &decoder{intern: true}
	buf := make([]found, 0, lookupBatch)
	given := 0
	// The next verdict to read: domain di, addresses after "after" ("" =
	// from its first).
	di, after := 0, ""
	for di < len(domains) {
		if err := ctx.Err(); err != nil {
			return given, err
		}
		buf = buf[:0]
		err := s.db.View(func(tx *bolt.Tx) error {
			segs, err := s.readSegments(tx)
			if err != nil {
				return err
			}
			sc := newScanner(s, tx, segs, namespaces, d, cutoff)
			for n := 0; n < lookupDomains && di < len(domains); n++ {
				if !validKeyPart(domains[di]) {
					di, after = di+1, ""
					continue // no such key can have been stored
				}
				full := false
				err := sc.scan(domains[di], after, func(v Verdict) bool {
					buf = append(buf, found{di, v})
					if len(buf) == lookupBatch {
						full, after = true, v.Address
						return false
					}
					return true
				})
				if err != nil || full {
					return err
				}
				di, after = di+1, ""
			}
			return nil
		})
		if err != nil {
			return given, err
		}
		for _, f := range buf {
			given++
			if !fn(f.i, f.v) {
				return given, nil
			}
		}
	}
	return given, nil
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
	d          *decoder
	cutoff     int64
	its        [][]*segIter // per namespace, per segment
}

func newScanner(s *Store, tx *bolt.Tx, segs []segMeta, namespaces []string, d *decoder, cutoff int64) *scanner {
	sc := &scanner{s: s, tx: tx, segs: segs, namespaces: namespaces, d: d, cutoff: cutoff}
	sc.its = make([][]*segIter, len(namespaces))
	for n := range namespaces {
		for rank, m := range segs {
			sc.its[n] = append(sc.its[n], newSegIter(s, tx, m, rank))
		}
	}
	return sc
}

// nsCursor is one namespace's merged view of a domain.
type nsCursor struct {
	ns     string
	m      *mergeIter
	prefix int // length of "ns\0domain\0"
	ok     bool
	v      Verdict
}

// scan gives fn the verdicts of domain whose address comes after after
// ("" = all of them).
func (sc *scanner) scan(domain, after string, fn func(Verdict) bool) error {
	curs := make([]*nsCursor, 0, len(sc.namespaces))
	for n, ns := range sc.namespaces {
		prefix := domainPrefix(ns, domain)
		end := prefixEnd(prefix)
		start := prefix
		if after != "" {
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
		c := &nsCursor{ns: ns, m: newMergeIter(its), prefix: len(prefix)}
		if err := sc.advance(c, domain); err != nil {
			return err
		}
		if c.ok {
			curs = append(curs, c)
		}
	}
	for len(curs) > 0 {
		// The smallest address; of equal ones, the most recent verdict.
		best := 0
		for i := 1; i < len(curs); i++ {
			a, b := curs[i].v, curs[best].v
			if a.Address < b.Address || a.Address == b.Address && a.CheckedAt.After(b.CheckedAt) {
				best = i
			}
		}
		v := curs[best].v
		if !fn(v) {
			return nil
		}
		live := curs[:0]
		for _, c := range curs {
			if c.v.Address == v.Address {
				if err := sc.advance(c, domain); err != nil {
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
func (sc *scanner) advance(c *nsCursor, domain string) error {
	for {
		ok, err := c.m.next()
		if err != nil || !ok {
			c.ok = false
			return err
		}
		if at, _ := valueCheckedAt(c.m.val); at < sc.cutoff {
			continue
		}
		c.v = Verdict{Namespace: c.ns, Domain: domain, Address: string(c.m.key[c.prefix:])}
		if err := decodeVerdict(sc.d, c.m.val, &c.v); err != nil {
			return sc.s.corrupt(fmt.Sprintf("segment %d", c.m.from.id), c.m.key, err)
		}
		c.ok = true
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
