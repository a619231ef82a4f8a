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

// startLocal runs etcd on a free port of [::1] with its data in dir, and
// a client of it.
func startLocal(t *testing.T) (s *etcdserver.Server, dir string, u url.URL, cli *clientv3.Client) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("no ::1: %v", err)
	}
	u = url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	dir = t.TempDir()
	s = startEtcd(t, dir, u)
	cli, err = clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return s, dir, u, cli
}

func signalled(c <-chan struct{}, within time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(within):
		return false
	}
}

// TestMirrorSignals: the mirror signals once its parts are listed, then
// for each change under them, never for one outside them, at most once
// pending for a storm, and again after etcd restarts. The filter sees the
// key without the prefix and the values before and after.
func TestMirrorSignals(t *testing.T) {
	s, dir, u, cli := startLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(k, v string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Put(pctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(chan Event, 64)
	decode := func(_, _ string, v []byte) (any, error) { return string(v), nil }
	m := NewMirror(cli, "/duet/", []string{"claims/"}, decode, func(e Event) bool {
		select {
		case seen <- e:
		default:
		}
		return e.Prev == nil || string(e.Value) != "quiet" // a rewrite to "quiet" does not matter
	}, nil)
	go m.Run(ctx)
	if !signalled(m.Changed(), 5*time.Second) {
		t.Fatal("no signal when the mirror had listed")
	}
	time.Sleep(200 * time.Millisecond)
	if signalled(m.Changed(), 0) {
		t.Fatal("a second signal before any change")
	}

	put("/duet/claims/fd00::/122", "n1")
	if !signalled(m.Changed(), time.Second) {
		t.Fatal("no signal within 1s of a put under the prefix")
	}
	if e := <-seen; e.Key != "claims/fd00::/122" || e.Prev != nil || string(e.Value) != "n1" {
		t.Errorf("filter saw %+v", e)
	}
	put("/duet/claims/fd00::/122", "quiet")
	if signalled(m.Changed(), 500*time.Millisecond) {
		t.Fatal("signal for a change the filter calls irrelevant")
	}
	if e := <-seen; string(e.Prev) != "n1" || string(e.Value) != "quiet" {
		t.Errorf("filter saw %+v, want the value before and after", e)
	}
	put("/other/x", "x")
	put("/duet/nodes/x", "x") // not a mirrored part
	if signalled(m.Changed(), 500*time.Millisecond) {
		t.Fatal("signal for a put outside the mirrored parts")
	}
	for i := 0; i < 20; i++ {
		put("/duet/claims/storm", "s")
		put("/duet/claims/storm", "quiet") // keep each put of "s" a relevant change
	}
	if !signalled(m.Changed(), time.Second) {
		t.Fatal("no signal for a storm of puts")
	}
	time.Sleep(200 * time.Millisecond)
	if signalled(m.Changed(), 0) && signalled(m.Changed(), 0) {
		t.Fatal("a storm left more than one signal pending")
	}

	// etcd restarts (same data, same address): the watch comes back.
	s.Close()
	time.Sleep(500 * time.Millisecond)
	startEtcd(t, dir, u)
	put("/duet/claims/fd00::40/122", "n2")
	if !signalled(m.Changed(), 15*time.Second) {
		t.Fatal("no signal for a put after etcd restarted")
	}
}
