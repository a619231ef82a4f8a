package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// errReadOnly is returned by Put and Delete inside View.
var _ store.Prefetcher = (*tx)(nil)

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
	// listed is what each listed prefix held at rev, in key order (the
	// values are in reads).
	listed map[string][]string
	writes map[string]write
	// markerRevs are the ModRevisions at rev (0: absent) of the deletion
	// markers of the segments listed, read by every List.
	markerRevs map[string]int64
	// failed is the first read error, kept so that an attempt whose fn
	// swallowed it is never committed.
	failed error
}

func newTx(ctx context.Context, s *Store, readOnly bool) *tx {
	return &tx{s: s, ctx: ctx, readOnly: readOnly,
		reads: map[string]read{}, lists: map[string]bool{}, listed: map[string][]string{}, writes: map[string]write{}, markerRevs: map[string]int64{}}
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
	if _, ok := t.reads[key]; !ok {
		if err := t.Prefetch([]string{key}, nil); err != nil {
			return nil, false, err
		}
	}
	r := t.reads[key]
	return clone(r.value), r.present, nil
}

// List records the prefix as well as every key it returned: commit must
// notice keys created under it, not only changes to the keys seen. A
// prefix listed once is served from the snapshot afterwards, merged with
// the tx's own writes.
func (t *tx) List(prefix string) ([]store.KV, error) {
	if _, ok := t.listed[prefix]; !ok {
		if err := t.Prefetch(nil, []string{prefix}); err != nil {
			return nil, err
		}
	}
	var out []store.KV
	for _, key := range t.listed[prefix] {
		if _, mine := t.writes[key]; !mine {
			out = append(out, store.KV{Key: key, Value: clone(t.reads[key].value)})
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

// Prefetch reads keys and lists prefixes, those not read yet, in one
// request (store.Prefetcher): IPAM names what an allocation will read, so
// an allocation costs one read round trip instead of one per read. A List
// also reads the deletion marker, in case commit needs it.
func (t *tx) Prefetch(keys, prefixes []string) error {
	var ops []kv.Op
	var what []string
	for _, key := range keys {
		if _, ok := t.reads[key]; ok || key == "" {
			continue
		}
		if _, ok := t.writes[key]; ok {
			continue
		}
		ops = append(ops, kv.Op{Kind: kv.Range, Key: t.s.cfg.Prefix + key})
		what = append(what, key)
	}
	nkeys := len(ops)
	for _, p := range prefixes {
		if _, ok := t.listed[p]; ok {
			continue
		}
		ops = append(ops, kv.Op{Kind: kv.Range, Key: t.s.cfg.Prefix + p, End: kv.PrefixEnd(t.s.cfg.Prefix + p)})
		what = append(what, p)
	}
	if len(ops) == 0 {
		return nil
	}
	lists := len(ops) > nkeys
	var segs []string
	if lists {
		for _, p := range what[nkeys:] {
			if seg := segment(p); !slices.Contains(segs, seg) {
				if _, ok := t.markerRevs[seg]; !ok {
					segs = append(segs, seg)
				}
			}
		}
		for _, seg := range segs {
			ops = append(ops, kv.Op{Kind: kv.Range, Key: t.s.markerOf(seg)})
		}
	}
	nlists := len(ops) - len(segs)
	op := "get"
	if lists {
		op = "list"
	}
	resps, err := t.fetch(op, strings.Join(what, " "), ops...)
	if err != nil {
		return err
	}
	for i, key := range what[:nkeys] {
		r := read{}
		if kvs := resps[i]; len(kvs) > 0 {
			r = read{value: kvs[0].Value, present: true, modRev: kvs[0].ModRevision}
		}
		t.reads[key] = r
	}
	if !lists {
		return nil
	}
	for i, seg := range segs {
		t.markerRevs[seg] = 0
		if kvs := resps[nlists+i]; len(kvs) > 0 {
			t.markerRevs[seg] = kvs[0].ModRevision
		}
	}
	for i, p := range what[nkeys:] {
		t.lists[p] = true
		listed := []string{}
		for _, e := range resps[nkeys+i] {
			key := strings.TrimPrefix(e.Key, t.s.cfg.Prefix)
			if key == "" || key[0] == 0 {
				continue // a deletion marker, not a user key
			}
			t.reads[key] = read{value: e.Value, present: true, modRev: e.ModRevision}
			listed = append(listed, key)
		}
		t.listed[p] = listed
	}
	return nil
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
