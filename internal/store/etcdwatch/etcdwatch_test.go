package etcdwatch

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/duetnet/duet/internal/etcdserver"
)

func startEtcd(t *testing.T, dir string, u url.URL) *etcdserver.Server {
	t.Helper()
	s, err := etcdserver.Start(context.Background(), etcdserver.Config{Dir: dir, ListenClient: []url.URL{u}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func signalled(c <-chan struct{}, within time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(within):
		return false
	}
}

func TestWatch(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no ::1: %v", err)
	}
	u := url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	dir := t.TempDir()
	s := startEtcd(t, dir, u)
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(k string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Put(pctx, k, time.Now().String()); err != nil {
			t.Fatal(err)
		}
	}
	c := Watch(ctx, s.Endpoints(), nil, "/duet/", nil)
	if !signalled(c, time.Second) {
		t.Fatal("no signal when the watch started")
	}
	time.Sleep(200 * time.Millisecond)
	if signalled(c, 0) {
		t.Fatal("a second signal before any change")
	}

	put("/duet/nodes/a")
	if !signalled(c, time.Second) {
		t.Fatal("no signal within 1s of a put under the prefix")
	}
	put("/other/x")
	if signalled(c, 500*time.Millisecond) {
		t.Fatal("signal for a put outside the prefix")
	}
	for i := 0; i < 20; i++ {
		put("/duet/storm")
	}
	if !signalled(c, time.Second) {
		t.Fatal("no signal for a storm of puts")
	}
	time.Sleep(200 * time.Millisecond)
	if signalled(c, 0) && signalled(c, 0) {
		t.Fatal("a storm left more than one signal pending")
	}

	// etcd restarts (same data, same address): the watch comes back.
	s.Close()
	time.Sleep(500 * time.Millisecond)
	s = startEtcd(t, dir, u)
	put("/duet/nodes/b")
	if !signalled(c, 15*time.Second) {
		t.Fatal("no signal for a put after etcd restarted")
	}
}

// TestWatchRelevant checks that the filter sees the key without the
// prefix and the values before and after, and that only relevant changes
// signal.
func TestWatchRelevant(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	s := startEtcd(t, t.TempDir(), u)
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan Event, 16)
	c := WatchRelevant(ctx, s.Endpoints(), nil, "/duet/", func(e Event) bool {
		seen <- e
		return e.Prev == nil // only new keys matter
	}, nil)
	if !signalled(c, time.Second) {
		t.Fatal("no signal when the watch started")
	}
	if _, err := cli.Put(ctx, "/duet/claims/fd00::/122", "n1"); err != nil {
		t.Fatal(err)
	}
	if !signalled(c, time.Second) {
		t.Fatal("no signal for a new key")
	}
	if e := <-seen; e.Key != "claims/fd00::/122" || e.Prev != nil || string(e.Value) != "n1" {
		t.Errorf("filter saw %+v", e)
	}
	if _, err := cli.Put(ctx, "/duet/claims/fd00::/122", "n2"); err != nil {
		t.Fatal(err)
	}
	if signalled(c, 500*time.Millisecond) {
		t.Fatal("signal for a change the filter calls irrelevant")
	}
	if e := <-seen; string(e.Prev) != "n1" || string(e.Value) != "n2" {
		t.Errorf("filter saw %+v, want the value before and after", e)
	}
}
