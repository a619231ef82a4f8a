package etcd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// modes are the two ways commit guards a listed prefix against deletions.
var modes = []struct {
	name string
	cfg  Config
}{
	{"PerKey", Config{}},
	// With the 4 listed keys seeded below, 1 prefix + 4 keys > 4: the
	// marker guards the prefix.
	{"Marker", Config{MaxTxnOps: 4}},
}

// TestReadSetConflicts makes exactly one change between an Update's reads
// and its commit, from another client, and checks whether fn had to run
// again: always when the change touches what fn read, never otherwise.
func TestReadSetConflicts(t *testing.T) {
	endpoint := startEtcd(t)
	changes := []struct {
		name  string
		retry bool // whether the change invalidates fn's reads
		do    func(other store.Tx) error
	}{
		{"CreateUnderList", true, func(tx store.Tx) error { return tx.Put("p/c", []byte("new")) }},
		{"ModifyListed", true, func(tx store.Tx) error { return tx.Put("p/a", []byte("changed")) }},
		{"DeleteListed", true, func(tx store.Tx) error { return tx.Delete("p/b") }},
		{"CreateGotAbsent", true, func(tx store.Tx) error { return tx.Put("g/absent", []byte("x")) }},
		{"DeleteGot", true, func(tx store.Tx) error { return tx.Delete("g/present") }},
		{"Unrelated", false, func(tx store.Tx) error { return tx.Put("elsewhere", []byte("x")) }},
		{"SiblingPrefix", false, func(tx store.Tx) error { return tx.Put("pX", []byte("x")) }},
		// A deletion in another part of the key space: the marker of p/
		// is not bumped (pods deleted must not undo a block claim).
		{"DeleteInOtherPart", false, func(tx store.Tx) error { return tx.Delete("q/x") }},
	}
	for _, mode := range modes {
		for _, ch := range changes {
			t.Run(mode.name+"/"+ch.name, func(t *testing.T) {
				s := openFresh(t, endpoint, mode.cfg)
				other := openFresh(t, endpoint, Config{Prefix: s.cfg.Prefix})
				ctx := context.Background()
				seed(t, other, "p/a", "1", "p/b", "2", "p/c0", "", "p/d0", "", "g/present", "3", "q/x", "4")
				runs := 0
				err := s.Update(ctx, func(tx store.Tx) error {
					runs++
					kvs, err := tx.List("p/")
					if err != nil {
						return err
					}
					_, okA, errA := tx.Get("g/absent")
					_, okP, errP := tx.Get("g/present")
					if errA != nil || errP != nil {
						return fmt.Errorf("%v %v", errA, errP)
					}
					if runs == 1 {
						if err := other.Update(ctx, ch.do); err != nil {
							return err
						}
					}
					summary := fmt.Sprintf("%s absent=%v present=%v", joinKV(kvs), okA, okP)
					return tx.Put("out", []byte(summary))
				})
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]int{true: 2, false: 1}[ch.retry]; runs != want {
					t.Errorf("fn ran %d times, want %d", runs, want)
				}
				t.Logf("out = %s", get(t, s, "out"))
			})
		}
	}
}

// TestForeignDeleteInMarkerMode pins the documented limit: with the
// marker guarding a listed prefix, a deletion made behind the package's
// back (a raw etcd client, like etcdctl del) goes unnoticed; with
// per-key comparisons it is caught.
func TestForeignDeleteInMarkerMode(t *testing.T) {
	endpoint := startEtcd(t)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			s := openFresh(t, endpoint, mode.cfg)
			seed(t, openFresh(t, endpoint, Config{Prefix: s.cfg.Prefix}), "p/a", "1", "p/b", "2", "p/c0", "", "p/d0", "")
			runs := 0
			err := s.Update(context.Background(), func(tx store.Tx) error {
				runs++
				if _, err := tx.List("p/"); err != nil {
					return err
				}
				if runs == 1 {
					del := kv.TxnRequest{Success: []kv.Op{{Kind: kv.Delete, Key: s.cfg.Prefix + "p/b"}}}
					if _, err := s.kv.Txn(context.Background(), del); err != nil {
						return err
					}
				}
				return tx.Put("out", []byte("x"))
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]int{"PerKey": 2, "Marker": 1}[mode.name]; runs != want {
				t.Errorf("fn ran %d times, want %d", runs, want)
			}
		})
	}
}

// TestListBound has many clients each add a key under a prefix only while
// it holds fewer than limit keys: a decision that rests on the List alone,
// which write skew would break.
func TestListBound(t *testing.T) {
	endpoint := startEtcd(t)
	const limit, clients, tries = 5, 16, 10
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			prefix := openFresh(t, endpoint, Config{}).cfg.Prefix
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				s := openFresh(t, endpoint, Config{Prefix: prefix, MaxTxnOps: mode.cfg.MaxTxnOps})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < tries; i++ {
						err := s.Update(context.Background(), func(tx store.Tx) error {
							kvs, err := tx.List("members/")
							if err != nil || len(kvs) >= limit {
								return err
							}
							return tx.Put(fmt.Sprintf("members/%d-%d", c, i), nil)
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			s := openFresh(t, endpoint, Config{Prefix: prefix})
			if got := list(t, s, "members/"); len(got) != limit {
				t.Fatalf("%d members, want exactly %d: %s", len(got), limit, joinKV(got))
			}
		})
	}
}

// TestConcurrentAllocations is the IPAM pattern under real contention: 16
// clients, each its own connection, each taking 100 slots by reading the
// taken set and writing a free slot.
func TestConcurrentAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10-40s: every attempt lists up to 1600 keys")
	}
	endpoint := startEtcd(t)
	const clients, each, slots = 16, 100, 16 * 100
	prefix := openFresh(t, endpoint, Config{}).cfg.Prefix
	got := make([][]int, clients)
	var attempts, maxRuns atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		s := openFresh(t, endpoint, Config{Prefix: prefix})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var slot, runs int
				err := s.Update(context.Background(), func(tx store.Tx) error {
					runs++
					kvs, err := tx.List("slots/")
					if err != nil {
						return err
					}
					taken := map[string]bool{}
					for _, kv := range kvs {
						taken[kv.Key] = true
					}
					// A random free slot, so clients do not all race for the lowest.
					for slot = rand.IntN(slots); taken[fmt.Sprintf("slots/%d", slot)]; slot = (slot + 1) % slots {
					}
					return tx.Put(fmt.Sprintf("slots/%d", slot), []byte(fmt.Sprint(c)))
				})
				if err != nil {
					t.Error(err)
					return
				}
				got[c] = append(got[c], slot)
				attempts.Add(int64(runs))
				for m := maxRuns.Load(); int64(runs) > m && !maxRuns.CompareAndSwap(m, int64(runs)); m = maxRuns.Load() {
				}
			}
		}()
	}
	wg.Wait()
	owner, dups := map[int]int{}, 0
	for c, ss := range got {
		for _, slot := range ss {
			if _, dup := owner[slot]; dup {
				dups++
			}
			owner[slot] = c
		}
	}
	stored := list(t, openFresh(t, endpoint, Config{Prefix: prefix}), "slots/")
	if len(owner) != slots || dups != 0 || len(stored) != slots {
		t.Fatalf("%d distinct slots handed out, %d duplicates, %d stored; want %d, 0, %d", len(owner), dups, len(stored), slots, slots)
	}
	t.Logf("%d allocations in %d attempts, at most %d for one", slots, attempts.Load(), maxRuns.Load())
}

func seed(t *testing.T, s store.Store, kv ...string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s store.Store, key string) string {
	t.Helper()
	var out string
	err := s.View(context.Background(), func(tx store.Tx) error {
		v, _, err := tx.Get(key)
		out = string(v)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func list(t *testing.T, s store.Store, prefix string) []store.KV {
	t.Helper()
	var out []store.KV
	err := s.View(context.Background(), func(tx store.Tx) (err error) {
		out, err = tx.List(prefix)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func joinKV(kvs []store.KV) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+string(kv.Value))
	}
	return strings.Join(parts, ",")
}
