// Privileged: run as root with `go test ./internal/firewall/`. duetd's
// pool elements and the plugin's ADD, in either order, in the real nft.
package firewall

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// nsLister reads inet duet in a namespace; nft, run from the locked
// thread, inherits it.
type nsLister struct{ path string }

func (l nsLister) ListElements(ctx context.Context, typ, name string) (els []*knftables.Element, err error) {
	h, err := ns.GetNS(l.path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	err = h.Do(func(ns.NetNS) error {
		nft, err := knftables.New(knftables.InetFamily, Table)
		if err != nil {
			return err
		}
		els, err = nft.ListElements(ctx, typ, name)
		return err
	})
	return els, err
}

// TestPeerPoolsWithPlugin: duetd writes every node's ranges before the
// first pod (no table yet); the plugin's element-only ADD then fails as
// designed and its full ADD writes the table, keeping duetd's elements;
// a later node's range replaces the set, the plugin's fast path still
// works, and a pod's DEL (with its pools pruned) leaves duetd's set as it
// was. The peer sets end with every range, nat6 with the own one only.
func TestPeerPoolsWithPlugin(t *testing.T) {
	kerneltest.RequireRoot(t)
	path := kerneltest.NetNS(t)
	name := kerneltest.NetNSName(path)
	ctx := context.Background()
	l := nsLister{path}
	own := []Pool{{CIDR: netip.MustParsePrefix("fd00:10:244:1::/64"), NAT: true}, {CIDR: netip.MustParsePrefix("10.244.1.0/24"), NAT: true}}
	ranges := prefixes("fd00:10:244:1::/64", "10.244.1.0/24", "fd00:10:244:2::/64", "10.244.2.0/24")
	set, changed, err := PeerPools(peerKeys(t, l), ranges)
	if err != nil || !changed {
		t.Fatalf("%v %v %v", set, changed, err)
	}
	nft(t, name, PeerPoolsScript(set))
	pod := Pod{HostIf: "dt1", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 1}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:10:244:1::5"), netip.MustParseAddr("10.244.1.5")}}
	fast, _ := AddPodElementsScript(pod, own)
	if err := nftErr(name, fast); err == nil {
		t.Fatal("the plugin's element-only ADD worked on a table duetd made: it would skip writing the rules")
	}
	full, _ := AddPodScript(pod, own)
	nft(t, name, full)
	more := append(ranges, prefixes("fd00:10:244:3::/64", "10.244.3.0/24")...)
	set, changed, err = PeerPools(peerKeys(t, l), more)
	if err != nil || !changed || len(set) != 6 {
		t.Fatalf("a third node: %v %v %v", set, changed, err)
	}
	nft(t, name, PeerPoolsScript(set))
	other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 2}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:10:244:1::6")}}
	fast, _ = AddPodElementsScript(other, own)
	nft(t, name, fast)
	if _, changed, err := PeerPools(peerKeys(t, l), more); err != nil || changed {
		t.Fatalf("again: %v %v", changed, err)
	}
	out := listSets(t, name)
	for _, want := range []string{"fd00:10:244:1::/64", "fd00:10:244:2::/64", "fd00:10:244:3::/64", "10.244.3.0/24", `"dt2"`} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %s:\n%s", want, out)
		}
	}
	nat6, err := l.ListElements(ctx, "set", setNAT6)
	if err != nil || len(nat6) != 1 || nat6[0].Key[0] != "fd00:10:244:1::/64" {
		t.Errorf("nat6: %v %v, want the own range only", nat6, err)
	}
	// Both pods go, and with them the plugin's pools; duetd's set stays.
	nft(t, name, PrunePoolsScript(prefixes("fd00:10:244:1::/64", "10.244.1.0/24")))
	if _, changed, err := PeerPools(peerKeys(t, l), more); err != nil || changed {
		t.Fatalf("after the plugin pruned its pools, duetd's set changed: %v %v", changed, err)
	}
	if nat6, _ := l.ListElements(ctx, "set", setNAT6); len(nat6) != 0 {
		t.Errorf("nat6 after the prune: %v", nat6)
	}
}

func nftErr(netns, script string) error {
	cmd := exec.Command("ip", "netns", "exec", netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	return cmd.Run()
}
