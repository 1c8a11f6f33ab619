package output

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Ordered writes rows in input order although they are decided in any
// order. A row that arrives early waits in a temporary file, not in memory:
// memory holds one file offset per waiting row. Rows already in the output
// (done, when resuming) are passed over. When the run stops early, rows still
// waiting are dropped, so the output stays an in-order prefix and a resumed
// run carries on right after it.
type Ordered[T Row[T]] struct {
	inner   RowWriter[T]
	skip    *Done
	next    int
	tmp     *os.File
	size    int64
	offsets []int64 // by row; 0 = not waiting (offsets start at 1)
}

// NewOrdered writes to inner in row order, starting at row 1. Waiting rows go
// to a temporary file in dir ("" = the system's).
func NewOrdered[T Row[T]](inner RowWriter[T], dir string, skip *Done) (*Ordered[T], error) {
	tmp, err := os.CreateTemp(dir, "bulkverify-order-*")
	if err != nil {
		return nil, fmt.Errorf("output: keeping order: %w", err)
	}
	// Unlinked at once: the space goes back to the system however we end.
	os.Remove(tmp.Name())
	o := &Ordered[T]{inner: inner, skip: skip, next: 1, tmp: tmp, size: 1}
	o.passDone()
	return o, nil
}

// A waiting row is stored as its input fields, byte for byte (a CSV in
// Latin-1 must come out as it went in, which JSON strings would not allow),
// then the result as JSON: uvarint(count), count × (uvarint(len), bytes),
// then the JSON.

// Write writes r now if it is the next row, else parks it.
func (o *Ordered[T]) Write(inputFields []string, r T) error {
	n := r.rowNumber()
	if n != o.next {
		return o.park(n, inputFields, r)
	}
	if err := o.inner.Write(inputFields, r); err != nil {
		return err
	}
	o.next++
	return o.drain()
}

func (o *Ordered[T]) park(n int, fields []string, r T) error {
	data := binary.AppendUvarint(nil, uint64(len(fields)))
	for _, f := range fields {
		data = binary.AppendUvarint(data, uint64(len(f)))
		data = append(data, f...)
	}
	js, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("output: keeping order: %w", err)
	}
	data = append(data, js...)
	var head [4]byte
	binary.LittleEndian.PutUint32(head[:], uint32(len(data)))
	if _, err := o.tmp.WriteAt(append(head[:], data...), o.size); err != nil {
		return fmt.Errorf("output: keeping order: %w", err)
	}
	for n >= len(o.offsets) {
		o.offsets = append(o.offsets, make([]int64, len(o.offsets)+1)...)
	}
	o.offsets[n] = o.size
	o.size += int64(len(head) + len(data))
	return nil
}

// drain writes the parked rows that are next in line.
func (o *Ordered[T]) drain() error {
	for {
		o.passDone()
		if o.next >= len(o.offsets) || o.offsets[o.next] == 0 {
			return nil
		}
		off := o.offsets[o.next]
		var head [4]byte
		if _, err := o.tmp.ReadAt(head[:], off); err != nil {
			return fmt.Errorf("output: keeping order: %w", err)
		}
		data := make([]byte, binary.LittleEndian.Uint32(head[:]))
		if _, err := io.ReadFull(io.NewSectionReader(o.tmp, off+4, int64(len(data))), data); err != nil {
			return fmt.Errorf("output: keeping order: %w", err)
		}
		fields, r, err := decodeWaiting[T](data)
		if err != nil {
			return fmt.Errorf("output: keeping order: %w", err)
		}
		o.offsets[o.next] = 0
		if err := o.inner.Write(fields, r); err != nil {
			return err
		}
		o.next++
	}
}

func (o *Ordered[T]) passDone() {
	for o.skip.Has(o.next) {
		o.next++
	}
}

// Flush flushes the rows written so far.
func (o *Ordered[T]) Flush() error { return o.inner.Flush() }

// Close drops the temporary file.
func (o *Ordered[T]) Close() error { return o.tmp.Close() }

func decodeWaiting[T any](data []byte) ([]string, T, error) {
	var r T
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)) {
		return nil, r, errors.New("damaged waiting row")
	}
	data = data[k:]
	fields := make([]string, n)
	for i := range fields {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, r, errors.New("damaged waiting row")
		}
		fields[i] = string(data[k : k+int(l)])
		data = data[k+int(l):]
	}
	err := json.Unmarshal(data, &r)
	return fields, r, err
}
