package kernel

import (
	"errors"
	"fmt"
	"net"
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
		switch mtu, res := host.defaultRouteByLookup(fam); res {
		case lookupFound:
			return mtu, nil
		case lookupNone:
			continue
		}
		filter := &netlink.Route{} // nil Dst: the default route
		routes, err := host.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_DST)
		if err != nil {
			return 0, fmt.Errorf("list default routes: %w", err)
		}
		routes = slices.DeleteFunc(routes, func(r netlink.Route) bool { return r.Type != unix.RTN_UNICAST })
		slices.SortStableFunc(routes, func(a, b netlink.Route) int { return a.Priority - b.Priority })
		for _, r := range routes {
			if mtu, ok := host.routeMTU(r); ok {
				return mtu, nil
			}
		}
	}
	return FallbackMTU, nil
}

type lookupResult int

const (
	lookupUnsure lookupResult = iota // list the routes to know
	lookupFound
	lookupNone
)

// defaultAny are the lookup keys of defaultRouteByLookup: covered by a
// default route and, on hosts as they are, by nothing more specific.
// (0.0.0.0 itself is answered as local by the kernel.)
var defaultAny = map[int]net.IP{netlink.FAMILY_V6: net.IPv6zero, netlink.FAMILY_V4: net.IPv4(0, 0, 0, 1)}

// defaultRouteByLookup finds a family's default route by one FIB lookup
// (ip route get fibmatch ::, or 0.0.0.1) instead of listing every route:
// the CNI plugin asks on every ADD, and the listing grows with the node's
// pods, two routes each. "Unreachable" means there is no default route;
// a match that is not a default unicast route through an interface (a
// more specific route covering the key) leaves the caller to list.
func (n *NS) defaultRouteByLookup(fam int) (int, lookupResult) {
	rs, err := n.h.RouteGetWithOptions(defaultAny[fam], &netlink.RouteGetOptions{FIBMatch: true})
	if errors.Is(err, unix.ENETUNREACH) {
		return 0, lookupNone
	}
	if err != nil || len(rs) != 1 || rs[0].Type != unix.RTN_UNICAST {
		return 0, lookupUnsure
	}
	if d := rs[0].Dst; d != nil {
		if ones, _ := d.Mask.Size(); ones != 0 {
			return 0, lookupUnsure
		}
	}
	if mtu, ok := n.routeMTU(rs[0]); ok {
		return mtu, lookupFound
	}
	return 0, lookupUnsure
}

// routeMTU is the MTU of r's interface (a multipath route's first), or
// r's own mtu metric when lower.
func (n *NS) routeMTU(r netlink.Route) (int, bool) {
	index := r.LinkIndex
	if index == 0 && len(r.MultiPath) > 0 {
		index = r.MultiPath[0].LinkIndex
	}
	if index == 0 {
		return 0, false
	}
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		return 0, false
	}
	mtu := l.Attrs().MTU
	if r.MTU > 0 && r.MTU < mtu {
		mtu = r.MTU
	}
	return mtu, true
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
