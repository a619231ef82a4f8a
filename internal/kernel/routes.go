package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is a unicast route in the main table. Without GW it is on-link
// through Dev (scope link for IPv4, as iproute2 does); with GW the gateway
// is reached through Dev.
type Route struct {
	Dst netip.Prefix
	GW  netip.Addr
	Dev string
	// Universe gives an IPv4 route without a gateway scope global
	// instead of link: the host then never picks a link-scope address of
	// Dev (a host end's 169.254.1.1) as the source of what it sends.
	Universe bool
}

// String renders r as iproute2 does, for errors and logs.
func (r Route) String() string {
	if r.GW.IsValid() {
		return fmt.Sprintf("%s via %s dev %s", r.Dst, r.GW, r.Dev)
	}
	return fmt.Sprintf("%s dev %s", r.Dst, r.Dev)
}

// DefaultRoute returns the all-addresses prefix of a's family, 0.0.0.0/0
// or ::/0.
func DefaultRoute(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// ReplaceRoute adds r or overwrites the route with the same destination, so
// it is idempotent. Equivalent to: ip route replace DST [via GW] dev DEV
func (n *NS) ReplaceRoute(r Route) error {
	return n.onLink(r.Dev, "replace route "+r.String()+" on", func(l netlink.Link) error {
		return n.h.RouteReplace(nlRoute(r, l.Attrs().Index))
	})
}

// DelRoute removes r; a route already gone is not an error.
// Equivalent to: ip route del DST [via GW] dev DEV
func (n *NS) DelRoute(r Route) error {
	l, err := n.link(r.Dev)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := n.h.RouteDel(nlRoute(r, l.Attrs().Index)); err != nil && !errorsIs(err, unix.ESRCH, unix.ENOENT) {
		return fmt.Errorf("delete route %s in %s: %w", r, n, err)
	}
	return nil
}

// Routes lists the main-table unicast routes through the named link, both
// families, leaving out those the kernel derives from addresses
// (proto kernel) and IPv6 multicast.
// Equivalent to: ip route show dev LINK; ip -6 route show dev LINK
func (n *NS) Routes(dev string) ([]Route, error) {
	l, err := n.link(dev)
	if err != nil {
		return nil, err
	}
	filter := &netlink.Route{LinkIndex: l.Attrs().Index}
	nrs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s in %s: %w", dev, n, err)
	}
	var out []Route
	for _, nr := range nrs {
		if nr.Protocol == unix.RTPROT_KERNEL || nr.Type != unix.RTN_UNICAST {
			continue
		}
		r, ok := routeFrom(nr)
		if !ok {
			continue
		}
		r.Dev = dev
		out = append(out, r)
	}
	return out, nil
}

func nlRoute(r Route, index int) *netlink.Route {
	nr := &netlink.Route{Dst: ipNet(r.Dst.Masked()), LinkIndex: index}
	if r.GW.IsValid() {
		nr.Gw = r.GW.AsSlice()
	} else if r.Dst.Addr().Is4() && !r.Universe {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr
}

func routeFrom(nr netlink.Route) (Route, bool) {
	var r Route
	dst, ok := prefixOf(nr.Dst, true)
	if !ok {
		return r, false
	}
	r.Dst = dst
	if nr.Gw != nil {
		gw, ok := netip.AddrFromSlice(nr.Gw)
		if !ok {
			return r, false
		}
		if dst.Addr().Is4() {
			gw = gw.Unmap()
		}
		r.GW = gw
	} else if dst.Addr().Is4() && nr.Scope == netlink.SCOPE_UNIVERSE {
		r.Universe = true
	}
	return r, true
}
