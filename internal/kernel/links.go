package kernel

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is what duet needs to know about an interface.
type Link struct {
	Name  string
	Index int
	// Kind is the rtnetlink kind: "veth", "bridge", "device", ...
	Kind string
	MAC  net.HardwareAddr
	MTU  int
	Up   bool
	// PeerIndex is the ifindex of a veth's other end, in the peer's own
	// namespace (IFLA_LINK); 0 when unknown.
	PeerIndex int
	// MasterIndex is the ifindex of the bridge the link is plugged into.
	MasterIndex int
	// Group is the interface group (IFLA_GROUP; 0 is the default).
	Group uint32
}

func linkFrom(l netlink.Link) Link {
	a := l.Attrs()
	return Link{
		Name:        a.Name,
		Index:       a.Index,
		Kind:        l.Type(),
		MAC:         a.HardwareAddr,
		MTU:         a.MTU,
		Up:          a.Flags&net.FlagUp != 0,
		PeerIndex:   a.ParentIndex,
		MasterIndex: a.MasterIndex,
		Group:       a.Group,
	}
}

// link looks a link up by name; the error wraps ErrNotFound when absent.
func (n *NS) link(name string) (netlink.Link, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("link %s in %s: %w", name, n, ErrNotFound)
		}
		return nil, fmt.Errorf("link %s in %s: %w", name, n, err)
	}
	return l, nil
}

// Link returns the named link. Equivalent to: ip link show NAME
func (n *NS) Link(name string) (Link, error) {
	l, err := n.link(name)
	if err != nil {
		return Link{}, err
	}
	return linkFrom(l), nil
}

// LinkByIndex returns the link with the given ifindex.
// Equivalent to: ip link show (filtered on index)
func (n *NS) LinkByIndex(index int) (Link, error) {
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Link{}, fmt.Errorf("link #%d in %s: %w", index, n, ErrNotFound)
		}
		return Link{}, fmt.Errorf("link #%d in %s: %w", index, n, err)
	}
	return linkFrom(l), nil
}

// Veth describes a veth pair to create. The local end lands in the namespace
// AddVeth is called on, the peer directly in PeerNS, so no interface ever
// appears under the peer's name in the wrong namespace.
type Veth struct {
	Name     string
	MTU      int
	PeerName string
	PeerNS   *NS // nil: same namespace
	PeerMAC  net.HardwareAddr
	// Group is the local end's interface group, set as the pair is
	// created, so the end is in it from its first packet.
	Group uint32
}

// AddVeth creates a veth pair, both ends down. The kernel makes both ends
// or neither; the error wraps ErrExists when either name is taken.
// Equivalent to: ip link add NAME mtu MTU type veth peer name PEER netns NS address MAC mtu MTU
func (n *NS) AddVeth(v Veth) error {
	la := netlink.NewLinkAttrs()
	la.Name = v.Name
	la.MTU = v.MTU
	la.Group = v.Group
	veth := &netlink.Veth{
		LinkAttrs:        la,
		PeerName:         v.PeerName,
		PeerHardwareAddr: v.PeerMAC,
		PeerMTU:          uint32(v.MTU),
	}
	if v.PeerNS != nil && v.PeerNS.netns != nil {
		veth.PeerNamespace = netlink.NsFd(int(v.PeerNS.netns.Fd()))
	}
	if err := n.h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = ErrExists
		}
		return fmt.Errorf("add veth %s (peer %s) in %s: %w", v.Name, v.PeerName, n, err)
	}
	return nil
}

// DeleteLink removes the named link; a link already gone is not an error,
// so teardown and rollback can be repeated. Deleting one end of a veth
// removes the other, and the kernel drops the routes and neighbours that
// used either. Equivalent to: ip link del NAME
func (n *NS) DeleteLink(name string) error {
	l, err := n.link(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.h.LinkDel(l); err != nil && !isNoDevice(err) {
		return fmt.Errorf("delete link %s in %s: %w", name, n, err)
	}
	return nil
}

// SetLinkUp brings the named link up. Equivalent to: ip link set NAME up
func (n *NS) SetLinkUp(name string) error {
	return n.onLink(name, "set up", func(l netlink.Link) error { return n.h.LinkSetUp(l) })
}

// SetLinkMTU sets the named link's MTU. Equivalent to: ip link set NAME mtu MTU
func (n *NS) SetLinkMTU(name string, mtu int) error {
	return n.onLink(name, "set mtu", func(l netlink.Link) error { return n.h.LinkSetMTU(l, mtu) })
}

// SetLinkGroup puts the named link in an interface group.
// Equivalent to: ip link set NAME group GROUP
func (n *NS) SetLinkGroup(name string, group uint32) error {
	return n.onLink(name, "set group", func(l netlink.Link) error { return n.h.LinkSetGroup(l, int(group)) })
}

// SetLinkMAC sets the named link's MAC address.
// Equivalent to: ip link set NAME address MAC
func (n *NS) SetLinkMAC(name string, mac net.HardwareAddr) error {
	return n.onLink(name, "set address", func(l netlink.Link) error { return n.h.LinkSetHardwareAddr(l, mac) })
}

// onLink looks the link up and runs op on it, naming both in errors.
func (n *NS) onLink(name, what string, op func(netlink.Link) error) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := op(l); err != nil {
		return fmt.Errorf("%s %s in %s: %w", what, name, n, err)
	}
	return nil
}
