package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtoDuet tags the routes duetd owns ("proto 201" in ip route), the
// way routing daemons tag theirs, so its reconciler can find and remove its
// stale routes without touching anybody else's.
const RouteProtoDuet = 201

// NodeRoute is a route duetd owns: to another node's block via that
// node's address, or a blackhole for a local block.
type NodeRoute struct {
	Dst       netip.Prefix
	Via       netip.Addr
	Blackhole bool
	// Dev is set only for routes through duet's own VXLAN device, where
	// Via is the peer's link-local address (for IPv4 destinations too:
	// an IPv6 next hop, RFC 5549).
	Dev string
}

func (r NodeRoute) String() string {
	if r.Blackhole {
		return "blackhole " + r.Dst.String() + " proto 201"
	}
	if r.Dev != "" {
		return fmt.Sprintf("%s via %s dev %s proto 201", r.Dst, r.Via, r.Dev)
	}
	return fmt.Sprintf("%s via %s proto 201", r.Dst, r.Via)
}

// NodeRoutes lists the main-table routes tagged RouteProtoDuet.
// Equivalent to: ip route show proto 201; ip -6 route show proto 201
func (n *NS) NodeRoutes() ([]NodeRoute, error) {
	filter := &netlink.Route{Protocol: RouteProtoDuet, Table: unix.RT_TABLE_MAIN}
	nrs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list duet routes in %s: %w", n, err)
	}
	vx := -1
	if l, err := n.link(VXLANDev); err == nil {
		vx = l.Attrs().Index
	}
	var out []NodeRoute
	for _, nr := range nrs {
		dst, ok := prefixOf(nr.Dst, true)
		if !ok {
			continue
		}
		r := NodeRoute{Dst: dst, Blackhole: nr.Type == unix.RTN_BLACKHOLE}
		if nr.Gw != nil {
			if gw, ok := netip.AddrFromSlice(nr.Gw); ok {
				r.Via = gw.Unmap()
			}
		}
		if v, ok := nr.Via.(*netlink.Via); ok {
			if gw, ok := netip.AddrFromSlice(v.Addr); ok {
				r.Via = gw
			}
		}
		if nr.LinkIndex == vx {
			r.Dev = VXLANDev
		}
		out = append(out, r)
	}
	return out, nil
}

func (n *NS) nlNodeRoute(r NodeRoute) (*netlink.Route, error) {
	nr := &netlink.Route{Dst: ipNet(r.Dst.Masked()), Protocol: RouteProtoDuet, Table: unix.RT_TABLE_MAIN}
	switch {
	case r.Blackhole:
		nr.Type = unix.RTN_BLACKHOLE
	case r.Dev != "":
		l, err := n.link(r.Dev)
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = l.Attrs().Index
		if r.Dst.Addr().Is4() && r.Via.Is6() {
			nr.Via = &netlink.Via{AddrFamily: netlink.FAMILY_V6, Addr: r.Via.AsSlice()}
		} else {
			nr.Gw = r.Via.AsSlice()
		}
	default:
		nr.Gw = r.Via.AsSlice()
	}
	return nr, nil
}

// ReplaceNodeRoute adds r or replaces the route to the same destination.
// Equivalent to: ip route replace DST via VIA proto 201 (or blackhole DST)
func (n *NS) ReplaceNodeRoute(r NodeRoute) error {
	nr, err := n.nlNodeRoute(r)
	if err != nil {
		return err
	}
	if err := n.h.RouteReplace(nr); err != nil {
		return fmt.Errorf("replace route %s in %s: %w", r, n, err)
	}
	return nil
}

// DelNodeRoute removes r; one already gone is not an error.
func (n *NS) DelNodeRoute(r NodeRoute) error {
	nr, err := n.nlNodeRoute(r)
	if errors.Is(err, ErrNotFound) {
		return nil // its device is gone, and the route with it
	}
	if err != nil {
		return err
	}
	if err := n.h.RouteDel(nr); err != nil && !errorsIs(err, unix.ESRCH, unix.ENOENT) {
		return fmt.Errorf("delete route %s in %s: %w", r, n, err)
	}
	return nil
}
