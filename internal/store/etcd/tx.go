package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// errReadOnly is returned by Put and Delete inside View.
var errReadOnly = errors.New("etcd store: cannot write in a read-only View")

// read is what one attempt saw of one key at its snapshot revision.
type read struct {
	value   []byte
	present bool
	modRev  int64 // 0 when absent
}

// write is one buffered change; del means Delete.
type write struct {
	value []byte
	del   bool
}

// tx is one attempt of a transaction. Every read is served at rev, the
// revision the first read returned, so fn sees one consistent snapshot; the
// read set (reads, lists) is what commit checks is still true.
type tx struct {
	s        *Store
	ctx      context.Context
	readOnly bool
	rev      int64 // 0 until the first read fixes the snapshot
	reads    map[string]read
	lists    map[string]bool // prefixes listed
	writes   map[string]write
	// markerRev is the deletion marker's ModRevision at rev (0: absent),
	// read by every List.
	markerRev int64
	// failed is the first read error, kept so that an attempt whose fn
	// swallowed it is never committed.
	failed error
}

func newTx(ctx context.Context, s *Store, readOnly bool) *tx {
	return &tx{s: s, ctx: ctx, readOnly: readOnly,
		reads: map[string]read{}, lists: map[string]bool{}, writes: map[string]write{}}
}

// fetch runs ops, Ranges at the snapshot, in one read-only Txn (served like
// a linearizable Range, without a raft write), fixing the snapshot on the
// first call. op and key name the read in errors.
func (t *tx) fetch(op, key string, ops ...kv.Op) ([][]kv.KeyValue, error) {
	if t.failed != nil {
		return nil, t.failed
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.cfg.RequestTimeout)
	defer cancel()
	if t.rev != 0 {
		for i := range ops {
			ops[i].Rev = t.rev
		}
	}
	resp, err := t.s.kv.Txn(ctx, kv.TxnRequest{Success: ops})
	if err != nil {
		t.failed = t.s.wrap(t.ctx, fmt.Sprintf("%s %q", op, key), err)
		return nil, t.failed
	}
	if len(resp.Ranges) != len(ops) {
		t.failed = fmt.Errorf("etcd store %s %q: etcd answered %d of %d reads", op, key, len(resp.Ranges), len(ops))
		return nil, t.failed
	}
	if t.rev == 0 {
		t.rev = resp.Revision
	}
	return resp.Ranges, nil
}

// Get serves the tx's own writes first, then what it already read (the
// snapshot cannot change), and only then asks etcd.
func (t *tx) Get(key string) ([]byte, bool, error) {
	if key == "" {
		return nil, false, errors.New("etcd store: empty key")
	}
	if w, ok := t.writes[key]; ok {
		return clone(w.value), !w.del, nil
	}
	if r, ok := t.reads[key]; ok {
		return clone(r.value), r.present, nil
	}
	resps, err := t.fetch("get", key, kv.Op{Kind: kv.Range, Key: t.s.cfg.Prefix + key})
	if err != nil {
		return nil, false, err
	}
	r := read{}
	if kvs := resps[0]; len(kvs) > 0 {
		kv := kvs[0]
		r = read{value: kv.Value, present: true, modRev: kv.ModRevision}
	}
	t.reads[key] = r
	return clone(r.value), r.present, nil
}

// List records the prefix as well as every key it returned: commit must
// notice keys created under it, not only changes to the keys seen. It reads
// the deletion marker in the same request, in case commit needs it.
func (t *tx) List(prefix string) ([]store.KV, error) {
	resps, err := t.fetch("list", prefix,
		kv.Op{Kind: kv.Range, Key: t.s.cfg.Prefix + prefix, End: kv.PrefixEnd(t.s.cfg.Prefix + prefix)},
		kv.Op{Kind: kv.Range, Key: t.s.marker})
	if err != nil {
		return nil, err
	}
	t.lists[prefix] = true
	if kvs := resps[1]; len(kvs) > 0 {
		t.markerRev = kvs[0].ModRevision
	}
	var out []store.KV
	for _, e := range resps[0] {
		key := strings.TrimPrefix(e.Key, t.s.cfg.Prefix)
		if key == "" {
			continue // the deletion marker, not a user key
		}
		t.reads[key] = read{value: e.Value, present: true, modRev: e.ModRevision}
		if _, mine := t.writes[key]; !mine {
			out = append(out, store.KV{Key: key, Value: clone(e.Value)})
		}
	}
	for key, w := range t.writes {
		if !w.del && strings.HasPrefix(key, prefix) {
			out = append(out, store.KV{Key: key, Value: clone(w.value)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Put buffers a copy of value until commit.
func (t *tx) Put(key string, value []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	if key == "" {
		return errors.New("etcd store: empty key")
	}
	t.writes[key] = write{value: clone(value)}
	return nil
}

// Delete buffers the removal of key until commit.
func (t *tx) Delete(key string) error {
	if t.readOnly {
		return errReadOnly
	}
	if key == "" {
		return errors.New("etcd store: empty key")
	}
	t.writes[key] = write{del: true}
	return nil
}

// clone never returns nil, so an empty value stays distinct from "missing",
// and callers never share the cache's memory.
func clone(v []byte) []byte { return append([]byte{}, v...) }
