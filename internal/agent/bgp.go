package agent

import (
	"context"
	"net/netip"

	"github.com/duetnet/duet/internal/bgp"
	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/routing"
)

// Speaker is what the agent needs of a BGP speaker; *bgp.Speaker has it.
type Speaker interface {
	SetNextHops([]netip.Addr) error
	Advertise([]netip.Prefix) error
	Learned() []bgp.Route
	Changed() <-chan struct{}
	Peers() []bgp.PeerStatus
	// Synced reports whether every peer has given its whole table
	// (End-of-RIB) on its current session.
	Synced() bool
	SetPeers(context.Context, []bgp.Peer) error
}

// meshPeers are the iBGP sessions of a node-to-node mesh: every other
// registered node, over each of its addresses, in the node's own AS.
func meshPeers(self string, asn uint32, nodes []cluster.Node) []bgp.Peer {
	var out []bgp.Peer
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		for _, a := range n.Addrs {
			out = append(out, bgp.Peer{Addr: a, ASN: asn, Name: n.Name})
		}
	}
	return out
}

var _ Speaker = (*bgp.Speaker)(nil)

// planBGP advertises the node's blocks and routes what peers taught it:
// blackholes for its own blocks, learned prefixes via their next hops.
// Only prefixes inside a pod pool are taken: a router that also sends a
// default route or its connected subnets must not have them installed
// over the node's own (replacing a connected route cuts the node off). A
// learned prefix that is one of this node's blocks (reflected back) is
// ignored too.
func planBGP(sp Speaker, self string, addrs []netip.Addr, blocks []ipam.Block) ([]routing.Route, error) {
	var own []netip.Prefix
	var routes []routing.Route
	mine := map[netip.Prefix]bool{}
	pools := map[netip.Prefix]bool{}
	for _, b := range blocks {
		pools[b.Pool] = true
		if b.Node == self {
			own = append(own, b.CIDR)
			mine[b.CIDR] = true
			routes = append(routes, routing.Route{Dst: b.CIDR, Blackhole: true, Node: self})
		}
	}
	if err := sp.SetNextHops(addrs); err != nil {
		return nil, err
	}
	if err := sp.Advertise(own); err != nil {
		return nil, err
	}
	for _, r := range sp.Learned() {
		if mine[r.Dst] || !r.NextHop.IsValid() || !insideAny(r.Dst, pools) {
			continue
		}
		routes = append(routes, routing.Route{Dst: r.Dst, Via: r.NextHop, Node: "bgp peer " + r.Peer.String()})
	}
	return routes, nil
}

func insideAny(p netip.Prefix, pools map[netip.Prefix]bool) bool {
	for pool := range pools {
		if pool.Bits() <= p.Bits() && pool.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
