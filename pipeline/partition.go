package pipeline

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// An input bigger than Config.MemoryRows is hashed by domain into partition
// files, each small enough to load at once (a quarter of MemoryRows), and
// the partitions are loaded one after another into the run's one engine
// (loader.go). Hashing by domain keeps a domain's addresses together, so
// duplicates meet and a domain is grouped once; hashing is O(rows), where
// sorting by domain would cost O(rows log rows) string comparisons.
//
// A domain too big for a partition is spread over the files by address
// instead (a duplicate address still lands in one file); the engine keeps
// one domainState for it across the parts (DomainGroup.split): one MX
// lookup, one catch-all check. A partition that ends up bigger than its
// share (its domains grew big after the first MemoryRows rows, or the input
// is many times MemoryRows) is split again, with another hash, when its
// turn comes.
//
// Rows are stored in a binary form that keeps what the reader already
// worked out (the normalised address, or why the row has none), so a row
// is parsed once.

// partitionFiles is how many files the input is first hashed into: enough
// for 16 times MemoryRows before a partition must be split again.
const partitionFiles = 64

// maxRepartition bounds how often one partition is split again; past it a
// partition is loaded whatever its size (one address repeated on millions
// of rows cannot be split).
const maxRepartition = 3

// partition is one file of rows.
type partition struct {
	f     *os.File
	w     *bufio.Writer
	rows  int
	depth int // times split already
}

// partitioner writes rows into partition files.
type partitioner struct {
	dir     string
	col     int // the address column, whose text is often the address as normalised
	perPart int // rows a partition may hold to be loaded at once
	seed    uint64
	depth   int
	huge    map[string]bool // domains spread by address (shared with the loader)
	parts   []*partition
	buf     []byte
}

func newPartitioner(dir string, n, col, perPart int, seed uint64, depth int, huge map[string]bool) (*partitioner, error) {
	p := &partitioner{dir: dir, col: col, perPart: perPart, seed: seed, depth: depth, huge: huge}
	for range n {
		f, err := os.CreateTemp(dir, "bulkverify-part-*")
		if err != nil {
			p.close()
			return nil, fmt.Errorf("partitioning the input on disk: %w", err)
		}
		os.Remove(f.Name()) // unlinked: the space goes back however the run ends
		p.parts = append(p.parts, &partition{f: f, w: bufio.NewWriterSize(f, 32<<10), depth: depth})
	}
	return p, nil
}

func (p *partitioner) close() {
	for _, pt := range p.parts {
		pt.f.Close()
	}
}

// hash is FNV-1a of s, started from seed, so that splitting a partition
// again spreads its rows differently.
func hash(seed uint64, s string) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// add writes one row to its partition.
func (p *partitioner) add(r parsedRow) error {
	var key string
	switch {
	case r.invalid != "":
		key = r.raw
	case p.huge[r.addr.Domain]:
		key = r.key
	default:
		key = r.addr.Domain
	}
	pt := p.parts[hash(p.seed, key)%uint64(len(p.parts))]
	p.buf = encodeRow(p.buf[:0], r, p.col)
	var n [binary.MaxVarintLen64]byte
	if _, err := pt.w.Write(n[:binary.PutUvarint(n[:], uint64(len(p.buf)))]); err != nil {
		return fmt.Errorf("partitioning the input on disk: %w", err)
	}
	if _, err := pt.w.Write(p.buf); err != nil {
		return fmt.Errorf("partitioning the input on disk: %w", err)
	}
	pt.rows++
	return nil
}

// finish flushes every partition and returns those that hold rows, ready
// to be read.
func (p *partitioner) finish() ([]*partition, error) {
	var out []*partition
	for _, pt := range p.parts {
		if err := pt.w.Flush(); err != nil {
			return nil, fmt.Errorf("partitioning the input on disk: %w", err)
		}
		pt.w = nil
		if pt.rows == 0 {
			pt.f.Close()
			continue
		}
		if _, err := pt.f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("partitioning the input on disk: %w", err)
		}
		out = append(out, pt)
	}
	p.parts = nil
	return out, nil
}

// Row encoding: uvarint row, byte flags, then
//
//	flags&1 (invalid): string reason, string raw;
//	else flags&4: the address is the address column's text exactly:
//	  uvarint length of the local part;
//	else: string local part, string domain.
//
// flags&2: the local part needs SMTPUTF8. Then uvarint fields, each a
// string (uvarint length, bytes).
func encodeRow(b []byte, r parsedRow, col int) []byte {
	b = binary.AppendUvarint(b, uint64(r.ref.row))
	var flags byte
	switch {
	case r.invalid != "":
		flags = 1
	case col < len(r.ref.fields) && r.key == r.ref.fields[col]:
		flags = 4
	}
	if r.addr.NeedsSMTPUTF8 {
		flags |= 2
	}
	b = append(b, flags)
	switch {
	case flags&1 != 0:
		b = appendStr(b, r.invalid)
		b = appendStr(b, r.raw)
	case flags&4 != 0:
		b = binary.AppendUvarint(b, uint64(len(r.addr.Local)))
	default:
		b = appendStr(b, r.addr.Local)
		b = appendStr(b, r.addr.Domain)
	}
	b = binary.AppendUvarint(b, uint64(len(r.ref.fields)))
	for _, f := range r.ref.fields {
		b = appendStr(b, f)
	}
	return b
}

// partReader reads a partition's rows back.
type partReader struct {
	r   *bufio.Reader
	col int
	buf []byte
}

func newPartReader(pt *partition, col int) *partReader {
	return &partReader{r: bufio.NewReaderSize(pt.f, 64<<10), col: col}
}

// next returns the next row, or io.EOF.
func (pr *partReader) next() (parsedRow, error) {
	var r parsedRow
	n, err := binary.ReadUvarint(pr.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return r, io.EOF
		}
		return r, fmt.Errorf("reading a partition of the input back: %w", err)
	}
	if n > 1<<30 {
		return r, fmt.Errorf("reading a partition of the input back: %w", errDamagedSpill)
	}
	if cap(pr.buf) < int(n) {
		pr.buf = make([]byte, n)
	}
	pr.buf = pr.buf[:n]
	if _, err := io.ReadFull(pr.r, pr.buf); err != nil {
		return r, fmt.Errorf("reading a partition of the input back: %w", err)
	}
	// One string per row: its fields and address are slices of it.
	d := decoder{s: string(pr.buf)}
	r.ref.row = int(d.uvarint())
	flags := d.byte()
	var localLen uint64
	switch {
	case flags&1 != 0:
		r.invalid = d.str()
		r.raw = d.str()
	case flags&4 != 0:
		localLen = d.uvarint()
	default:
		r.addr.Local = d.str()
		r.addr.Domain = d.str()
	}
	nf := d.uvarint()
	if d.err != nil || nf > uint64(len(d.s)) {
		return r, fmt.Errorf("reading a partition of the input back: %w", errDamagedSpill)
	}
	r.ref.fields = make([]string, nf)
	for i := range r.ref.fields {
		r.ref.fields[i] = d.str()
	}
	if d.err != nil {
		return r, fmt.Errorf("reading a partition of the input back: %w", d.err)
	}
	r.addr.NeedsSMTPUTF8 = flags&2 != 0
	switch {
	case flags&1 != 0:
	case flags&4 != 0:
		if pr.col >= len(r.ref.fields) || localLen >= uint64(len(r.ref.fields[pr.col])) {
			return r, fmt.Errorf("reading a partition of the input back: %w", errDamagedSpill)
		}
		r.key = r.ref.fields[pr.col]
		r.addr.Local, r.addr.Domain = r.key[:localLen], r.key[localLen+1:]
	default:
		r.key = r.addr.String()
	}
	return r, nil
}
