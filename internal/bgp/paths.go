package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Route is a best path a peer advertised: a destination of either family
// and the next hop to reach it through.
type Route struct {
	Dst netip.Prefix
	// NextHop is the address the peer gave; for an IPv4 Dst it is IPv6
	// only if the peer negotiated extended next hop (RFC 8950).
	NextHop netip.Addr
	// Peer is the neighbour the path came from.
	Peer netip.Addr
}

func (r Route) String() string {
	return fmt.Sprintf("%s via %s (from %s)", r.Dst, r.NextHop, r.Peer)
}

// Address families as GoBGP names them. The family comes from the address
// (Is4/Is6), never from a separate parameter.
var (
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	// families is what every session carries, IPv6 first.
	families = []*api.Family{familyIPv6, familyIPv4}
)

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// familyName is the name status output uses ("ipv6-unicast").
func familyName(f *api.Family) string {
	switch {
	case proto.Equal(f, familyIPv6):
		return "ipv6-unicast"
	case proto.Equal(f, familyIPv4):
		return "ipv4-unicast"
	}
	return fmt.Sprintf("afi%d-safi%d", f.GetAfi(), f.GetSafi())
}

// pathFor builds the GoBGP path that advertises dst with next hop nh. One
// shape for both families: GoBGP itself turns an IPv4 prefix with an IPv4
// next hop into the classic NEXT_HOP attribute and anything else into
// MP_REACH_NLRI (RFC 4760), which is the detail this package hides. An
// invalid nh becomes the unspecified address of dst's family, which GoBGP
// replaces with the session's local address.
func pathFor(dst netip.Prefix, nh netip.Addr) (*api.Path, error) {
	dst = dst.Masked()
	if !dst.IsValid() {
		return nil, fmt.Errorf("invalid prefix")
	}
	if !nh.IsValid() {
		nh = netip.IPv6Unspecified()
		if dst.Addr().Is4() {
			nh = netip.IPv4Unspecified()
		}
	}
	if nh.Is4() != dst.Addr().Is4() {
		return nil, fmt.Errorf("%s: next hop %s is of the other family", dst, nh)
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: dst.Addr().String(), PrefixLen: uint32(dst.Bits())})
	if err != nil {
		return nil, err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP: the block starts here
	if err != nil {
		return nil, err
	}
	next, err := anypb.New(&api.NextHopAttribute{NextHop: nh.String()})
	if err != nil {
		return nil, err
	}
	return &api.Path{Family: familyOf(dst.Addr()), Nlri: nlri, Pattrs: []*anypb.Any{origin, next}}, nil
}

// routeOf reads a path from GoBGP's RIB. ok is false for paths this node
// originated (GoBGP gives them no neighbour address) and for paths it
// cannot read.
func routeOf(p *api.Path) (r Route, ok bool, err error) {
	peer, perr := netip.ParseAddr(p.GetNeighborIp())
	if perr != nil || peer.IsUnspecified() {
		return Route{}, false, nil // ours: NeighborIp is "<nil>"
	}
	r.Peer = peer.Unmap()
	var pfx api.IPAddressPrefix
	if p.GetNlri() == nil || p.GetNlri().UnmarshalTo(&pfx) != nil {
		return Route{}, false, fmt.Errorf("path from %s: NLRI is not an IP prefix", peer)
	}
	a, err := netip.ParseAddr(pfx.Prefix)
	if err != nil {
		return Route{}, false, fmt.Errorf("path from %s: %w", peer, err)
	}
	if r.Dst, err = a.Unmap().Prefix(int(pfx.PrefixLen)); err != nil {
		return Route{}, false, fmt.Errorf("path from %s: %w", peer, err)
	}
	nh, err := nextHopOf(p.GetPattrs())
	if err != nil {
		return Route{}, false, fmt.Errorf("path %s from %s: %w", r.Dst, peer, err)
	}
	r.NextHop = nh
	return r, true, nil
}

// nextHopOf finds the next hop in either place BGP carries it: NEXT_HOP
// for classic IPv4, or the first (global) address of MP_REACH_NLRI, which
// for IPv6 may be followed by a link-local one (RFC 2545).
func nextHopOf(attrs []*anypb.Any) (netip.Addr, error) {
	for _, a := range attrs {
		var s string
		switch {
		case a.MessageIs(&api.NextHopAttribute{}):
			var nh api.NextHopAttribute
			if err := a.UnmarshalTo(&nh); err != nil {
				return netip.Addr{}, err
			}
			s = nh.NextHop
		case a.MessageIs(&api.MpReachNLRIAttribute{}):
			var mp api.MpReachNLRIAttribute
			if err := a.UnmarshalTo(&mp); err != nil {
				return netip.Addr{}, err
			}
			if len(mp.NextHops) == 0 {
				continue
			}
			s = mp.NextHops[0]
		default:
			continue
		}
		nh, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("next hop: %w", err)
		}
		return nh.Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("no next hop")
}

// sortRoutes orders routes IPv6 first, then by destination, so output and
// test fixtures are stable.
func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if a.Dst.Addr().Is4() != b.Dst.Addr().Is4() {
			if a.Dst.Addr().Is4() {
				return 1
			}
			return -1
		}
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
}
