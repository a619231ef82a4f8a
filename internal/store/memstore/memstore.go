// Package memstore is an in-memory store.Store for fast unit tests of the
// logic built on the store. It passes the same conformance suite as the
// real backends, so tests on it mean something; it is never used in
// production because it forgets everything when the process exits.
package memstore

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/duetnet/duet/internal/store"
)

// Store keeps keys in a map; one transaction at a time.
type Store struct {
	mu   sync.Mutex
	data map[string][]byte
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{data: map[string][]byte{}} }

type tx struct {
	readOnly bool
	base     map[string][]byte
	writes   map[string][]byte // nil value: deleted
}

func (t *tx) Get(key string) ([]byte, bool, error) {
	if v, ok := t.writes[key]; ok {
		return clone(v), v != nil, nil
	}
	v, ok := t.base[key]
	return clone(v), ok, nil
}

func (t *tx) List(prefix string) ([]store.KV, error) {
	seen := map[string]bool{}
	var out []store.KV
	for k, v := range t.writes {
		seen[k] = true
		if v != nil && strings.HasPrefix(k, prefix) {
			out = append(out, store.KV{Key: k, Value: clone(v)})
		}
	}
	for k, v := range t.base {
		if !seen[k] && strings.HasPrefix(k, prefix) {
			out = append(out, store.KV{Key: k, Value: clone(v)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (t *tx) Put(key string, value []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	if value == nil {
		value = []byte{}
	}
	t.writes[key] = clone(value)
	return nil
}

func (t *tx) Delete(key string) error {
	if t.readOnly {
		return errReadOnly
	}
	t.writes[key] = nil
	return nil
}

// Update runs fn under the store's lock and applies its writes if it
// succeeds.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{base: s.data, writes: map[string][]byte{}}
	if err := fn(t); err != nil {
		return err
	}
	for k, v := range t.writes {
		if v == nil {
			delete(s.data, k)
		} else {
			s.data[k] = v
		}
	}
	return nil
}

// View runs fn under the store's lock with writes discarded.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(&tx{readOnly: true, base: s.data, writes: map[string][]byte{}})
}

var errReadOnly = errors.New("memstore: write in a read-only transaction")

// Close does nothing.
func (s *Store) Close() error { return nil }

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
