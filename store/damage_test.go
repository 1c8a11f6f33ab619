package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// withRawDB runs fn on the store file opened with bbolt directly.
func withRawDB(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func filled(t *testing.T, path string, clk *clock) {
	t.Helper()
	s := openTest(t, path, Options{Now: clk.Now})
	for i := range 20 {
		if err := s.Put(ctx(t), sample("default", fmt.Sprintf("u%d@d.test", i), clk.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDamageIsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	clk := newClock()
	filled(t, path, clk)
	// Cut a block short.
	var blockKey []byte
	withRawDB(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSeg).ForEachBucket(func(id []byte) error {
			b := tx.Bucket(bucketSeg).Bucket(id)
			k, v := b.Cursor().First()
			blockKey = append([]byte(nil), k...)
			return b.Put(blockKey, append([]byte(nil), v[:len(v)-7]...))
		})
	})
	s := openTest(t, path, Options{Now: clk.Now})
	err := s.LookupDomain(ctx(t), []string{"default"}, "d.test", func(Verdict) bool { return true })
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("lookup in a damaged block: %v", err)
	}
	if ce.Path != path || string(ce.Key) != string(blockKey) || !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the file and key: %v", err)
	}
	if err := s.Each(ctx(t), nil, func(Verdict) error { return nil }); !errors.As(err, &ce) {
		t.Errorf("export of a damaged store: %v", err)
	}
}

func TestUnknownSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	filled(t, path, newClock())
	withRawDB(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, []byte("99"))
	})
	_, err := Open(path, Options{})
	var se *SchemaError
	if !errors.As(err, &se) || se.Found != "99" {
		t.Fatalf("Open of a schema 99 store: %v", err)
	}

	// A bbolt file that is not a store at all.
	other := filepath.Join(t.TempDir(), "other.db")
	withRawDB(t, other, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something"))
		return err
	})
	if _, err := Open(other, Options{}); !errors.As(err, &se) {
		t.Fatalf("Open of a foreign bbolt file: %v", err)
	}
}

func TestUnfinishedCompactionIsRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	clk := newClock()
	filled(t, path, clk)
	// What a compaction killed before its last transaction leaves: a
	// segment bucket that no header makes live.
	withRawDB(t, path, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketSeg).CreateBucket(segID(999))
		if err != nil {
			return err
		}
		return b.Put([]byte("default\x00d.test\x00zzz"), []byte("half-written"))
	})
	s := openTest(t, path, Options{Now: clk.Now})
	if got := lookup(t, s, []string{"default"}, "d.test"); len(got) != 20 {
		t.Errorf("%d verdicts after removing the orphan", len(got))
	}
	s.Close()
	withRawDB(t, path, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSeg).Bucket(segID(999)) != nil {
			t.Error("orphan segment still there")
		}
		return nil
	})
}

func FuzzDecodeVerdict(f *testing.F) {
	v := sample("default", "a@d.test", time.Unix(1700000000, 0))
	f.Add(encodeVerdict(nil, &v))
	f.Add([]byte{})
	f.Add(make([]byte, 9))
	f.Fuzz(func(t *testing.T, val []byte) {
		var got Verdict
		d := &decoder{intern: true}
		if err := decodeVerdict(d, val, &got); err != nil {
			return
		}
		// What decodes survives a round trip (the bytes may differ: a
		// varint can be written longer than needed).
		var again Verdict
		if err := decodeVerdict(d, encodeVerdict(nil, &got), &again); err != nil || again != got {
			t.Errorf("round trip of %+v: %+v, %v", got, again, err)
		}
	})
}

func FuzzDecodeMX(f *testing.F) {
	m := MXInfo{Host: "h", RcptPerTransaction: 5, LimitsAt: time.Unix(1700000000, 0), StartTLS: TriYes,
		Refusals: []Refusal{{Egress: "e", Operator: "o", Reply: "r", At: time.Unix(1700000001, 0)}}}
	f.Add(encodeMX(&m))
	d := DomainInfo{Domain: "d", CatchAll: TriNo, CatchAllMX: "mx", CatchAllAt: time.Unix(1700000000, 0)}
	f.Add(encodeDomain(&d))
	f.Fuzz(func(t *testing.T, val []byte) {
		var m MXInfo
		decodeMX(val, &m)
		var d DomainInfo
		decodeDomain(val, &d)
	})
}

func FuzzBlock(f *testing.F) {
	f.Add([]byte{3, 'a', 'b', 'c', 1, 'x'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		it := blockIter{b: b}
		for range len(b) + 1 {
			if _, _, ok, bad := it.next(); !ok || bad {
				return
			}
		}
		t.Fatal("block iteration does not end")
	})
}
