package etcd

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd/kv"
)

// counting counts the Txns a store sends.
type counting struct {
	kv.Transport
	n atomic.Int64
}

func (c *counting) Txn(ctx context.Context, r kv.TxnRequest) (kv.TxnResponse, error) {
	c.n.Add(1)
	return c.Transport.Txn(ctx, r)
}

// TestPrefetch checks that Prefetch reads keys and prefixes in one
// request, and that the Gets and Lists after it (and a second List of a
// prefix) send nothing.
func TestPrefetch(t *testing.T) {
	endpoint := startEtcd(t)
	seedStore := openFresh(t, endpoint, Config{})
	seed(t, seedStore, "h/1", "x", "b/n1/a", "1", "b/n1/b", "2", "b/n2/a", "3")
	g, err := kv.NewGateway([]string{endpoint}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{Transport: g}
	s, err := OpenTransport(Config{Endpoints: []string{endpoint}, Prefix: seedStore.cfg.Prefix}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := c.n.Load()
	err = s.View(context.Background(), func(tx store.Tx) error {
		if err := tx.(store.Prefetcher).Prefetch([]string{"h/1", "h/2"}, []string{"b/n1/"}); err != nil {
			return err
		}
		if v, ok, err := tx.Get("h/1"); err != nil || !ok || string(v) != "x" {
			t.Errorf("Get h/1 = %q %v %v", v, ok, err)
		}
		if _, ok, err := tx.Get("h/2"); err != nil || ok {
			t.Errorf("Get h/2 = %v %v, want absent", ok, err)
		}
		for range 2 {
			if kvs, err := tx.List("b/n1/"); err != nil || len(kvs) != 2 || kvs[0].Key != "b/n1/a" || string(kvs[1].Value) != "2" {
				t.Errorf("List b/n1/ = %v %v", kvs, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.n.Load() - before; n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}
