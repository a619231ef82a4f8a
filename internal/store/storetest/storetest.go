// Package storetest is the conformance suite every store.Store backend must
// pass, so that IPAM can rely on the same semantics from bbolt and etcd.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"

	"github.com/duetnet/duet/internal/store"
)

// Run runs the suite. open must return a fresh, empty store; the suite
// closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"EmptyValue", testEmptyValue},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"ListPrefix", testListPrefix},
		{"ReadOwnWrites", testReadOwnWrites},
		{"RollbackOnError", testRollback},
		{"ViewSeesCommitted", testViewSeesCommitted},
		{"ViewCannotWrite", testViewCannotWrite},
		{"ValuesAreCopies", testValuesAreCopies},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentCounter", testConcurrentCounter},
		{"ConcurrentSlots", testConcurrentSlots},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var errBoom = errors.New("boom")

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func put(t *testing.T, s store.Store, kv ...string) {
	t.Helper()
	update(t, s, func(tx store.Tx) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
}

// get reads key in a View; missing keys read as "<missing>".
func get(t *testing.T, s store.Store, key string) string {
	t.Helper()
	var out string
	err := s.View(context.Background(), func(tx store.Tx) error {
		v, ok, err := tx.Get(key)
		if !ok {
			v = []byte("<missing>")
		}
		out = string(v)
		return err
	})
	if err != nil {
		t.Fatalf("View: %v", err)
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
		t.Fatalf("View: %v", err)
	}
	return out
}

func keys(kvs []store.KV) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func testGetMissing(t *testing.T, s store.Store) {
	if got := get(t, s, "nope"); got != "<missing>" {
		t.Fatalf("Get(missing) = %q", got)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Fatalf("List on empty store = %v", got)
	}
}

func testPutGet(t *testing.T, s store.Store) {
	put(t, s, "pools/a", "1")
	if got := get(t, s, "pools/a"); got != "1" {
		t.Fatalf("Get = %q, want 1", got)
	}
}

func testEmptyValue(t *testing.T, s store.Store) {
	put(t, s, "k", "")
	err := s.View(context.Background(), func(tx store.Tx) error {
		v, ok, err := tx.Get("k")
		if err != nil || !ok || len(v) != 0 {
			t.Errorf("Get(empty) = %q, %v, %v; want present and empty", v, ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	put(t, s, "k", "old")
	put(t, s, "k", "new")
	if got := get(t, s, "k"); got != "new" {
		t.Fatalf("Get = %q, want new", got)
	}
}

func testDelete(t *testing.T, s store.Store) {
	put(t, s, "k", "v", "other", "x")
	update(t, s, func(tx store.Tx) error { return tx.Delete("k") })
	if got := get(t, s, "k"); got != "<missing>" {
		t.Fatalf("after Delete, Get = %q", got)
	}
	if got := get(t, s, "other"); got != "x" {
		t.Fatalf("Delete removed a neighbour: Get(other) = %q", got)
	}
	update(t, s, func(tx store.Tx) error { return tx.Delete("never-existed") })
}

func testListPrefix(t *testing.T, s store.Store) {
	put(t, s, "blocks/b", "2", "blocksX", "x", "blocks/a/1", "1", "block", "y",
		"pools/p", "p", "blocks/", "0", "blocks/a", "a")
	got := list(t, s, "blocks/")
	want := []string{"blocks/", "blocks/a", "blocks/a/1", "blocks/b"}
	if !reflect.DeepEqual(keys(got), want) {
		t.Fatalf("List(blocks/) = %v, want %v", keys(got), want)
	}
	if string(got[2].Value) != "1" {
		t.Fatalf("List value for %s = %q, want 1", got[2].Key, got[2].Value)
	}
	all := keys(list(t, s, ""))
	wantAll := []string{"block", "blocks/", "blocks/a", "blocks/a/1", "blocks/b", "blocksX", "pools/p"}
	if !reflect.DeepEqual(all, wantAll) {
		t.Fatalf("List(\"\") = %v, want %v", all, wantAll)
	}
	if got := list(t, s, "zzz"); len(got) != 0 {
		t.Fatalf("List(zzz) = %v, want none", keys(got))
	}
}

func testReadOwnWrites(t *testing.T, s store.Store) {
	put(t, s, "a/1", "old", "a/2", "gone")
	update(t, s, func(tx store.Tx) error {
		// Listed before the writes too: a backend that caches what it
		// listed must still merge the writes into later Lists.
		if kvs, err := tx.List("a/"); err != nil || !reflect.DeepEqual(keys(kvs), []string{"a/1", "a/2"}) {
			t.Errorf("List before writes = %v, %v", keys(kvs), err)
		}
		if err := tx.Put("a/1", []byte("new")); err != nil {
			return err
		}
		if err := tx.Put("a/3", []byte("added")); err != nil {
			return err
		}
		if err := tx.Delete("a/2"); err != nil {
			return err
		}
		if v, ok, err := tx.Get("a/1"); err != nil || !ok || string(v) != "new" {
			t.Errorf("Get own write = %q, %v, %v", v, ok, err)
		}
		if _, ok, err := tx.Get("a/2"); err != nil || ok {
			t.Errorf("Get own delete: present=%v, err=%v", ok, err)
		}
		kvs, err := tx.List("a/")
		if want := []string{"a/1", "a/3"}; err != nil || !reflect.DeepEqual(keys(kvs), want) {
			t.Errorf("List own writes = %v, %v; want %v", keys(kvs), err, want)
		} else if string(kvs[0].Value) != "new" {
			t.Errorf("List own writes: a/1 = %q, want the written value", kvs[0].Value)
		}
		return nil
	})
}

func testRollback(t *testing.T, s store.Store) {
	put(t, s, "keep", "v", "victim", "v")
	err := s.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Put("keep", []byte("changed")); err != nil {
			return err
		}
		if err := tx.Put("new", []byte("x")); err != nil {
			return err
		}
		if err := tx.Delete("victim"); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update error = %v, want fn's error", err)
	}
	for k, want := range map[string]string{"keep": "v", "new": "<missing>", "victim": "v"} {
		if got := get(t, s, k); got != want {
			t.Errorf("after rollback, %s = %q, want %q", k, got, want)
		}
	}
}

func testViewSeesCommitted(t *testing.T, s store.Store) {
	put(t, s, "k", "1")
	put(t, s, "k", "2")
	if got := get(t, s, "k"); got != "2" {
		t.Fatalf("View sees %q, want the last commit 2", got)
	}
}

func testViewCannotWrite(t *testing.T, s store.Store) {
	var putErr error
	err := s.View(context.Background(), func(tx store.Tx) error {
		putErr = tx.Put("k", []byte("v"))
		return nil
	})
	if err == nil && putErr == nil {
		t.Error("Put inside View succeeded")
	}
	if got := get(t, s, "k"); got != "<missing>" {
		t.Fatalf("Put inside View was written: %q", got)
	}
}

func testValuesAreCopies(t *testing.T, s store.Store) {
	buf := []byte("original")
	update(t, s, func(tx store.Tx) error {
		err := tx.Put("k", buf)
		copy(buf, "CLOBBER!") // the caller reuses its buffer before commit
		return err
	})
	var got []byte
	var listed []store.KV
	err := s.View(context.Background(), func(tx store.Tx) (err error) {
		if got, _, err = tx.Get("k"); err != nil {
			return err
		}
		listed, err = tx.List("")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Churn the store so a backend that handed out its own memory
	// (an mmap that is remapped or reused) would show it.
	big := bytes.Repeat([]byte("z"), 4096)
	for i := 0; i < 20; i++ {
		update(t, s, func(tx store.Tx) error {
			if err := tx.Put("k", []byte("overwritten")); err != nil {
				return err
			}
			for j := 0; j < 50; j++ {
				if err := tx.Put(fmt.Sprintf("fill/%d/%d", i, j), big); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if string(got) != "original" || len(listed) != 1 || string(listed[0].Value) != "original" {
		t.Fatalf("retained values changed: Get=%q List=%v", got, listed)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Update(ctx, func(tx store.Tx) error {
		ran = true
		return tx.Put("k", []byte("v"))
	})
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("Update(canceled) = %v, fn ran: %v; want context.Canceled and no run", err, ran)
	}
	if got := get(t, s, "k"); got != "<missing>" {
		t.Fatalf("canceled Update wrote %q", got)
	}
}

// testConcurrentCounter catches lost updates: read-modify-write must be
// serializable.
func testConcurrentCounter(t *testing.T, s store.Store) {
	const workers, each = 16, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := Increment(context.Background(), s, "counter"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, want := get(t, s, "counter"), strconv.Itoa(workers*each); got != want {
		t.Fatalf("counter = %s, want %s (lost updates)", got, want)
	}
}

// Increment adds one to the decimal counter at key in one Update. It is
// exported for backend tests that hammer a store from several processes.
func Increment(ctx context.Context, s store.Store, key string) error {
	return s.Update(ctx, func(tx store.Tx) error {
		n := 0
		v, ok, err := tx.Get(key)
		if err != nil {
			return err
		}
		if ok {
			if n, err = strconv.Atoi(string(v)); err != nil {
				return err
			}
		}
		return tx.Put(key, []byte(strconv.Itoa(n+1)))
	})
}

// testConcurrentSlots is the IPAM pattern: read the taken set, pick the
// first free slot, claim it. No slot may be handed out twice.
func testConcurrentSlots(t *testing.T, s store.Store) {
	const workers, each = 16, 10
	picked := make([][]int, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var slot int
				err := s.Update(context.Background(), func(tx store.Tx) error {
					kvs, err := tx.List("slots/")
					if err != nil {
						return err
					}
					taken := map[string]bool{}
					for _, kv := range kvs {
						taken[kv.Key] = true
					}
					for slot = 0; taken[fmt.Sprintf("slots/%d", slot)]; slot++ {
					}
					return tx.Put(fmt.Sprintf("slots/%d", slot), []byte(strconv.Itoa(w)))
				})
				if err != nil {
					t.Error(err)
					return
				}
				picked[w] = append(picked[w], slot)
			}
		}()
	}
	wg.Wait()
	owner := map[int]int{}
	for w, slots := range picked {
		for _, slot := range slots {
			if prev, dup := owner[slot]; dup {
				t.Fatalf("slot %d handed to workers %d and %d", slot, prev, w)
			}
			owner[slot] = w
		}
	}
	if got := len(list(t, s, "slots/")); got != workers*each {
		t.Fatalf("%d slots stored, want %d", got, workers*each)
	}
	for slot := 0; slot < workers*each; slot++ {
		if got, want := get(t, s, fmt.Sprintf("slots/%d", slot)), strconv.Itoa(owner[slot]); got != want {
			t.Fatalf("slots/%d owned by %s in store, by %s per workers", slot, got, want)
		}
	}
}
