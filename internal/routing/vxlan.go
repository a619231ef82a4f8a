package routing

import (
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
)

// VTEP is a node's tunnel identity, derived from its name alone so every
// node computes every other node's without asking: a locally administered
// MAC and the link-local address routes use as next hop on the device.
func VTEP(node string) (netip.Addr, net.HardwareAddr) {
	sum := sha256.Sum256([]byte("duet-vtep/" + node))
	mac := net.HardwareAddr(append([]byte{}, sum[:6]...))
	mac[0] = mac[0]&^0x01 | 0x02
	ll := [16]byte{0xfe, 0x80}
	copy(ll[8:], sum[6:14])
	return netip.AddrFrom16(ll), mac
}

// UnderlayAddr is the address a node's tunnel uses: its first IPv6 address
// when it has one (IPv6 first), else its first IPv4 address.
func UnderlayAddr(n cluster.Node) (netip.Addr, bool) {
	for _, want6 := range []bool{true, false} {
		for _, a := range n.Addrs {
			if a.Is6() == want6 {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// Peers are the VTEP entries self needs: one per other node, reached over
// the underlay family self uses.
func Peers(self cluster.Node, nodes []cluster.Node) []kernel.VTEPPeer {
	local, ok := UnderlayAddr(self)
	if !ok {
		return nil
	}
	var out []kernel.VTEPPeer
	for _, n := range nodes {
		if n.Name == self.Name {
			continue
		}
		under, ok := n.Addr(local)
		if !ok {
			continue // Plan reports it: no route leads there
		}
		ll, mac := VTEP(n.Name)
		out = append(out, kernel.VTEPPeer{LinkLocal: ll, MAC: mac, Underlay: under})
	}
	return out
}

// vtepVia is Plan's next hop for vxlan: the peer's VTEP link-local, if the
// peer shares self's underlay family.
func vtepVia(self cluster.Node) func(cluster.Node) (netip.Addr, bool) {
	local, _ := UnderlayAddr(self)
	return func(n cluster.Node) (netip.Addr, bool) {
		if _, ok := n.Addr(local); !ok {
			return netip.Addr{}, false
		}
		ll, _ := VTEP(n.Name)
		return ll, true
	}
}

// PlanVXLAN is Plan for vxlan routing: peers' blocks via their VTEP on
// the device, own blocks blackholed.
func PlanVXLAN(self cluster.Node, nodes []cluster.Node, blocks []ipam.Block) ([]Route, []Problem) {
	routes, problems := Plan(self.Name, nodes, blocks, vtepVia(self))
	for i := range routes {
		if !routes[i].Blackhole {
			routes[i].Dev = kernel.VXLANDev
		}
	}
	return routes, problems
}

// TunnelKernel is what the VXLAN reconciler needs; *kernel.NS implements it.
type TunnelKernel interface {
	Kernel
	EnsureVXLAN(local netip.Addr, mac net.HardwareAddr, mtu int, ll netip.Addr) error
	VTEPPeers() ([]kernel.VTEPPeer, error)
	ReplaceVTEPPeer(kernel.VTEPPeer) error
	DelVTEPPeer(kernel.VTEPPeer) error
}

var _ TunnelKernel = (*kernel.NS)(nil)

// ReconcileTunnel makes the device and its peer entries match: safe to
// call again, it replaces every wanted peer and deletes the others.
func ReconcileTunnel(k TunnelKernel, self cluster.Node, nodes []cluster.Node, uplinkMTU int) error {
	local, ok := UnderlayAddr(self)
	if !ok {
		return errors.New("this node has no underlay address for VXLAN: pass --address")
	}
	ll, mac := VTEP(self.Name)
	if err := k.EnsureVXLAN(local, mac, uplinkMTU-kernel.VXLANOverhead(local), ll); err != nil {
		return err
	}
	want := Peers(self, nodes)
	keep := map[netip.Addr]bool{}
	var errs []error
	for _, p := range want {
		keep[p.LinkLocal] = true
		if err := k.ReplaceVTEPPeer(p); err != nil {
			errs = append(errs, err)
		}
	}
	have, err := k.VTEPPeers()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, p := range have {
		if !keep[p.LinkLocal] {
			if err := k.DelVTEPPeer(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
