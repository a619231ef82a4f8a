package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
	"github.com/duetnet/duet/internal/store/hostlock"
)

// MaxAttempts bounds how often Update runs fn before giving up on a
// contended transaction.
const MaxAttempts = 64

// ErrConflict is returned (wrapped together with store.ErrUnavailable) when
// Update lost MaxAttempts races in a row: the caller should try again later.
var ErrConflict = errors.New("etcd store: transaction kept conflicting with concurrent ones")

// Update runs fn against a snapshot and commits its buffered writes in one
// etcd Txn that succeeds only if fn's reads still hold; if they do not, fn
// runs again from scratch (at most MaxAttempts times, with jittered
// backoff), so fn must have no effects outside tx.
//
// Guarantee: a committed Update is strictly serializable. At the commit
// revision C, for the snapshot revision R that fn read at:
//   - every key fn read with Get, present or absent, has the same
//     ModRevision (hence value and existence) at C as at R;
//   - every key a List returned still exists unmodified at C, and no key
//     under a listed prefix was created or modified in (R, C];
//
// so fn would have computed the same writes had it run atomically at C.
// Deletions of listed keys are caught by a per-key comparison, or, when the
// read set is too large for one Txn (Config.MaxTxnOps), by marker keys that
// every Update that deletes bumps: one store-wide, and one for each
// top-level part of the key space it deleted in ("handles/"), so a large
// List of one part conflicts only with deletions in that part (a cluster
// deleting pods at 100/s must not starve every block claim). A deletion
// made by a writer other than this package (etcdctl del) under a listed
// prefix is then not detected.
//
// fn's own error is returned unchanged and nothing is written. An Update
// whose fn writes nothing commits nothing (it is serializable at R, which a
// linearizable read fixed). If the commit request itself fails on the
// network, or ctx ends during it, its outcome is unknown: the error wraps
// store.ErrUnavailable (or ctx's error) and the writes may or may not be
// applied, so callers should retry idempotently, as IPAM's per-handle
// allocation does. Compaction of the snapshot revision restarts the
// attempt. The empty key and keys starting with a NUL byte are reserved
// (the markers).
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if s.cfg.HostLock != "" {
		// The host's queue may be long (a node starting many pods at once),
		// so wait while it moves; give up when one holder keeps the lock
		// for a request's timeout, or after HostLockWaitMax in all.
		l, ok, err := hostlock.AcquireQueued(s.cfg.HostLock, s.cfg.RequestTimeout, HostLockWaitMax)
		if err != nil {
			return fmt.Errorf("etcd store: host lock %s: %w", s.cfg.HostLock, err)
		}
		if !ok {
			return fmt.Errorf("etcd store: another duet process on this host held %s for %s, or the host's queue for it took over %s: %w", s.cfg.HostLock, s.cfg.RequestTimeout, HostLockWaitMax, store.ErrUnavailable)
		}
		defer l.Unlock()
	}
	return s.run(ctx, fn, false)
}

// View runs fn against a consistent snapshot (the revision of its first
// read, which is linearizable); Put and Delete fail. fn runs again only if
// the snapshot is compacted away while it reads.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.run(ctx, fn, true)
}

func (s *Store) run(ctx context.Context, fn func(store.Tx) error, readOnly bool) error {
	for attempt := 0; attempt < MaxAttempts; attempt++ {
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
		t := newTx(ctx, s, readOnly)
		err := fn(t)
		if errors.Is(t.failed, errRetry) {
			continue
		}
		if err != nil {
			return err
		}
		if t.failed != nil { // fn ignored a read error: its view is incomplete
			return t.failed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if readOnly || len(t.writes) == 0 {
			return nil
		}
		ok, err := t.commit()
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("%w (%d attempts): %w", ErrConflict, MaxAttempts, store.ErrUnavailable)
}

// backoff sleeps before a retry for a random time up to 2ms, doubling per
// attempt up to 256ms. The high cap matters: under heavy contention on one
// prefix (TestConcurrentAllocations, 16 writers on a 2-CPU host), a 64ms
// cap let clients burn CPU on doomed attempts and roughly doubled both the
// run time and the worst client's attempt count (to 36-50 of MaxAttempts).
func backoff(ctx context.Context, attempt int) error {
	if err := ctx.Err(); err != nil || attempt == 0 {
		return err
	}
	d := time.Duration(rand.Int64N(int64(time.Millisecond << min(attempt, 8))))
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// commit sends the one Txn; ok is false when a comparison failed.
func (t *tx) commit() (ok bool, err error) {
	cmps, err := t.compares()
	if err != nil {
		return false, err
	}
	var ops []kv.Op
	var deleted []string // segments with a deletion, "" (store-wide) first
	for _, key := range sortedKeys(t.writes) {
		w := t.writes[key]
		if w.del {
			if len(deleted) == 0 {
				deleted = append(deleted, "")
			}
			if seg := segment(key); !slices.Contains(deleted, seg) {
				deleted = append(deleted, seg)
			}
			ops = append(ops, kv.Op{Kind: kv.Delete, Key: t.s.cfg.Prefix + key})
		} else {
			ops = append(ops, kv.Op{Kind: kv.Put, Key: t.s.cfg.Prefix + key, Value: w.value})
		}
	}
	for _, seg := range deleted {
		ops = append(ops, kv.Op{Kind: kv.Put, Key: t.s.markerOf(seg)})
	}
	if limit := t.s.cfg.MaxTxnOps; len(ops) > limit {
		return false, fmt.Errorf("etcd store: transaction writes %d keys, more than the %d etcd allows in one (server --max-txn-ops, Config.MaxTxnOps)", len(ops), limit)
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.cfg.RequestTimeout)
	defer cancel()
	resp, err := t.s.kv.Txn(ctx, kv.TxnRequest{Compare: cmps, Success: ops})
	if err != nil {
		return false, t.s.wrap(t.ctx, "commit", err)
	}
	return resp.Succeeded, nil
}

// compares builds the If of the commit. Each listed prefix gets one range
// comparison that no key under it was created or modified after the
// snapshot (a range comparison holds when it holds for every key in the
// range, and trivially for an empty one). That cannot see deletions, so
// every key read also gets ModRevision == seen (0 for absent keys); if that
// is too many comparisons, keys under a listed prefix share one comparison
// on the deletion marker instead.
func (t *tx) compares() ([]kv.Cmp, error) {
	if t.rev == 0 {
		return nil, nil // blind writes: nothing read, nothing to check
	}
	var prefixes []string
	for _, p := range sortedKeys(t.lists) {
		if len(prefixes) == 0 || !strings.HasPrefix(p, prefixes[len(prefixes)-1]) {
			prefixes = append(prefixes, p) // a listed prefix covers longer ones
		}
	}
	var cmps []kv.Cmp
	for _, p := range prefixes {
		key := t.s.cfg.Prefix + p
		cmps = append(cmps, kv.Cmp{Key: key, End: kv.PrefixEnd(key), Op: kv.Less, ModRev: t.rev + 1})
	}
	limit := t.s.cfg.MaxTxnOps
	covered := func(string) bool { return false }
	if len(cmps)+len(t.reads) > limit && len(prefixes) > 0 {
		// Each listed prefix's segment marker: bumped by every deletion
		// in that part of the key space, so a large read of claims/ is
		// not undone by pods deleted under handles/.
		var segs []string
		for _, p := range prefixes {
			if seg := segment(p); !slices.Contains(segs, seg) {
				segs = append(segs, seg)
				cmps = append(cmps, kv.Cmp{Key: t.s.markerOf(seg), Op: kv.Equal, ModRev: t.markerRevs[seg]})
			}
		}
		covered = func(k string) bool {
			for _, p := range prefixes {
				if strings.HasPrefix(k, p) {
					return true
				}
			}
			return false
		}
	}
	for k, r := range t.reads { // order is irrelevant to etcd
		if !covered(k) {
			cmps = append(cmps, kv.Cmp{Key: t.s.cfg.Prefix + k, Op: kv.Equal, ModRev: r.modRev})
		}
	}
	if len(cmps) > limit {
		return nil, fmt.Errorf("etcd store: transaction needs %d comparisons (too many keys read outside listed prefixes), more than the %d etcd allows in one (server --max-txn-ops, Config.MaxTxnOps)", len(cmps), limit)
	}
	return cmps, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
