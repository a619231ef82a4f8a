package cluster

import (
	"context"
	"errors"
	"net/netip"
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
