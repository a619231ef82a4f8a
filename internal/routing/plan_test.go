package routing

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
)

var (
	nodeA  = cluster.Node{Name: "a", Addrs: []netip.Addr{netip.MustParseAddr("fd00:ff::a"), netip.MustParseAddr("10.255.0.10")}}
	nodeB  = cluster.Node{Name: "b", Addrs: []netip.Addr{netip.MustParseAddr("fd00:ff::b"), netip.MustParseAddr("10.255.0.11")}}
	v6only = cluster.Node{Name: "c", Addrs: []netip.Addr{netip.MustParseAddr("fd00:ff::c")}}
)

func block(cidr, node string) ipam.Block {
	return ipam.Block{CIDR: netip.MustParsePrefix(cidr), Node: node}
}

func TestPlan(t *testing.T) {
	blocks := []ipam.Block{
		block("10.1.0.0/26", "a"), block("fd00:1::/122", "a"),
		block("10.1.0.64/26", "b"), block("fd00:1::40/122", "b"),
		block("10.1.0.128/26", "c"), block("fd00:1::80/122", "c"),
		block("fd00:1::c0/122", "ghost"),
	}
	routes, problems := Plan("a", []cluster.Node{nodeA, nodeB, v6only}, blocks, nil)
	want := []string{
		"blackhole fd00:1::/122",
		"fd00:1::40/122 via fd00:ff::b (b)",
		"fd00:1::80/122 via fd00:ff::c (c)",
		"blackhole 10.1.0.0/26",
		"10.1.0.64/26 via 10.255.0.11 (b)",
	}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("routes:\n got %v\nwant %v", routes, want)
	}
	if len(problems) != 2 {
		t.Errorf("want problems for c's IPv4 block and the ghost's block, got %v", problems)
	}
}

func TestDiffIdempotent(t *testing.T) {
	want, _ := Plan("a", []cluster.Node{nodeA, nodeB}, []ipam.Block{block("fd00:1::/122", "a"), block("fd00:1::40/122", "b"), block("10.1.0.64/26", "b")}, nil)
	stale := kernel.NodeRoute{Dst: netip.MustParsePrefix("fd00:9::/122"), Via: netip.MustParseAddr("fd00:ff::9")}
	moved := kernel.NodeRoute{Dst: netip.MustParsePrefix("10.1.0.64/26"), Via: netip.MustParseAddr("10.255.0.99")}
	rep, del := Diff([]kernel.NodeRoute{stale, moved}, want)
	if len(del) != 1 || del[0] != stale || len(rep) != 3 {
		t.Fatalf("replace %v delete %v", rep, del)
	}
	// Applying the diff reaches a fixed point: a second diff is empty.
	f := &fakeKernel{routes: map[string]kernel.NodeRoute{stale.Dst.String(): stale, moved.Dst.String(): moved}}
	if _, err := Reconcile(f, want); err != nil {
		t.Fatal(err)
	}
	if n, _ := Reconcile(f, want); n != 0 {
		t.Fatalf("second reconcile changed %d routes", n)
	}
}

// TestReconcileStates replays random desired states, in the spirit of
// tailscale's TestRouterStates: every transition must land exactly on the
// state asked for.
func TestReconcileStates(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	f := &fakeKernel{routes: map[string]kernel.NodeRoute{}}
	for i := 0; i < 200; i++ {
		var blocks []ipam.Block
		for j := 0; j < 8; j++ {
			if r.Intn(2) == 0 {
				owner := []string{"a", "b"}[r.Intn(2)]
				blocks = append(blocks, block(fmt.Sprintf("fd00:1::%x/122", j*64), owner), block(fmt.Sprintf("10.1.%d.0/26", j), owner))
			}
		}
		want, _ := Plan("a", []cluster.Node{nodeA, nodeB}, blocks, nil)
		if _, err := Reconcile(f, want); err != nil {
			t.Fatal(err)
		}
		if len(f.routes) != len(want) {
			t.Fatalf("state %d: have %d routes, want %d", i, len(f.routes), len(want))
		}
		for _, w := range want {
			if h := f.routes[w.Dst.String()]; h.Via != w.Via || h.Blackhole != w.Blackhole {
				t.Fatalf("state %d: %v is %v", i, w, h)
			}
		}
	}
}

type fakeKernel struct{ routes map[string]kernel.NodeRoute }

var _ Kernel = (*fakeKernel)(nil)

func (f *fakeKernel) NodeRoutes() ([]kernel.NodeRoute, error) {
	var out []kernel.NodeRoute
	for _, r := range f.routes {
		out = append(out, r)
	}
	return out, nil
}
func (f *fakeKernel) ReplaceNodeRoute(r kernel.NodeRoute) error {
	f.routes[r.Dst.String()] = r
	return nil
}
func (f *fakeKernel) DelNodeRoute(r kernel.NodeRoute) error {
	delete(f.routes, r.Dst.String())
	return nil
}

func TestProxyPlan(t *testing.T) {
	onlink := []kernel.OnLinkPrefix{
		{Dev: "eth0", Prefix: netip.MustParsePrefix("2001:db8::/64")},
		{Dev: "eth0", Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		{Dev: "duet0", Prefix: netip.MustParsePrefix("2001:db8::c008/125")}, // a duet bridge: a pod network
	}
	pools := []netip.Prefix{netip.MustParsePrefix("2001:db8::c008/125"), netip.MustParsePrefix("192.0.2.128/25"), netip.MustParsePrefix("fd00:1::/48")}
	addrs := []netip.Addr{netip.MustParseAddr("2001:db8::c00a"), netip.MustParseAddr("192.0.2.130"), netip.MustParseAddr("fd00:1::5")}
	got := ProxyPlan(onlink, pools, addrs)
	want := []kernel.ProxyEntry{{Addr: addrs[0], Dev: "eth0"}, {Addr: addrs[1], Dev: "eth0"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if err := CheckPoolsAgainstUplinks(onlink, pools); err != nil {
		t.Fatalf("pools inside or apart from the uplink are fine: %v", err)
	}
	err := CheckPoolsAgainstUplinks(onlink, []netip.Prefix{netip.MustParsePrefix("2001:db8::/48")})
	if err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("a pool containing the uplink prefix: %v", err)
	}
}
