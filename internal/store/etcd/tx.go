package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/duetnet/duet/internal/store"
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

// fetch runs ops, Gets at the snapshot, in one read-only Txn (served like a
// linearizable Range, without a raft write), fixing the snapshot on the
// first call. op and key name the read in errors.
func (t *tx) fetch(op, key string, ops ...clientv3.Op) ([]*pb.RangeResponse, error) {
	if t.failed != nil {
		return nil, t.failed
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.cfg.RequestTimeout)
	defer cancel()
	resp, err := t.s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		t.failed = t.s.wrap(t.ctx, fmt.Sprintf("%s %q", op, key), err)
		return nil, t.failed
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	out := make([]*pb.RangeResponse, len(resp.Responses))
	for i, r := range resp.Responses {
		out[i] = r.GetResponseRange()
	}
	return out, nil
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
	resps, err := t.fetch("get", key, clientv3.OpGet(t.s.cfg.Prefix+key, clientv3.WithRev(t.rev)))
	if err != nil {
		return nil, false, err
	}
	r := read{}
	if kvs := resps[0].Kvs; len(kvs) > 0 {
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
		clientv3.OpGet(t.s.cfg.Prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(t.rev)),
		clientv3.OpGet(t.s.marker, clientv3.WithRev(t.rev)))
	if err != nil {
		return nil, err
	}
	t.lists[prefix] = true
	if kvs := resps[1].Kvs; len(kvs) > 0 {
		t.markerRev = kvs[0].ModRevision
	}
	var out []store.KV
	for _, kv := range resps[0].Kvs {
		key := strings.TrimPrefix(string(kv.Key), t.s.cfg.Prefix)
		if key == "" {
			continue // the deletion marker, not a user key
		}
		t.reads[key] = read{value: kv.Value, present: true, modRev: kv.ModRevision}
		if _, mine := t.writes[key]; !mine {
			out = append(out, store.KV{Key: key, Value: clone(kv.Value)})
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
