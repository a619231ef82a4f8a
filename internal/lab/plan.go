// Package lab builds a whole duet cluster in network namespaces on one
// machine: a switch, N nodes each running duetd, an "outside" namespace
// beyond the nodes' uplinks, and pods created by the real duet plugin
// through libcni. The plan (names and addresses) is pure; up and down run
// ip, duetd and the plugin.
package lab

import (
	"fmt"
	"net/netip"
)

// Options are lab up's flags.
type Options struct {
	Nodes       int    `json:"nodes"`
	PodsPerNode int    `json:"podsPerNode"`
	Family      string `json:"family"`  // dual, ipv6, ipv4
	Routing     string `json:"routing"` // direct
}

// Fixed lab prefixes: documentation-sized ULA and private ranges that
// exist only inside the lab's namespaces.
var (
	Underlay6 = netip.MustParsePrefix("fd00:d0e7:ffff::/64")
	Underlay4 = netip.MustParsePrefix("10.250.255.0/24")
	Pool6     = netip.MustParsePrefix("fd00:d0e7::/56")
	Pool4     = netip.MustParsePrefix("10.250.0.0/20")
	outsideID = 254
)

// Prefix of every namespace, link and file the lab makes, so down can
// find them even after an interrupted up.
const Prefix = "duet-lab-"

// Node is a planned node.
type Node struct {
	Name  string       `json:"name"`
	NetNS string       `json:"netns"`
	Addrs []netip.Addr `json:"addresses"`
}

// Pod is a planned pod; IPs are filled in by up.
type Pod struct {
	Name  string       `json:"name"`
	NetNS string       `json:"netns"`
	Node  string       `json:"node"`
	IPs   []netip.Addr `json:"ips"`
}

// Endpoint is a namespace with addresses (the outside).
type Endpoint struct {
	NetNS string       `json:"netns"`
	Addrs []netip.Addr `json:"addresses"`
}

// Underlay says what connects the nodes.
type Underlay struct {
	Kind  string `json:"kind"`
	NetNS string `json:"netns"`
}

// State is what `lab status --json` prints, and what down reads.
type State struct {
	Options  Options    `json:"options"`
	Nodes    []Node     `json:"nodes"`
	Pods     []Pod      `json:"pods"`
	Outside  Endpoint   `json:"outside"`
	Underlay Underlay   `json:"underlay"`
	Pools    []string   `json:"pools"`
	PIDs     []int      `json:"pids"`
	Datadir  string     `json:"datadir"`
	Ready    bool       `json:"ready"`
	Extra    []Endpoint `json:"-"`
}

func hostAddr(p netip.Prefix, id int) netip.Addr {
	a := p.Addr().As16()
	a[15] = byte(id)
	out := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return out.Unmap()
	}
	return out
}

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	switch {
	case o.Nodes < 1 || o.Nodes > 50:
		return fmt.Errorf("--nodes %d: use 1 to 50", o.Nodes)
	case o.PodsPerNode < 0 || o.PodsPerNode > 200:
		return fmt.Errorf("--pods-per-node %d: use 0 to 200", o.PodsPerNode)
	case o.Family != "dual" && o.Family != "ipv6" && o.Family != "ipv4":
		return fmt.Errorf("--family %q: use dual, ipv6 or ipv4", o.Family)
	case o.Routing != "direct" && o.Routing != "vxlan":
		return fmt.Errorf("--routing %q: use direct or vxlan", o.Routing)
	}
	return nil
}

// Plan names every namespace and address of the lab.
func Plan(o Options, datadir string) State {
	s := State{Options: o, Datadir: datadir,
		Underlay: Underlay{Kind: "switch", NetNS: Prefix + "switch"},
		Outside:  Endpoint{NetNS: Prefix + "outside", Addrs: []netip.Addr{hostAddr(Underlay6, outsideID), hostAddr(Underlay4, outsideID)}},
	}
	for _, p := range []netip.Prefix{Pool6, Pool4} {
		if (p.Addr().Is6() && o.Family != "ipv4") || (p.Addr().Is4() && o.Family != "ipv6") {
			s.Pools = append(s.Pools, p.String())
		}
	}
	for i := 1; i <= o.Nodes; i++ {
		n := Node{Name: fmt.Sprintf("node%d", i), NetNS: fmt.Sprintf("%snode%d", Prefix, i),
			Addrs: []netip.Addr{hostAddr(Underlay6, i), hostAddr(Underlay4, i)}}
		s.Nodes = append(s.Nodes, n)
		for j := 1; j <= o.PodsPerNode; j++ {
			name := fmt.Sprintf("%s-pod%d", n.Name, j)
			s.Pods = append(s.Pods, Pod{Name: name, NetNS: Prefix + name, Node: n.Name})
		}
	}
	return s
}
