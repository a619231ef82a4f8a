package kernel

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FallbackMTU is what DefaultRouteMTU returns on a host with no default
// route: Ethernet's.
const FallbackMTU = 1500

// DefaultRouteMTU returns the MTU of the host interface that carries the
// default route, the IPv6 one first, then IPv4, so pods are sized to the
// path most of their traffic takes. A route's own mtu metric, when lower,
// wins. Among several default routes the lowest metric counts.
// Equivalent to: ip -6 route show default; ip link show DEV
func DefaultRouteMTU() (int, error) {
	host, err := HostNS()
	if err != nil {
		return 0, err
	}
	defer host.Close()
	for _, fam := range []int{netlink.FAMILY_V6, netlink.FAMILY_V4} {
		filter := &netlink.Route{} // nil Dst: the default route
		routes, err := host.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_DST)
		if err != nil {
			return 0, fmt.Errorf("list default routes: %w", err)
		}
		routes = slices.DeleteFunc(routes, func(r netlink.Route) bool { return r.Type != unix.RTN_UNICAST })
		slices.SortStableFunc(routes, func(a, b netlink.Route) int { return a.Priority - b.Priority })
		for _, r := range routes {
			index := r.LinkIndex
			if index == 0 && len(r.MultiPath) > 0 {
				index = r.MultiPath[0].LinkIndex
			}
			if index == 0 {
				continue
			}
			l, err := host.LinkByIndex(index)
			if err != nil {
				return 0, err
			}
			mtu := l.MTU
			if r.MTU > 0 && r.MTU < mtu {
				mtu = r.MTU
			}
			return mtu, nil
		}
	}
	return FallbackMTU, nil
}

// HostPrefixes returns every route destination (all tables) and every
// interface address's network in the host namespace, both families,
// without default routes, deduplicated and sorted. Zero-config pool
// selection picks a range that overlaps none of them.
// Equivalent to: ip route show table all; ip addr show
func HostPrefixes() ([]netip.Prefix, error) {
	host, err := HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC}
	routes, err := host.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst, true); ok && p.Bits() > 0 {
			out = append(out, p)
		}
	}
	addrs, err := retry(func() ([]netlink.Addr, error) { return host.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet, true); ok && p.Bits() > 0 {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

// comparePrefix orders by address then length, IPv4 before IPv6.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
