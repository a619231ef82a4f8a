package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

// countingTx counts writes: with etcd each one wakes every node's watch.
type countingTx struct {
	store.Tx
	puts *int
}

func (t countingTx) Put(k string, v []byte) error { *t.puts++; return t.Tx.Put(k, v) }

func TestRegisterWritesOnlyWhatChanged(t *testing.T) {
	s := memstore.New()
	puts := 0
	reg := func(n Node, now time.Time) error {
		return s.Update(context.Background(), func(tx store.Tx) error { return Register(countingTx{tx, &puts}, n, now) })
	}
	t0 := time.Now()
	n := Node{Name: "a", Addrs: []netip.Addr{netip.MustParseAddr("fd00::1")}, Routing: "direct", Instance: "i1"}
	steps := []struct {
		name string
		n    Node
		at   time.Duration
		puts int
		dup  bool
	}{
		{"first registration", n, 0, 1, false},
		{"same record, fresh heartbeat", n, time.Second, 1, false},
		{"heartbeat due", n, HeartbeatEvery, 2, false},
		{"address changed", Node{Name: "a", Addrs: []netip.Addr{netip.MustParseAddr("fd00::2")}, Routing: "direct", Instance: "i1"}, HeartbeatEvery + time.Second, 3, false},
		{"another live instance", Node{Name: "a", Addrs: n.Addrs, Routing: "direct", Instance: "i2"}, HeartbeatEvery + 2*time.Second, 3, true},
		{"another instance after the old one went stale", Node{Name: "a", Addrs: n.Addrs, Routing: "direct", Instance: "i2"}, HeartbeatEvery + time.Second + StaleAfter, 4, false},
	}
	for _, st := range steps {
		err := reg(st.n, t0.Add(st.at))
		var dup *ErrDuplicateName
		if errors.As(err, &dup) != st.dup || (err != nil && !st.dup) {
			t.Fatalf("%s: err %v", st.name, err)
		}
		if puts != st.puts {
			t.Fatalf("%s: %d writes in all, want %d", st.name, puts, st.puts)
		}
	}
}

func TestRemove(t *testing.T) {
	s := memstore.New()
	now := time.Unix(1_800_000_000, 0)
	n := Node{Name: "n1", Addrs: []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.1")}, Instance: "i1"}
	run := func(fn func(store.Tx) error) error { return s.Update(context.Background(), fn) }
	if err := run(func(tx store.Tx) error { return Register(tx, n, now) }); err != nil {
		t.Fatal(err)
	}
	err := run(func(tx store.Tx) error { return Remove(tx, "n1", now.Add(time.Second), false) })
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("removing a live node = %v, want a refusal naming --force", err)
	}
	if err := run(func(tx store.Tx) error { return Remove(tx, "n1", now.Add(StaleAfter), false) }); err != nil {
		t.Errorf("removing a stale node: %v", err)
	}
	var left []Node
	_ = run(func(tx store.Tx) (err error) { left, err = List(tx); return err })
	if len(left) != 0 {
		t.Errorf("nodes left: %+v", left)
	}
	if err := run(func(tx store.Tx) error { return Remove(tx, "n1", now, false) }); err != nil {
		t.Errorf("removing a missing node: %v, want nothing to do", err)
	}
}
