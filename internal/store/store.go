// Package store defines the transactional key-value contract that duet's
// state lives in, and that every backend (bbolt for one host, etcd for a
// cluster) satisfies.
//
// The contract is deliberately small: a serializable read-write transaction
// over string keys and opaque values. IPAM builds pools, blocks and
// allocations on top of it, so a backend needs to get exactly one thing
// right: two transactions that touch the same keys never both commit on
// stale reads. bbolt gets that from its single writer and file lock; etcd
// gets it from a compare-and-swap on the revisions the transaction read.
package store

import (
	"context"
	"errors"
)

// ErrUnavailable wraps every error that means "the store cannot be reached
// right now" (lock timeout, etcd down), so callers can answer CNI code 11
// ("try again later") instead of a hard failure.
var ErrUnavailable = errors.New("datastore unavailable")

// KV is one key and its value, as returned by Tx.List.
type KV struct {
	Key   string
	Value []byte
}

// Tx is a transaction. Reads see a consistent snapshot plus the
// transaction's own writes. Keys are '/'-separated paths such as
// "blocks/fd12::/122".
type Tx interface {
	// Get returns the value of key, and false if there is none.
	Get(key string) ([]byte, bool, error)
	// List returns every key that starts with prefix, in byte order.
	List(prefix string) ([]KV, error)
	// Put sets key to value.
	Put(key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key string) error
}

// Prefetcher is implemented by a Tx whose reads each cost a round trip
// (etcd's): Prefetch reads keys and lists prefixes in one request, so the
// Gets and Lists of them that follow are served from the snapshot. It
// changes no result, only how many requests the reads take; callers use it
// when they know what they are about to read.
type Prefetcher interface {
	Prefetch(keys, prefixes []string) error
}

// Store runs transactions.
type Store interface {
	// Update runs fn in a read-write transaction and commits its writes
	// atomically when fn returns nil; when fn returns an error nothing is
	// written. A backend with optimistic concurrency may run fn more than
	// once, so fn must have no side effects outside tx.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Close releases the store.
	Close() error
}
