package kernel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addr is an address on a link with the states that make it unusable.
type Addr struct {
	Prefix netip.Prefix
	// Tentative is set while IPv6 duplicate address detection runs; the
	// address cannot be used as a source until it clears.
	Tentative bool
	// DADFailed is set when DAD found a duplicate; the address never works.
	DADFailed bool
}

// Addrs lists the addresses of the named link, both families.
// Equivalent to: ip addr show dev LINK
func (n *NS) Addrs(link string) ([]Addr, error) {
	l, err := n.link(link)
	if err != nil {
		return nil, err
	}
	nas, err := retry(func() ([]netlink.Addr, error) { return n.h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s in %s: %w", link, n, err)
	}
	out := make([]Addr, 0, len(nas))
	for _, a := range nas {
		p, ok := prefixOf(a.IPNet, false)
		if !ok {
			continue
		}
		out = append(out, Addr{
			Prefix:    p,
			Tentative: a.Flags&unix.IFA_F_TENTATIVE != 0,
			DADFailed: a.Flags&unix.IFA_F_DADFAILED != 0,
		})
	}
	return out, nil
}

// AddAddr puts p on the named link, or refreshes it if present. IPv6
// addresses skip duplicate address detection (nodad): duet hands out unique
// addresses, and a tentative address would make the first packets fail.
// Equivalent to: ip addr replace P dev LINK nodad
func (n *NS) AddAddr(link string, p netip.Prefix) error {
	return n.onLink(link, "add address "+p.String()+" to", func(l netlink.Link) error {
		return n.h.AddrReplace(l, nlAddr(p))
	})
}

// DelAddr removes p from the named link; an address already gone is not an
// error. Equivalent to: ip addr del P dev LINK
func (n *NS) DelAddr(link string, p netip.Prefix) error {
	return n.onLink(link, "delete address "+p.String()+" from", func(l netlink.Link) error {
		err := n.h.AddrDel(l, nlAddr(p))
		if err != nil && isNoAddr(err) {
			return nil
		}
		return err
	})
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if p.Addr().Is4() && p.Addr().IsLinkLocalUnicast() {
		// Scope link, as RFC 3927 means it: the host end's 169.254.1.1
		// answers a container's ARP for its gateway, but is never the
		// source the host picks for a packet to a routable address.
		a.Scope = unix.RT_SCOPE_LINK
	}
	return a
}

func isNoAddr(err error) bool {
	return errorsIs(err, unix.EADDRNOTAVAIL, unix.ENOENT, unix.ESRCH)
}

// ipNet converts a prefix, keeping its host bits (an address with its
// prefix length, as iproute2 writes it).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

// prefixOf converts a netlink address or destination. A nil destination is
// the default route of no family, reported as !ok. mask clears host bits.
func prefixOf(n *net.IPNet, mask bool) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 32 {
		a = a.Unmap()
	}
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, ones)
	if mask {
		p = p.Masked()
	}
	return p, true
}
