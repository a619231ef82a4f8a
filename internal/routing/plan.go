// Package routing computes the routes a node needs to reach every other
// node's pod blocks, from the cluster's desired state: pure functions over
// netip types, tested without root. The reconciler in this package's
// kernel-facing half applies them.
package routing

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
)

// Modes of reaching other nodes.
const (
	Direct = "direct" // the peer is on-link: route its blocks via its address
	VXLAN  = "vxlan"  // encapsulate towards the peer's address
)

// Route is one desired route in the node's main table.
type Route struct {
	Dst netip.Prefix
	// Via is the next hop: the peer's underlay address (direct) or its
	// VTEP link-local address (vxlan). Invalid for a blackhole.
	Via netip.Addr
	// Blackhole marks a local block: addresses of it that no pod holds
	// are unreachable, instead of leaking to the default route.
	Blackhole bool
	// Node is the peer the route leads to, for status and logs.
	Node string
	// Dev is duet's VXLAN device for vxlan routes, else empty.
	Dev string
}

func (r Route) String() string {
	if r.Blackhole {
		return "blackhole " + r.Dst.String()
	}
	if r.Dev != "" {
		return fmt.Sprintf("%s via %s dev %s (%s)", r.Dst, r.Via, r.Dev, r.Node)
	}
	return fmt.Sprintf("%s via %s (%s)", r.Dst, r.Via, r.Node)
}

// Problem is something the plan could not honour, for status output.
type Problem struct {
	Node, Msg string
}

// Plan returns the routes node self needs: a blackhole for each of its own
// blocks, and a route to each other node's block via that node's address
// of the block's family (or its VTEP, when vtep is given).
func Plan(self string, nodes []cluster.Node, blocks []ipam.Block, vtep func(cluster.Node) (netip.Addr, bool)) ([]Route, []Problem) {
	byName := map[string]cluster.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var routes []Route
	var problems []Problem
	for _, b := range blocks {
		if b.Node == self {
			routes = append(routes, Route{Dst: b.CIDR, Blackhole: true, Node: self})
			continue
		}
		peer, ok := byName[b.Node]
		if !ok {
			problems = append(problems, Problem{b.Node, fmt.Sprintf("block %s belongs to node %q, which is not registered", b.CIDR, b.Node)})
			continue
		}
		var via netip.Addr
		if vtep != nil {
			via, ok = vtep(peer)
		} else {
			via, ok = peer.Addr(b.CIDR.Addr())
		}
		if !ok {
			problems = append(problems, Problem{peer.Name, fmt.Sprintf("node %q has no %s address to route block %s via: give it one, or use vxlan routing", peer.Name, ipam.FamilyOf(b.CIDR.Addr()), b.CIDR)})
			continue
		}
		routes = append(routes, Route{Dst: b.CIDR, Via: via, Node: peer.Name})
	}
	sort.Slice(routes, func(i, j int) bool {
		if routes[i].Dst.Addr().Is4() != routes[j].Dst.Addr().Is4() {
			return routes[j].Dst.Addr().Is4() // IPv6 first
		}
		return routes[i].Dst.Addr().Less(routes[j].Dst.Addr())
	})
	return routes, problems
}
