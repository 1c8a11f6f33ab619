package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout of the file this package writes (doc.go).
const SchemaVersion = 1

// DefaultNamespace is the namespace of verdicts put without one.
const DefaultNamespace = "default"

// Default settings; Options documents each.
const (
	DefaultRetention     = 90 * 24 * time.Hour
	DefaultBatchSize     = 50000
	DefaultFlushInterval = time.Second
	DefaultLockTimeout   = time.Second
	pruneEvery           = 24 * time.Hour
)

// Options tune a store. The zero value works.
type Options struct {
	// Retention: entries older than this are never served and are deleted
	// (at Open once a day, by Prune and when their segment is compacted).
	// 0 = DefaultRetention (90 days).
	Retention time.Duration
	// Freshness decides which stored verdicts a run may reuse (Fresh).
	Freshness Freshness
	// BatchSize: buffered Puts are committed when this many are waiting.
	// 0 = DefaultBatchSize (10,000).
	BatchSize int
	// FlushInterval: buffered Puts are committed at least this often.
	// 0 = DefaultFlushInterval (1s).
	FlushInterval time.Duration
	// LockTimeout: how long Open waits for another process to close the
	// file before failing with an *InUseError. 0 = DefaultLockTimeout (1s).
	LockTimeout time.Duration
	// ReadOnly opens an existing store for reading only (stats, export):
	// nothing is pruned or compacted, and the writing methods fail.
	ReadOnly bool
	// Now is the clock. nil = time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Errors callers branch on.
var (
	// ErrNotFound: the store has no (unexpired) entry for the key.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInUse is wrapped by *InUseError.
	ErrInUse = errors.New("store: in use by another process")
	// ErrReadOnly: a write on a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store: opened read-only")
	// ErrBadKey is wrapped by the errors of Put and the lookups when a
	// namespace, domain or address cannot be a key.
	ErrBadKey = errors.New("store: bad key")
)

// InUseError: another process has the store open. Two runs never share a
// store file: the second is refused rather than made to wait for hours.
type InUseError struct {
	Path string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("store %s is in use by another bulkverify process (wait for it to finish, or use --store PATH or --no-store)", e.Path)
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// CorruptError reports damage in the file: which file, where and which key.
type CorruptError struct {
	Path  string
	Where string // bucket or segment
	Key   []byte
	Err   error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store %s is damaged: %s, key %q: %v (move the file away to start afresh, or run with --no-store)", e.Path, e.Where, e.Key, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// SchemaError: the file was written with a layout this build does not know.
type SchemaError struct {
	Path  string
	Found string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("store %s has schema version %q; this bulkverify reads version %d (use another --store PATH)", e.Path, e.Found, SchemaVersion)
}

func (s *Store) corrupt(where string, key []byte, err error) error {
	return &CorruptError{Path: s.path, Where: where, Key: append([]byte(nil), key...), Err: err}
}

// Buckets of the file (doc.go describes them).
var (
	bucketMeta     = []byte("meta")
	bucketSegments = []byte("segments")
	bucketSeg      = []byte("seg")
	bucketDomains  = []byte("domains")
	bucketMX       = []byte("mx")

	metaSchema  = []byte("schema")
	metaNextSeg = []byte("next_segment")
	metaPruned  = []byte("pruned_at")
)

// Store is an open verdict store. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	opts Options

	// writeMu serialises every change to the segments: commits, compaction,
	// prune and forget, so that a compaction spread over several
	// transactions sees no other change of its inputs.
	writeMu sync.Mutex
	// Block buffers lent to bbolt during a write transaction, and those
	// free to reuse; guarded by writeMu.
	usedBlocks, freeBlocks [][]byte

	w *writer // nil when read-only

	closeOnce sync.Once
	closeErr  error
}

// DefaultPath is where the store lives unless --store says otherwise:
// bulkverify/store.db in the user's cache directory.
func DefaultPath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("store: no cache directory for the default store (use --store PATH): %w", err)
	}
	return filepath.Join(dir, "bulkverify", "store.db"), nil
}

// Open opens the store at path, creating it (mode 0600, its directory 0700)
// unless opts.ReadOnly. It fails with *InUseError when another process has
// it open, *SchemaError for an unknown layout, *CorruptError for damage.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{path: path, opts: opts}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store: creating its directory: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:  opts.LockTimeout,
		ReadOnly: opts.ReadOnly,
		// The free list is rebuilt on open instead of written at every
		// commit: commits are frequent, opens are not.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Address space reserved up front, so that a growing file is not
		// remapped at every doubling (it costs no memory until touched).
		InitialMmapSize: 256 << 20,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &InUseError{Path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	s.db = db
	if !opts.ReadOnly {
		// Tighten a file someone created with looser permissions: it holds
		// personal data.
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				db.Close()
				return nil, fmt.Errorf("store: %w", err)
			}
		}
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := s.autoPrune(); err != nil {
			db.Close()
			return nil, err
		}
		s.w = newWriter(s)
	}
	return s, nil
}

// init creates the buckets of a new file, checks the schema of an old one
// and removes what an interrupted compaction left behind.
func (s *Store) init() error {
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return &SchemaError{Path: s.path, Found: "none"}
		}
		if v := meta.Get(metaSchema); string(v) != strconv.Itoa(SchemaVersion) {
			return &SchemaError{Path: s.path, Found: string(v)}
		}
		for _, name := range [][]byte{bucketSegments, bucketSeg, bucketDomains, bucketMX} {
			if tx.Bucket(name) == nil {
				return s.corrupt("file", name, errors.New("bucket missing"))
			}
		}
		return nil
	}
	if s.opts.ReadOnly {
		return s.db.View(check)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil && isEmpty(tx) {
			for _, name := range [][]byte{bucketMeta, bucketSegments, bucketSeg, bucketDomains, bucketMX} {
				if _, err := tx.CreateBucket(name); err != nil {
					return fmt.Errorf("store: %w", err)
				}
			}
			meta := tx.Bucket(bucketMeta)
			if err := meta.Put(metaSchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			if err := meta.Put(metaPruned, binary.BigEndian.AppendUint64(nil, uint64(s.opts.Now().Unix()))); err != nil {
				return err
			}
		}
		if err := check(tx); err != nil {
			return err
		}
		// Segments without a header are the output of a compaction that
		// did not finish: its inputs are still live.
		var orphans [][]byte
		segs, live := tx.Bucket(bucketSeg), tx.Bucket(bucketSegments)
		if err := segs.ForEachBucket(func(k []byte) error {
			if live.Get(k) == nil {
				orphans = append(orphans, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range orphans {
			if err := segs.DeleteBucket(k); err != nil {
				return fmt.Errorf("store: removing an unfinished compaction: %w", err)
			}
		}
		return nil
	})
}

func isEmpty(tx *bolt.Tx) bool {
	empty := true
	tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
	return empty
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

func (s *Store) now() time.Time { return s.opts.Now() }

// cutoff is the oldest checked_at (Unix seconds) that is still served.
func (s *Store) cutoff() int64 { return s.now().Add(-s.opts.Retention).Unix() }

// Close commits what was Put and closes the file. It is safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.w != nil {
			s.closeErr = s.w.close()
		}
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("store: closing %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// nextSegmentID allocates a segment id inside a write transaction.
func nextSegmentID(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	var id uint64 = 1
	if v := meta.Get(metaNextSeg); len(v) == 8 {
		id = binary.BigEndian.Uint64(v)
	}
	return id, meta.Put(metaNextSeg, binary.BigEndian.AppendUint64(nil, id+1))
}
