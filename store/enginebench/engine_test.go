package enginebench

import (
	"context"
	"database/sql"
	"encoding/binary"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite"

	"github.com/bulkverify/bulkverify/store"
)

// The C1 shape (benchmarks/): u<j/D>@d<j%D>.test, D = 10,000 domains,
// written in input order (consecutive verdicts go to different domains).
const (
	domains   = 10000
	batchSize = store.DefaultBatchSize
)

type world struct {
	addrs, domains, hosts []string
	at                    time.Time
}

func newWorld(n int) *world {
	w := &world{at: time.Now()}
	for i := range domains {
		w.domains = append(w.domains, "d"+strconv.Itoa(i)+".test")
	}
	for i := range 100 {
		w.hosts = append(w.hosts, "mx"+strconv.Itoa(i)+".test")
	}
	for j := range n {
		w.addrs = append(w.addrs, "u"+strconv.Itoa(j/domains)+"@"+w.domains[j%domains])
	}
	return w
}

func (w *world) verdict(j int) store.Verdict {
	v := store.Verdict{
		Namespace: store.DefaultNamespace, Address: w.addrs[j], Domain: w.domains[j%domains],
		Status: "deliverable", Reason: "accepted", SMTPCode: 250, EnhancedCode: "2.1.5", Message: "2.1.5 Ok",
		MXHost: w.hosts[j%100], CatchAll: store.TriNo, TLS: store.TriYes, Attempts: 1, CheckedAt: w.at,
	}
	if j%2 == 1 {
		v.Status, v.Reason, v.SMTPCode, v.EnhancedCode, v.Message = "undeliverable", "mailbox_unknown", 550, "5.1.1", "5.1.1 Recipient address rejected: User unknown in virtual mailbox table"
	}
	return v
}

func (w *world) sortedDomains() []string {
	d := slices.Clone(w.domains)
	slices.Sort(d)
	return d
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuMeter(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// --- the store as built ---

func BenchmarkPutStore(b *testing.B) {
	w := newWorld(b.N)
	s, err := store.Open(filepath.Join(b.TempDir(), "s.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	report := cpuMeter(b)
	for j := range b.N {
		if err := s.Put(ctx, w.verdict(j)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	report()
}

func BenchmarkLookupStore(b *testing.B) {
	w := newWorld(b.N)
	path := filepath.Join(b.TempDir(), "s.db")
	s, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for j := range b.N {
		if err := s.Put(ctx, w.verdict(j)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = store.Open(path, store.Options{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ds := w.sortedDomains()
	b.ResetTimer()
	defer cpuMeter(b)()
	n, err := s.LookupDomains(ctx, []string{store.DefaultNamespace}, ds, func(int, store.Verdict) bool { return true })
	if err != nil || n != b.N {
		b.Fatalf("read %d of %d: %v", n, b.N, err)
	}
}

// --- bbolt, one key per verdict ---

func key(v *store.Verdict) []byte {
	return []byte(v.Namespace + "\x00" + v.Domain + "\x00" + v.Address)
}

// value is a compact binary encoding like the store's.
func value(v *store.Verdict) []byte {
	b := make([]byte, 0, 96)
	b = binary.BigEndian.AppendUint64(b, uint64(v.CheckedAt.Unix()))
	b = append(b, byte(v.CatchAll)|byte(v.TLS)<<2)
	b = binary.AppendUvarint(b, uint64(v.SMTPCode))
	b = binary.AppendUvarint(b, uint64(v.Attempts))
	for _, s := range []string{v.Status, v.Reason, v.EnhancedCode, v.Message, v.MXHost, v.Egress} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeValue(val []byte, v *store.Verdict) {
	v.CheckedAt = time.Unix(int64(binary.BigEndian.Uint64(val)), 0)
	v.CatchAll, v.TLS = store.Tri(val[8]&3), store.Tri(val[8]>>2)
	val = val[9:]
	c, n := binary.Uvarint(val)
	v.SMTPCode, val = int(c), val[n:]
	a, n := binary.Uvarint(val)
	v.Attempts, val = int(a), val[n:]
	for _, p := range []*string{&v.Status, &v.Reason, &v.EnhancedCode, &v.Message, &v.MXHost, &v.Egress} {
		l, n := binary.Uvarint(val)
		*p, val = string(val[n:n+int(l)]), val[n+int(l):]
	}
}

func fillBolt(b *testing.B, w *world, path string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for start := 0; start < b.N; start += batchSize {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("v"))
			if err != nil {
				return err
			}
			for j := start; j < min(start+batchSize, b.N); j++ {
				v := w.verdict(j)
				if err := bk.Put(key(&v), value(&v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutBoltKeyPerVerdict(b *testing.B) {
	w := newWorld(b.N)
	b.ResetTimer()
	defer cpuMeter(b)()
	fillBolt(b, w, filepath.Join(b.TempDir(), "b.db"))
}

func BenchmarkLookupBoltKeyPerVerdict(b *testing.B) {
	w := newWorld(b.N)
	path := filepath.Join(b.TempDir(), "b.db")
	fillBolt(b, w, path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ds := w.sortedDomains()
	b.ResetTimer()
	defer cpuMeter(b)()
	n := 0
	for start := 0; start < len(ds); start += 256 {
		db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("v")).Cursor()
			for _, d := range ds[start:min(start+256, len(ds))] {
				p := []byte(store.DefaultNamespace + "\x00" + d + "\x00")
				for k, val := c.Seek(p); k != nil && len(k) > len(p) && string(k[:len(p)]) == string(p); k, val = c.Next() {
					v := store.Verdict{Address: string(k[len(p):]), Domain: d}
					decodeValue(val, &v)
					n++
				}
			}
			return nil
		})
	}
	if n != b.N {
		b.Fatalf("read %d of %d", n, b.N)
	}
}

// --- SQLite, one row per verdict ---

const schema = `CREATE TABLE verdicts (namespace TEXT, domain TEXT, address TEXT, checked_at INTEGER,
	status TEXT, reason TEXT, smtp_code INTEGER, enhanced_code TEXT, message TEXT, mx_host TEXT,
	catch_all INTEGER, tls INTEGER, egress TEXT, attempts INTEGER,
	PRIMARY KEY (namespace, domain, address)) WITHOUT ROWID`

func fillSQLite(b *testing.B, w *world, path string) *sql.DB {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", schema} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	for start := 0; start < b.N; start += batchSize {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		st, err := tx.Prepare(`INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			b.Fatal(err)
		}
		for j := start; j < min(start+batchSize, b.N); j++ {
			v := w.verdict(j)
			if _, err := st.Exec(v.Namespace, v.Domain, v.Address, v.CheckedAt.Unix(), v.Status, v.Reason, v.SMTPCode,
				v.EnhancedCode, v.Message, v.MXHost, int(v.CatchAll), int(v.TLS), v.Egress, v.Attempts); err != nil {
				b.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

func BenchmarkPutSQLite(b *testing.B) {
	w := newWorld(b.N)
	b.ResetTimer()
	defer cpuMeter(b)()
	fillSQLite(b, w, filepath.Join(b.TempDir(), "s.sqlite")).Close()
}

func BenchmarkLookupSQLite(b *testing.B) {
	w := newWorld(b.N)
	db := fillSQLite(b, w, filepath.Join(b.TempDir(), "s.sqlite"))
	defer db.Close()
	ds := w.sortedDomains()
	st, err := db.Prepare(`SELECT address, checked_at, status, reason, smtp_code, enhanced_code, message, mx_host,
		catch_all, tls, egress, attempts FROM verdicts WHERE namespace = ? AND domain = ? ORDER BY address`)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	defer cpuMeter(b)()
	n := 0
	for _, d := range ds {
		rows, err := st.Query(store.DefaultNamespace, d)
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var v store.Verdict
			var at int64
			var ca, tl int
			if err := rows.Scan(&v.Address, &at, &v.Status, &v.Reason, &v.SMTPCode, &v.EnhancedCode, &v.Message,
				&v.MXHost, &ca, &tl, &v.Egress, &v.Attempts); err != nil {
				b.Fatal(err)
			}
			n++
		}
		rows.Close()
	}
	if n != b.N {
		b.Fatalf("read %d of %d", n, b.N)
	}
}
