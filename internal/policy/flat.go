package policy

import (
	"net/netip"
	"slices"
)

// Flat is a Direction in the shape nft sets want: the peers allowed all
// traffic, and for disjoint port ranges the peers allowed on each. Every
// list of peers is a Union (disjoint prefixes), and no two port ranges of
// a protocol overlap, so the elements "peer . proto . ports" never
// overlap either, as nft interval sets require, without ever splitting a
// prefix: a pod IP inside ::/0 costs one element, not 128.
type Flat struct {
	All    []netip.Prefix
	ByPort []PortPeers
}

// PortPeers is the peers allowed on one port range.
type PortPeers struct {
	Ports PortRange
	Peers []netip.Prefix
}

// Allows answers as Direction.Allows does.
func (f Flat) Allows(peer netip.Addr, proto Proto, port uint16) bool {
	in := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(peer) })
	}
	if in(f.All) {
		return true
	}
	for _, g := range f.ByPort {
		if g.Ports.Contains(proto, port) && in(g.Peers) {
			return true
		}
	}
	return false
}

// Flatten merges d's rules into a Flat. AnyPeer becomes ::/0 and
// 0.0.0.0/0. Peers already allowed all traffic are left out of ByPort.
// A nil Direction (not isolated) flattens to nothing; renderers skip it.
func (d *Direction) Flatten() Flat {
	var f Flat
	if d == nil {
		return f
	}
	peersOf := func(r *Rule) []netip.Prefix {
		if !r.AnyPeer {
			return r.Peers
		}
		return append(slices.Clone(r.Peers), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("0.0.0.0/0"))
	}
	for i := range d.Rules {
		if len(d.Rules[i].Ports) == 0 {
			f.All = append(f.All, peersOf(&d.Rules[i])...)
		}
	}
	f.All = Union(f.All)
	covered := func(p netip.Prefix) bool {
		return slices.ContainsFunc(f.All, func(a netip.Prefix) bool { return a.Bits() <= p.Bits() && a.Contains(p.Addr()) })
	}

	// Cut each protocol's port space at every range's edges; each piece
	// gets the peers of every range covering it.
	edges := map[Proto][]int{}
	for _, r := range d.Rules {
		for _, pr := range r.Ports {
			edges[pr.Proto] = append(edges[pr.Proto], int(pr.From), int(pr.To)+1)
		}
	}
	protos := make([]Proto, 0, len(edges))
	for p := range edges {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	for _, proto := range protos {
		e := edges[proto]
		slices.Sort(e)
		e = slices.Compact(e)
		for i := 0; i+1 < len(e); i++ {
			piece := PortRange{proto, uint16(e[i]), uint16(e[i+1] - 1)}
			var peers []netip.Prefix
			for j := range d.Rules {
				r := &d.Rules[j]
				if slices.ContainsFunc(r.Ports, func(pr PortRange) bool { return pr.Contains(proto, piece.From) }) {
					for _, p := range peersOf(r) {
						if !covered(p) {
							peers = append(peers, p)
						}
					}
				}
			}
			if peers = Union(peers); len(peers) == 0 {
				continue
			}
			// Adjacent pieces with the same peers stay apart: merging them
			// would make a policy adding port 7001 beside 7000 replace
			// an element (delete, add) instead of adding one, and a
			// delete from an nft interval set waits for an RCU grace
			// period in the kernel (about 10-20 ms, measured).
			f.ByPort = append(f.ByPort, PortPeers{Ports: piece, Peers: peers})
		}
	}
	return f
}
