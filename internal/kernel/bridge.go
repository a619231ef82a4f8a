package kernel

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge creates the named bridge, down, with mtu and a random
// locally administered MAC, unless it exists; created reports which. An
// explicit MAC keeps the kernel from re-deriving the bridge's address from
// its lowest port each time a pod comes or goes, which would break every
// neighbour cache pointing at the gateway. A concurrent creator winning the
// race is not an error. An existing link of another kind is.
// Equivalent to: ip link add NAME mtu MTU address MAC type bridge
func (n *NS) EnsureBridge(name string, mtu int) (created bool, err error) {
	if l, err := n.Link(name); err == nil {
		if l.Kind != "bridge" {
			return false, fmt.Errorf("link %s in %s is a %s, not a bridge", name, n, l.Kind)
		}
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.MTU = mtu
	la.HardwareAddr = RandomMAC()
	if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return n.EnsureBridge(name, mtu)
		}
		return false, fmt.Errorf("add bridge %s in %s: %w", name, n, err)
	}
	return true, nil
}

// SetMaster plugs link into bridge. Equivalent to: ip link set LINK master BRIDGE
func (n *NS) SetMaster(link, bridge string) error {
	br, err := n.link(bridge)
	if err != nil {
		return err
	}
	return n.onLink(link, "set master "+bridge, func(l netlink.Link) error {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return nil
		}
		return n.h.LinkSetMasterByIndex(l, br.Attrs().Index)
	})
}

// SetHairpin lets a bridge port send frames back out the port they came in
// on, so a pod reaches its own service VIP after DNAT.
// Equivalent to: bridge link set dev LINK hairpin on
func (n *NS) SetHairpin(link string, on bool) error {
	return n.onLink(link, "set hairpin", func(l netlink.Link) error { return n.h.LinkSetHairpin(l, on) })
}

// Hairpin reports whether a bridge port has hairpin mode on.
// Equivalent to: bridge -d link show dev LINK
func (n *NS) Hairpin(link string) (bool, error) {
	l, err := n.link(link)
	if err != nil {
		return false, err
	}
	pi, err := n.h.LinkGetProtinfo(l)
	if err != nil {
		return false, fmt.Errorf("bridge port info of %s in %s: %w", link, n, err)
	}
	return pi.Hairpin, nil
}

// RandomMAC returns a random unicast, locally administered MAC address,
// the kind the kernel gives a veth, but known before the link exists.
func RandomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

func isNoDevice(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.As(err, new(netlink.LinkNotFoundError))
}
