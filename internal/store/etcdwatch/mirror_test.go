package etcdwatch

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMirror: the mirror lists what is there, follows puts and deletes
// event by event (signalling only relevant ones), lists again after a
// compaction it missed, and comes back after etcd restarts.
func TestMirror(t *testing.T) {
	s, dir, u, cli := startLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(k, v string) {
		t.Helper()
		if _, err := cli.Put(ctx, "/duet/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	del := func(k string) {
		t.Helper()
		if _, err := cli.Delete(ctx, "/duet/"+k); err != nil {
			t.Fatal(err)
		}
	}
	put("nodes/a", "fd00::a")
	put("blocks/a/fd00:1::/122", "x")
	put("handles/n/c/eth0", "not mirrored")

	decode := func(part, key string, v []byte) (any, error) {
		if string(v) == "bad" {
			return nil, fmt.Errorf("bad value")
		}
		return strings.ToUpper(string(v)), nil
	}
	relevant := func(e Event) bool { return !strings.HasSuffix(e.Key, "/quiet") }
	m := NewMirror(cli, "/duet/", []string{"nodes/", "blocks/"}, decode, relevant, nil)
	go m.Run(ctx)
	if !signalled(m.Changed(), 5*time.Second) {
		t.Fatal("no signal after the first list")
	}
	want := func(part string, w map[string]any) {
		t.Helper()
		var got map[string]any
		for range 200 {
			var ok bool
			if got, ok = m.Snapshot(part); ok && maps.Equal(got, w) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: %v, want %v", part, got, w)
	}
	want("nodes/", map[string]any{"nodes/a": "FD00::A"})
	want("blocks/", map[string]any{"blocks/a/fd00:1::/122": "X"})

	put("nodes/b", "fd00::b")
	if !signalled(m.Changed(), 5*time.Second) {
		t.Error("no signal for a new node")
	}
	want("nodes/", map[string]any{"nodes/a": "FD00::A", "nodes/b": "FD00::B"})
	for signalled(m.Changed(), 100*time.Millisecond) { // drain: each part's list signals too
	}
	put("nodes/quiet", "q")
	want("nodes/", map[string]any{"nodes/a": "FD00::A", "nodes/b": "FD00::B", "nodes/quiet": "Q"})
	if signalled(m.Changed(), 200*time.Millisecond) {
		t.Error("signalled for a change the filter calls irrelevant")
	}
	del("nodes/quiet")
	put("nodes/b", "bad") // undecodable: left out, not kept stale
	del("blocks/a/fd00:1::/122")
	want("nodes/", map[string]any{"nodes/a": "FD00::A"})
	want("blocks/", map[string]any{})

	// etcd restarts (same data): the watches resume from their revision.
	s.Close()
	s = startEtcd(t, dir, u)
	put("blocks/b/fd00:1::40/122", "y")
	want("blocks/", map[string]any{"blocks/b/fd00:1::40/122": "Y"})

	// A compaction the mirror's watch has not caught up with: stop etcd,
	// write and compact past the watch's revision, start it again.
	s.Close()
	s = startEtcd(t, dir, u)
	cli2, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	var rev int64
	for i := range 5 {
		r, err := cli2.Put(ctx, fmt.Sprintf("/duet/nodes/c%d", i), "c")
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	if _, err := cli2.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	want("nodes/", map[string]any{"nodes/a": "FD00::A", "nodes/c0": "C", "nodes/c1": "C", "nodes/c2": "C", "nodes/c3": "C", "nodes/c4": "C"})
}
