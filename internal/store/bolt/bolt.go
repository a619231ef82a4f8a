// Package bolt is the single-host store.Store backend: one bbolt file on
// local disk, shared by the duet daemon and by the short-lived duet CNI
// plugin processes a container runtime starts, possibly dozens at once.
//
// bbolt locks the file with flock(2) for as long as it is open: exclusively
// for a read-write Store, shared for a read-only one. That lock is what keeps
// writers in different processes from interleaving, so a process should
// Open, run its transactions and Close promptly; while one Store is open for
// writing, every other duet process waits in Open. Commits are fsynced, and
// bbolt's copy-on-write pages and double meta page mean that a process
// killed at any instant leaves the file at its last committed transaction.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/hostlock"
)

// DefaultTimeout is how long Open waits for another process's lock when
// Options.Timeout is zero: long enough for dozens of plugin invocations
// queued on the same file to take their turns, short enough to answer
// "try again later" well inside a runtime's CNI timeout.
const DefaultTimeout = 10 * time.Second

// bucket holds every key. One bucket keeps the key space flat, so that
// List is a plain prefix scan exactly as it is on etcd.
var bucket = []byte("duet")

// Options tunes Open.
type Options struct {
	// Timeout bounds the wait for a lock held by another process; zero
	// means DefaultTimeout. It is never unbounded, because a plugin that
	// hangs is worse than one that says "try again later".
	Timeout time.Duration
	// ReadOnly takes a shared lock, so several readers (status commands)
	// can run at once. It still waits for a writer to close, and it fails
	// if the file does not exist yet.
	ReadOnly bool
}

// Store is a store.Store backed by one bbolt file. It is safe for
// concurrent use by goroutines; bbolt runs one write transaction at a time.
type Store struct {
	db   *bbolt.DB
	path string
	lock *hostlock.Lock
}

var _ store.Store = (*Store)(nil)

// Open opens (creating, unless opts.ReadOnly) the database file at path,
// creating its directory with mode 0700 because duet state is root's alone.
// If another process holds the lock for longer than the timeout, the error
// wraps store.ErrUnavailable, so the caller can ask the runtime to retry.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	start := time.Now()
	// A writer's lock creates the directory (0700) too.
	ql, ok, err := hostlock.Acquire(path+".lock", opts.ReadOnly, timeout)
	if err != nil {
		return nil, fmt.Errorf("open duet store %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("open duet store %s: another duet process holds it (waited %s): %w",
			path, timeout, store.ErrUnavailable)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: max(timeout-time.Since(start), time.Millisecond), ReadOnly: opts.ReadOnly})
	if err != nil {
		ql.Unlock()
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open duet store %s: another duet process holds it (waited %s): %w",
			path, timeout, store.ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("open duet store %s: %w", path, err)
	}
	return &Store{db: db, path: path, lock: ql}, nil
}

// Path returns the file the store was opened on, for log and error messages.
func (s *Store) Path() string { return s.path }

// Update runs fn in the single read-write transaction and commits (with
// fsync) if fn returns nil. Errors from fn are returned unchanged so that
// callers can match their own sentinels. A ctx that is done before the
// commit aborts the transaction and returns ctx.Err().
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	btx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("duet store %s: begin: %w", s.path, err)
	}
	defer func() { _ = btx.Rollback() }() // no-op after Commit; undoes a panicking fn
	b := btx.Bucket(bucket)
	if b == nil {
		// Created lazily, so that opening an existing file costs no commit.
		if b, err = btx.CreateBucket(bucket); err != nil {
			return fmt.Errorf("duet store %s: create bucket: %w", s.path, err)
		}
	}
	if err := fn(tx{b}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("duet store %s: commit: %w", s.path, err)
	}
	return nil
}

// View runs fn in a read-only transaction on a consistent snapshot; it runs
// alongside other readers and the writer. Errors from fn are returned
// unchanged.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bbolt.Tx) error {
		return fn(tx{btx.Bucket(bucket)})
	})
}

// Close releases the file and its lock, letting the next process in. It
// waits for running transactions to finish.
func (s *Store) Close() error {
	defer s.lock.Unlock() // after bbolt has released its own lock
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close duet store %s: %w", s.path, err)
	}
	return nil
}

// tx adapts a bbolt bucket to store.Tx. b is nil in a View of a file that
// has never been written. It must not be used after fn returns.
type tx struct{ b *bbolt.Bucket }

// Get uses a cursor rather than Bucket.Get so that an empty value is still
// reported as present.
func (t tx) Get(key string) ([]byte, bool, error) {
	if t.b == nil {
		return nil, false, nil
	}
	k, v := t.b.Cursor().Seek([]byte(key))
	if k == nil || string(k) != key {
		return nil, false, nil
	}
	return clone(v), true, nil
}

func (t tx) List(prefix string) ([]store.KV, error) {
	if t.b == nil {
		return nil, nil
	}
	p := []byte(prefix)
	var out []store.KV
	c := t.b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		out = append(out, store.KV{Key: string(k), Value: clone(v)})
	}
	return out, nil
}

// Put copies value, since bbolt keeps the caller's slice until commit and
// the caller may reuse it.
func (t tx) Put(key string, value []byte) error {
	if t.b == nil {
		return berrors.ErrTxNotWritable
	}
	if err := t.b.Put([]byte(key), clone(value)); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

func (t tx) Delete(key string) error {
	if t.b == nil {
		return berrors.ErrTxNotWritable
	}
	if err := t.b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// clone copies v out of bbolt's mmap, which is only valid inside the
// transaction; the result is never nil, so empty values stay distinct from
// "missing".
func clone(v []byte) []byte { return append([]byte{}, v...) }
