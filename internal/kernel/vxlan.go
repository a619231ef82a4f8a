package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLANDev is the name of duetd's VXLAN device; one device carries both
// inner families.
const VXLANDev = "duetvxlan"

// VXLAN settings: the IANA port, and a VNI of duet's own.
const (
	VXLANPort = 4789
	VXLANVNI  = 4096
)

// VXLANOverhead is what encapsulation costs per packet over an underlay of
// a's family: outer IP + UDP + VXLAN + inner Ethernet.
func VXLANOverhead(a netip.Addr) int {
	if a.Is4() {
		return 50
	}
	return 70
}

// VTEPPeer is another node's tunnel endpoint: the link-local address
// routes use as next hop on the device, its MAC, and its underlay address.
type VTEPPeer struct {
	LinkLocal netip.Addr
	MAC       net.HardwareAddr
	Underlay  netip.Addr
}

// EnsureVXLAN makes the device exist with this node's MAC, local underlay
// address, MTU and link-local address (no DAD: it is derived from the node
// name and unique by construction), and brings it up.
// Equivalent to: ip link add duetvxlan type vxlan id 4096 local LOCAL dstport 4789 nolearning
func (n *NS) EnsureVXLAN(local netip.Addr, mac net.HardwareAddr, mtu int, ll netip.Addr) error {
	l, err := n.link(VXLANDev)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if v, ok := l.(*netlink.Vxlan); ok && (!v.SrcAddr.Equal(local.AsSlice()) || v.VxlanId != VXLANVNI) {
		if err := n.h.LinkDel(l); err != nil { // the node's address changed
			return fmt.Errorf("replace %s: %w", VXLANDev, err)
		}
		l = nil
	}
	if l == nil {
		v := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: VXLANDev, MTU: mtu, HardwareAddr: mac},
			VxlanId: VXLANVNI, SrcAddr: local.AsSlice(), Port: VXLANPort, Learning: false}
		if err := n.h.LinkAdd(v); err != nil {
			return fmt.Errorf("add %s in %s: %w", VXLANDev, n, err)
		}
	}
	if _, err := n.SetSysctls([]Sysctl{
		{Name: IPv6Conf(VXLANDev, "accept_dad"), Value: "0"},
		{Name: IPv6Conf(VXLANDev, "accept_ra"), Value: "0"},
		{Name: IPv6Conf(VXLANDev, "addr_gen_mode"), Value: "1"},
	}); err != nil {
		return err
	}
	if err := n.SetLinkMTU(VXLANDev, mtu); err != nil {
		return err
	}
	if err := n.SetLinkUp(VXLANDev); err != nil {
		return err
	}
	if err := n.AddAddr(VXLANDev, netip.PrefixFrom(ll, 64)); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// VTEPPeers lists the permanent neighbours and forwarding entries of the
// device, paired by MAC.
func (n *NS) VTEPPeers() ([]VTEPPeer, error) {
	l, err := n.link(VXLANDev)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	neighs, err := retry(func() ([]netlink.Neigh, error) { return n.h.NeighList(l.Attrs().Index, netlink.FAMILY_V6) })
	if err != nil {
		return nil, err
	}
	fdb, err := retry(func() ([]netlink.Neigh, error) { return n.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE) })
	if err != nil {
		return nil, err
	}
	dst := map[string]netip.Addr{}
	for _, f := range fdb {
		if a, ok := netip.AddrFromSlice(f.IP); ok {
			dst[f.HardwareAddr.String()] = a.Unmap()
		}
	}
	var out []VTEPPeer
	for _, nb := range neighs {
		ip, ok := netip.AddrFromSlice(nb.IP)
		if !ok || nb.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		out = append(out, VTEPPeer{LinkLocal: ip, MAC: nb.HardwareAddr, Underlay: dst[nb.HardwareAddr.String()]})
	}
	return out, nil
}

// ReplaceVTEPPeer pins the peer's link-local to its MAC, and its MAC to its
// underlay address.
// Equivalent to: ip neigh replace LL lladdr MAC dev duetvxlan nud permanent;
// bridge fdb replace MAC dev duetvxlan dst UNDERLAY self permanent
func (n *NS) ReplaceVTEPPeer(p VTEPPeer) error {
	l, err := n.link(VXLANDev)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	if err := n.h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: p.LinkLocal.AsSlice(), HardwareAddr: p.MAC}); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", p.LinkLocal, VXLANDev, err)
	}
	fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: p.Underlay.AsSlice(), HardwareAddr: p.MAC}
	if err := n.h.NeighSet(fdb); err != nil {
		return fmt.Errorf("fdb %s dst %s on %s: %w", p.MAC, p.Underlay, VXLANDev, err)
	}
	return nil
}

// DelVTEPPeer removes both entries; missing ones are not an error.
func (n *NS) DelVTEPPeer(p VTEPPeer) error {
	l, err := n.link(VXLANDev)
	if err != nil {
		return nil
	}
	idx := l.Attrs().Index
	_ = n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V6, IP: p.LinkLocal.AsSlice()})
	if p.Underlay.IsValid() {
		_ = n.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: p.Underlay.AsSlice(), HardwareAddr: p.MAC})
	}
	return nil
}
