package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

// fakeKernel holds node routes in memory; no uplink, so no proxy entries.
type fakeKernel struct {
	routes map[netip.Prefix]kernel.NodeRoute
}

func (k *fakeKernel) NodeRoutes() ([]kernel.NodeRoute, error) {
	var out []kernel.NodeRoute
	for _, r := range k.routes {
		out = append(out, r)
	}
	return out, nil
}
func (k *fakeKernel) ReplaceNodeRoute(r kernel.NodeRoute) error { k.routes[r.Dst] = r; return nil }
func (k *fakeKernel) DelNodeRoute(r kernel.NodeRoute) error     { delete(k.routes, r.Dst); return nil }
func (k *fakeKernel) EnsureVXLAN(netip.Addr, net.HardwareAddr, int, netip.Addr) error {
	return nil
}
func (k *fakeKernel) VTEPPeers() ([]kernel.VTEPPeer, error)                          { return nil, nil }
func (k *fakeKernel) ReplaceVTEPPeer(kernel.VTEPPeer) error                          { return nil }
func (k *fakeKernel) DelVTEPPeer(kernel.VTEPPeer) error                              { return nil }
func (k *fakeKernel) OnLinkPrefixes() ([]kernel.OnLinkPrefix, error)                 { return nil, nil }
func (k *fakeKernel) ProxyEntries() ([]kernel.ProxyEntry, error)                     { return nil, nil }
func (k *fakeKernel) AddProxyEntry(kernel.ProxyEntry) ([]kernel.SysctlChange, error) { return nil, nil }
func (k *fakeKernel) DelProxyEntry(kernel.ProxyEntry) error                          { return nil }

var _ Kernel = (*fakeKernel)(nil)

func (k *fakeKernel) dump() []string {
	var out []string
	for _, r := range k.routes {
		if r.Blackhole {
			out = append(out, "blackhole "+r.Dst.String())
		} else {
			out = append(out, r.Dst.String()+" via "+r.Via.String())
		}
	}
	sort.Strings(out)
	return out
}

// fakeView is a ClusterView whose answer the test sets.
type fakeView struct {
	nodes  []cluster.Node
	blocks []ipam.Block
	err    error
}

func (v *fakeView) View() (cluster.Node, []cluster.Node, []ipam.Block, error) {
	if v.err != nil {
		return cluster.Node{}, nil, nil, v.err
	}
	// Fresh slices every time, as an informer-backed view returns.
	return v.nodes[0], slices.Clone(v.nodes), slices.Clone(v.blocks), nil
}

var _ ClusterView = (*fakeView)(nil)

type fakeNoNAT struct{ have []netip.Prefix }

func (f *fakeNoNAT) EnsureNoNAT(_ context.Context, ps []netip.Prefix) (int, error) {
	n := 0
	for _, p := range ps {
		if !slices.Contains(f.have, p) {
			f.have = append(f.have, p)
			n++
		}
	}
	return n, nil
}

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr  { return netip.MustParseAddr(s) }

// TestViewSource: with the desired state from a ClusterView (as from the
// Kubernetes API), the agent routes every other node's ranges, keeps
// every range out of masquerading, reads its pods from its own store, and
// runs the synced hook only after a full reconcile. A node gone from the
// view loses its routes; a view that cannot answer changes nothing.
func TestViewSource(t *testing.T) {
	n1 := cluster.Node{Name: "node1", Addrs: []netip.Addr{ip("fd00:ff::1"), ip("10.255.0.1")}}
	n2 := cluster.Node{Name: "node2", Addrs: []netip.Addr{ip("fd00:ff::2"), ip("10.255.0.2")}}
	blk := func(cidr, node string) ipam.Block { return ipam.Block{CIDR: p(cidr), Pool: p(cidr), Node: node} }
	view := &fakeView{nodes: []cluster.Node{n1, n2}, blocks: []ipam.Block{
		blk("fd00:10:244:1::/64", "node1"), blk("10.244.1.0/24", "node1"),
		blk("fd00:10:244:2::/64", "node2"), blk("10.244.2.0/24", "node2")}}
	// The plugin's record of a pod on this node, and one of another node
	// (a store shared by mistake): only the own is proxied.
	ms := memstore.New()
	err := ms.Update(context.Background(), func(tx store.Tx) error {
		if _, err := ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "duet", ContainerID: "c1", IfName: "eth0"}, Node: "node1",
			Families: []ipam.Family{ipam.IPv6}, Pools: []ipam.Pool{{CIDR: p("fd00:10:244:1::/64"), BlockSize: 64, Assign: ipam.Sequential}}}); err != nil {
			return err
		}
		_, err := ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "duet", ContainerID: "c2", IfName: "eth0"}, Node: "node2",
			Families: []ipam.Family{ipam.IPv6}, Pools: []ipam.Pool{{CIDR: p("fd00:10:244:2::/64"), BlockSize: 64, Assign: ipam.Sequential}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{routes: map[netip.Prefix]kernel.NodeRoute{}}
	nonat := &fakeNoNAT{}
	var hooked []Desired
	a := NewWithSource(Config{Node: "node1", Routing: routing.Direct},
		NewViewSource(view, routing.Direct, func() (store.Store, error) { return nopCloser{ms}, nil }),
		func() (Kernel, func(), error) { return k, func() {}, nil }, nil, slog.New(slog.DiscardHandler)).
		WithNoNAT(nonat).
		WithSynced(func(_ context.Context, d Desired) error { hooked = append(hooked, d); return nil })
	ctx := context.Background()

	// The view cannot answer yet: nothing programmed, no hook.
	view.err = errors.New("waiting for the Kubernetes API")
	if err := a.Sync(ctx); err == nil || a.Status().LastError != view.err.Error() {
		t.Fatalf("sync with no view: %v, status %q", err, a.Status().LastError)
	}
	if len(k.routes) != 0 || len(hooked) != 0 || len(nonat.have) != 0 {
		t.Fatalf("something was made without a view: %v %v %v", k.routes, hooked, nonat.have)
	}

	view.err = nil
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.244.2.0/24 via 10.255.0.2", "blackhole 10.244.1.0/24", "blackhole fd00:10:244:1::/64", "fd00:10:244:2::/64 via fd00:ff::2"}
	if got := k.dump(); !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if len(nonat.have) != 4 {
		t.Errorf("no-NAT prefixes %v, want every node's ranges", nonat.have)
	}
	if len(hooked) != 1 || len(hooked[0].Local) != 1 || !strings.HasPrefix(hooked[0].Local[0].String(), "fd00:10:244:1::") || hooked[0].Self.Routing != routing.Direct {
		t.Errorf("hook saw %+v", hooked)
	}
	if st := a.Status(); st.Node.Name != "node1" || len(st.Nodes) != 2 || st.LastError != "" {
		t.Errorf("status %+v", st)
	}

	// node2 deleted from the API: its routes go, this node's stay.
	view.nodes, view.blocks = view.nodes[:1], view.blocks[:2]
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.dump(); !slices.Equal(got, want[1:3]) {
		t.Errorf("after node2's deletion: %v, want %v", got, want[1:3])
	}
	if a.Status().Changed != 2 {
		t.Errorf("changed %d, want the 2 routes deleted", a.Status().Changed)
	}

	// A failing hook fails the sync, and says so in the status.
	a.WithSynced(func(context.Context, Desired) error { return errors.New("--cni-conf-dir /x: read-only file system") })
	if err := a.Sync(ctx); err == nil || !strings.Contains(a.Status().LastError, "--cni-conf-dir") {
		t.Errorf("failing hook: %v %q", err, a.Status().LastError)
	}
}

// nopCloser keeps the memstore across the agent's per-sync Close.
type nopCloser struct{ store.Store }

func (nopCloser) Close() error { return nil }

// A block empty for BlockReleaseAfter, sync after sync, goes back to its
// pool; one that fills again restarts the clock; another node's empty
// block is never this node's to release. IPv6 first.
func TestEmptyBlocksComeBack(t *testing.T) {
	for _, cidr := range []string{"fd00:b10c::/120", "10.99.0.0/24"} {
		st := memstore.New()
		pool, err := ipam.PoolSpec{CIDR: cidr}.Resolve("pools")
		if err != nil {
			t.Fatal(err)
		}
		alloc := func(node, id string) ipam.Allocation {
			var a ipam.Allocation
			err := st.Update(context.Background(), func(tx store.Tx) (err error) {
				a, err = ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "n", ContainerID: id, IfName: "eth0"}, Node: node, Families: []ipam.Family{pool.Family()}, Pools: []ipam.Pool{pool}})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		release := func(a ipam.Allocation) {
			if err := st.Update(context.Background(), func(tx store.Tx) error { _, _, err := ipam.Release(tx, a.Handle); return err }); err != nil {
				t.Fatal(err)
			}
		}
		release(alloc("n1", "a"))
		release(alloc("n2", "b")) // n2's block, empty too
		now := time.Unix(1_000_000, 0)
		src := &storeSource{cfg: Config{Node: "n1", Addrs: []netip.Addr{netip.MustParseAddr("fd00::1")}, Routing: routing.Direct, BlockReleaseAfter: 10 * time.Minute},
			open: func() (store.Store, error) { return st, nil }, now: func() time.Time { return now }, empty: map[netip.Prefix]time.Time{}}
		blocksOf := func(d Desired) (out []string) {
			for _, b := range d.Blocks {
				out = append(out, b.Node+" "+b.CIDR.String())
			}
			return out
		}
		sync := func(step time.Duration) Desired {
			now = now.Add(step)
			d, err := src.Desired(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		if d := sync(0); len(d.Released) > 0 || len(d.Blocks) != 2 {
			t.Fatalf("%s first sync: released %v, blocks %v", cidr, d.Released, blocksOf(d))
		}
		if d := sync(9 * time.Minute); len(d.Released) > 0 {
			t.Fatalf("%s released after 9 minutes: %v", cidr, d.Released)
		}
		// Filled and emptied again: the clock starts over.
		a := alloc("n1", "c")
		sync(time.Minute)
		release(a)
		if d := sync(time.Minute); len(d.Released) > 0 {
			t.Fatalf("%s released a block that was in use a minute ago: %v", cidr, d.Released)
		}
		d := sync(10 * time.Minute)
		if len(d.Released) != 1 || len(d.Blocks) != 1 || d.Blocks[0].Node != "n2" {
			t.Fatalf("%s after 10 empty minutes: released %v, blocks %v; want n1's released, n2's kept", cidr, d.Released, blocksOf(d))
		}
		_ = st.View(context.Background(), func(tx store.Tx) error {
			kvs, _ := tx.List(ipam.ClaimsPrefix)
			if len(kvs) != 1 {
				t.Errorf("%s: %d claims left, want n2's only", cidr, len(kvs))
			}
			return nil
		})
		// The next pod on n1 claims a block again.
		if a := alloc("n1", "d"); len(a.IPs) != 1 {
			t.Errorf("%s: no address after the release: %+v", cidr, a)
		}
	}
}

// A node silent for NodeGoneAfter is removed with its blocks and
// addresses at the second observation of the same old heartbeat; one
// that heartbeats in between is kept. IPv6 first.
func TestGoneNodesAreRemoved(t *testing.T) {
	st := memstore.New()
	pool6, _ := ipam.PoolSpec{CIDR: "fd00:90e::/120"}.Resolve("pools")
	pool4, _ := ipam.PoolSpec{CIDR: "10.98.0.0/24"}.Resolve("pools")
	start := time.Unix(2_000_000, 0)
	register := func(name string, at time.Time) {
		if err := st.Update(context.Background(), func(tx store.Tx) error {
			return cluster.Register(tx, cluster.Node{Name: name, Addrs: []netip.Addr{netip.MustParseAddr("fd00::9")}, Routing: routing.Direct, Instance: name}, at)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"gone", "back"} {
		register(n, start)
		if err := st.Update(context.Background(), func(tx store.Tx) error {
			_, err := ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "n", ContainerID: n, IfName: "eth0"}, Node: n, Families: []ipam.Family{ipam.IPv6, ipam.IPv4}, Pools: []ipam.Pool{pool6, pool4}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	now := start
	src := &storeSource{cfg: Config{Node: "self", Addrs: []netip.Addr{netip.MustParseAddr("fd00::1")}, Routing: routing.Direct, NodeGoneAfter: time.Hour},
		open: func() (store.Store, error) { return st, nil }, now: func() time.Time { return now }, empty: map[netip.Prefix]time.Time{}, silent: map[string]observation{}}
	sync := func(step time.Duration) Desired {
		now = now.Add(step)
		d, err := src.Desired(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := sync(59 * time.Minute); len(d.RemovedNodes) > 0 {
		t.Fatalf("removed before an hour: %v", d.RemovedNodes)
	}
	if d := sync(2 * time.Minute); len(d.RemovedNodes) > 0 { // first observation
		t.Fatalf("removed at the first observation: %v", d.RemovedNodes)
	}
	register("back", now) // "back" heartbeats again
	d := sync(time.Minute)
	if !slices.Equal(d.RemovedNodes, []string{"gone"}) {
		t.Fatalf("removed %v, want [gone]", d.RemovedNodes)
	}
	for _, b := range d.Blocks {
		if b.Node == "gone" {
			t.Errorf("a removed node's block is still routed: %v", b.CIDR)
		}
	}
	_ = st.View(context.Background(), func(tx store.Tx) error {
		if _, ok, _ := cluster.Get(tx, "gone"); ok {
			t.Error("gone's record is still there")
		}
		if _, ok, _ := cluster.Get(tx, "back"); !ok {
			t.Error("back was removed while it heartbeats")
		}
		blocks, _ := ipam.Blocks(tx)
		all, _ := ipam.List(tx, "")
		for _, b := range blocks {
			if b.Node == "gone" {
				t.Errorf("gone's block %s is left", b.CIDR)
			}
		}
		for _, a := range all {
			if a.Node == "gone" {
				t.Errorf("gone's allocation %s is left", a.Handle)
			}
		}
		if len(all) != 1 {
			t.Errorf("%d allocations left, want back's", len(all))
		}
		return nil
	})
}

// staleCache is a ClusterCache that lags the store.
type staleCache struct {
	nodes  []cluster.Node
	blocks []ipam.Block
}

func (c staleCache) Cluster() ([]cluster.Node, []ipam.Block, bool) { return c.nodes, c.blocks, true }

// With a cache, the desired state is the cache's (no read of the store),
// and a stale cache never makes the agent release a block that is in use:
// the release checks the store again. IPv6 first.
func TestCacheInsteadOfStore(t *testing.T) {
	for _, cidr := range []string{"fd00:cac4::/120", "10.98.0.0/24"} {
		st := memstore.New()
		pool, err := ipam.PoolSpec{CIDR: cidr}.Resolve("pools")
		if err != nil {
			t.Fatal(err)
		}
		var a ipam.Allocation
		if err := st.Update(context.Background(), func(tx store.Tx) (err error) {
			a, err = ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "n", ContainerID: "x", IfName: "eth0"}, Node: "n1", Families: []ipam.Family{pool.Family()}, Pools: []ipam.Pool{pool}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// The cache saw the block before the pod took its address, and a
		// node the store does not have yet.
		cache := staleCache{
			nodes:  []cluster.Node{{Name: "n1"}, {Name: "n9", Addrs: []netip.Addr{ip("fd00::9")}}},
			blocks: []ipam.Block{{CIDR: a.IPs[0].Block, Pool: pool.CIDR, Node: "n1", Allocs: map[netip.Addr]string{}}},
		}
		now := time.Unix(1_000_000, 0)
		src := &storeSource{cfg: Config{Node: "n1", Addrs: []netip.Addr{ip("fd00::1")}, Routing: routing.Direct, BlockReleaseAfter: time.Minute},
			open: func() (store.Store, error) { return st, nil }, now: func() time.Time { return now }, empty: map[netip.Prefix]time.Time{}, cache: cache}
		for range 3 {
			d, err := src.Desired(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Nodes) != 2 || d.Nodes[1].Name != "n9" {
				t.Fatalf("%s: nodes %v, want the cache's", cidr, d.Nodes)
			}
			if len(d.Released) != 0 {
				t.Fatalf("%s: released %v, a block the store says is in use", cidr, d.Released)
			}
			now = now.Add(2 * time.Minute)
		}
		var blocks []ipam.Block
		_ = st.View(context.Background(), func(tx store.Tx) (err error) { blocks, err = ipam.Blocks(tx); return err })
		if len(blocks) != 1 {
			t.Errorf("%s: the store lost the block: %v", cidr, blocks)
		}
	}
}
