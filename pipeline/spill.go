package pipeline

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strconv"

	"github.com/bulkverify/bulkverify/input"
)

// Spilling keeps memory bounded on inputs too large to group in memory.
// Once more than MemoryRows rows have been read, every row goes to one of
// spillParts temporary files, chosen by its domain, and the files are then
// verified one after another, each grouped in memory on its own. Hashing by
// domain keeps a domain's addresses together (one MX lookup, one catch-all
// check, duplicates probed once). A domain that already fills a good part of
// a file's share in the rows read before spilling is spread over the files
// by address instead (a duplicate address still lands in one file), at the
// cost of one catch-all check per file for that domain.
//
// Each file is a barrier: its slowest host (or its delayed retries) holds up
// the next one, so there are few of them; past spillParts × MemoryRows rows
// a file holds more than MemoryRows rows.
const spillParts = 16

// recordSource is where rows come from: the input file, or a spill file.
type recordSource interface {
	Next() (input.Record, error)
}

// spiller writes rows into the partition files.
type spiller struct {
	files    []*os.File
	writers  []*bufio.Writer
	csv      []*csv.Writer
	perPart  int             // rows a partition should hold to stay within the budget
	huge     map[string]bool // domains spread by address
	col      int             // address column
	width    int             // header width, to recognise ragged rows
	rowsSeen int
}

func newSpiller(dir string, memoryRows, col, width int) (*spiller, error) {
	s := &spiller{perPart: max(1, memoryRows/spillParts), huge: map[string]bool{}, col: col, width: width}
	for range spillParts {
		f, err := os.CreateTemp(dir, "bulkverify-spill-*")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("spilling to disk: %w", err)
		}
		os.Remove(f.Name()) // unlinked: the space goes back however the run ends
		w := bufio.NewWriterSize(f, 64<<10)
		s.files, s.writers, s.csv = append(s.files, f), append(s.writers, w), append(s.csv, csv.NewWriter(w))
	}
	return s, nil
}

func (s *spiller) close() {
	for _, f := range s.files {
		f.Close()
	}
}

// add writes one row to its partition.
func (s *spiller) add(row int, fields []string) error {
	raw := ""
	if s.col < len(fields) {
		raw = fields[s.col]
	}
	key := raw
	if addr, err := input.ParseAddress(raw); err == nil {
		key = addr.Domain
		if s.huge[key] {
			key = addr.String()
		}
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	part := int(h.Sum32() % spillParts)
	s.rowsSeen++
	return s.csv[part].Write(append([]string{strconv.Itoa(row)}, fields...))
}

// parts finishes writing and returns a reader for each non-empty partition.
func (s *spiller) parts() ([]*spillReader, error) {
	var out []*spillReader
	for i, f := range s.files {
		s.csv[i].Flush()
		if err := s.csv[i].Error(); err != nil {
			return nil, fmt.Errorf("spilling to disk: %w", err)
		}
		if err := s.writers[i].Flush(); err != nil {
			return nil, fmt.Errorf("spilling to disk: %w", err)
		}
		size, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("spilling to disk: %w", err)
		}
		if size == 0 {
			continue
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("spilling to disk: %w", err)
		}
		r := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
		r.FieldsPerRecord = -1
		out = append(out, &spillReader{r: r, col: s.col, width: s.width})
	}
	return out, nil
}

// spillReader reads one partition back as input records.
type spillReader struct {
	r     *csv.Reader
	col   int
	width int
}

func (sr *spillReader) Next() (input.Record, error) {
	rec, err := sr.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return input.Record{}, io.EOF
		}
		return input.Record{}, fmt.Errorf("reading back spilled rows: %w", err)
	}
	row, err := strconv.Atoi(rec[0])
	if err != nil {
		return input.Record{}, fmt.Errorf("reading back spilled rows: %w", err)
	}
	fields := rec[1:]
	r := input.Record{Row: row, Fields: fields, Ragged: len(fields) != sr.width}
	if sr.col < len(fields) {
		r.Email = fields[sr.col]
	}
	return r, nil
}

// spillBatch moves an in-memory batch into the spiller, first deciding from
// it which domains are too big to keep in one file: deciding before any row
// is written keeps every address in one file.
func spillBatch(s *spiller, b batch) error {
	for _, g := range b.groups {
		if len(g.Addresses) > s.perPart/2 {
			s.huge[g.Domain] = true
		}
	}
	for _, inv := range b.invalid {
		if err := s.add(inv.ref.row, inv.ref.fields); err != nil {
			return err
		}
	}
	var err error
	for _, refs := range b.byKey {
		refs.each(func(ref rowRef) {
			if err == nil {
				err = s.add(ref.row, ref.fields)
			}
		})
	}
	return err
}
