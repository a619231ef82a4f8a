// Package lab builds a whole duet cluster in network namespaces on one
// machine: a switch, N nodes each running duetd, an etcd (duetd's embedded
// one, in a store namespace on the underlay) that every duetd and every
// plugin call talks to, an "outside" namespace beyond the nodes' uplinks,
// and pods created by the real duet plugin through libcni. The plan (names and addresses) is pure; up and down run
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
	Routing     string `json:"routing"` // direct, vxlan or bgp; WithDefaults picks
	// Topology is "switched" (default: nodes on one segment, pods in
	// their own pools), "routed" (each node on its own subnet behind a
	// BIRD router; bgp routing) or "ndp-proxy" (pods take addresses from
	// the nodes' shared uplink prefix and are answered for by NDP proxy).
	Topology string `json:"topology"`
	// BlockSize6 overrides the IPv6 pool's block size (benchmarks use
	// small blocks to see many block claims); 0 keeps the default.
	BlockSize6 int `json:"blockSize6,omitempty"`
	// Runtime is what makes the pods: "cni" (default: a namespace and
	// the duet plugin, as a CNI runtime does) or "docker" (containers of
	// the machine's Docker Engine on each node's duet network, served by
	// that node's duetd --docker: seed 001's Docker hosts).
	Runtime string `json:"runtime,omitempty"`
}

// DockerDriver is the Docker driver (and network) name of a lab node.
func DockerDriver(node string) string { return Prefix + node }

// DockerLabel marks the lab's containers and networks, for down.
const DockerLabel = "duet.lab"

// Fixed lab prefixes: documentation-sized ULA and private ranges that
// exist only inside the lab's namespaces.
var (
	Underlay6 = netip.MustParsePrefix("fd00:d0e7:ffff::/64")
	Underlay4 = netip.MustParsePrefix("10.250.255.0/24")
	Pool6     = netip.MustParsePrefix("fd00:d0e7::/56")
	Pool4     = netip.MustParsePrefix("10.250.0.0/20")
	outsideID = 254
	storeID   = 253
	// etcdPort is the lab etcd's client port on the store's addresses.
	etcdPort uint16 = 2379

	// The ndp-proxy topology: one global /64 (documentation space, only
	// inside the lab) shared by nodes, outside and a neighbour, with the
	// pools carved from it (seed 001's /125-in-the-host's-/64 scenario).
	ProxyUnderlay6 = netip.MustParsePrefix("2001:db8:d0e7::/64")
	ProxyPool6     = netip.MustParsePrefix("2001:db8:d0e7::1:0/112")
	// ProxyPool4 stays clear of the nodes (.1-), the neighbour (.200)
	// and the outside (.254): a pool must never hold another host's
	// address on the link. Two /27 blocks, one a node.
	ProxyPool4      = netip.MustParsePrefix("10.250.255.64/26")
	proxyBlockSize4 = 27
	neighbourID     = 200
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
	Options Options  `json:"options"`
	Nodes   []Node   `json:"nodes"`
	Pods    []Pod    `json:"pods"`
	Outside Endpoint `json:"outside"`
	// Store is the namespace of the lab's etcd, on the underlay like a
	// control-plane host; StorePID is its duetd --etcd-only.
	Store    Endpoint `json:"store"`
	StorePID int      `json:"storePid,omitempty"`
	Underlay Underlay `json:"underlay"`
	// Neighbour is set in the ndp-proxy topology: a host on the nodes'
	// link with no route for any pod.
	Neighbour *Endpoint `json:"neighbour,omitempty"`
	Pools     []string  `json:"pools"`
	PIDs      []int     `json:"pids"`
	// RouterPID is BIRD's, in the routed topology.
	RouterPID int        `json:"routerPid,omitempty"`
	Datadir   string     `json:"datadir"`
	Ready     bool       `json:"ready"`
	Extra     []Endpoint `json:"-"`
	// Kubernetes is set for a lab made by `lab up --kubernetes`: a real
	// cluster whose CNI is duet (package kubelab fills it in).
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
}

// Kubernetes is what `lab status --json` says of a kube lab.
type Kubernetes struct {
	Version string `json:"version"`
	// Kubeconfig works from the host's own network namespace, as kind's
	// does: kubectl --kubeconfig THIS get nodes.
	Kubeconfig string `json:"kubeconfig"`
	// Kubectl is the path of the kubectl binary of Version.
	Kubectl   string `json:"kubectl"`
	ProxyMode string `json:"proxyMode"`
	// ControlPlane is the namespace of etcd, the API server, the
	// controller-manager and the scheduler (and where e2e.test runs).
	ControlPlane Endpoint `json:"controlPlane"`
	// Procs are the lab's processes by name (kube-apiserver,
	// kubelet-node1, ...), for status and for down.
	Procs map[string]int `json:"procs"`
	// BinDir holds the upstream binaries; Root the per-node state.
	BinDir string `json:"binDir"`
	Root   string `json:"root"`
}

// EtcdEndpoints are the client URLs of the lab's etcd, IPv6 first; every
// node reaches both (its underlay is dual-stack whatever the pods' family).
func (s State) EtcdEndpoints() []string {
	var out []string
	for _, a := range s.Store.Addrs {
		out = append(out, "http://"+netip.AddrPortFrom(a, etcdPort).String())
	}
	return out
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

// WithDefaults fills what the user left empty: the switched topology,
// and direct routing, except that the routed topology implies BGP (its
// router learns the pod blocks from the nodes; there is nothing else it
// could route by).
func (o Options) WithDefaults() Options {
	if o.Topology == "" {
		o.Topology = "switched"
	}
	if o.Runtime == "" {
		o.Runtime = "cni"
	}
	if o.Routing == "" {
		o.Routing = "direct"
		if o.Topology == "routed" {
			o.Routing = "bgp"
		}
	}
	return o
}

// Diff names, as flags, what differs between a running lab's options and
// these, so "already up" can say what the user asked to change.
func (o Options) Diff(running Options) []string {
	var d []string
	add := func(flag string, was, now any) {
		if was != now {
			d = append(d, fmt.Sprintf("--%s %v (the running lab has %v)", flag, now, was))
		}
	}
	add("nodes", running.Nodes, o.Nodes)
	add("pods-per-node", running.PodsPerNode, o.PodsPerNode)
	add("family", running.Family, o.Family)
	add("routing", running.Routing, o.Routing)
	add("topology", running.Topology, o.Topology)
	add("block-size6", running.BlockSize6, o.BlockSize6)
	add("runtime", running.Runtime, o.Runtime)
	return d
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
	case o.Routing != "direct" && o.Routing != "vxlan" && o.Routing != "bgp":
		return fmt.Errorf("--routing %q: use direct, vxlan or bgp", o.Routing)
	case o.Topology != "" && o.Topology != "switched" && o.Topology != "ndp-proxy" && o.Topology != "routed":
		return fmt.Errorf("--topology %q: use switched, ndp-proxy or routed", o.Topology)
	case o.Topology == "routed" && o.Routing != "bgp":
		return fmt.Errorf("--topology routed puts each node on its own subnet behind a router that learns pod blocks by BGP, so it cannot use --routing %s: drop --routing (routed implies bgp) or pass --routing bgp", o.Routing)
	case o.Routing == "bgp" && o.Topology == "ndp-proxy":
		return fmt.Errorf("--routing bgp: use --topology routed (a BIRD router) or switched (a node-to-node mesh)")
	case o.Runtime != "" && o.Runtime != "cni" && o.Runtime != "docker":
		return fmt.Errorf("--runtime %q: use cni (the duet plugin in namespaces) or docker (containers of this machine's Docker Engine)", o.Runtime)
	case o.Runtime == "docker" && o.BlockSize6 != 0:
		return fmt.Errorf("--block-size6 is for the cni runtime: drop it with --runtime docker")
	case o.Topology == "ndp-proxy" && o.Nodes > 2:
		return fmt.Errorf("--topology ndp-proxy carves a /26 from the uplink's IPv4 /24, two /27 blocks: use --nodes 2 or fewer")
	}
	return nil
}

// Plan names every namespace and address of the lab.
func Plan(o Options, datadir string) State {
	u6, pool6, pool4 := Underlay6, Pool6, Pool4
	if o.Topology == "ndp-proxy" {
		u6, pool6, pool4 = ProxyUnderlay6, ProxyPool6, ProxyPool4
	}
	s := State{Options: o, Datadir: datadir,
		Underlay: Underlay{Kind: "switch", NetNS: Prefix + "switch"},
		Outside:  Endpoint{NetNS: Prefix + "outside", Addrs: []netip.Addr{hostAddr(u6, outsideID), hostAddr(Underlay4, outsideID)}},
		Store:    Endpoint{NetNS: Prefix + "etcd", Addrs: []netip.Addr{hostAddr(u6, storeID), hostAddr(Underlay4, storeID)}},
	}
	if o.Topology == "ndp-proxy" {
		s.Neighbour = &Endpoint{NetNS: Prefix + "neighbour", Addrs: []netip.Addr{hostAddr(u6, neighbourID), hostAddr(Underlay4, neighbourID)}}
	}
	for _, p := range []netip.Prefix{pool6, pool4} {
		if (p.Addr().Is6() && o.Family != "ipv4") || (p.Addr().Is4() && o.Family != "ipv6") {
			s.Pools = append(s.Pools, p.String())
		}
	}
	for i := 1; i <= o.Nodes; i++ {
		n := Node{Name: fmt.Sprintf("node%d", i), NetNS: fmt.Sprintf("%snode%d", Prefix, i),
			Addrs: []netip.Addr{hostAddr(u6, i), hostAddr(Underlay4, i)}}
		s.Nodes = append(s.Nodes, n)
		for j := 1; j <= o.PodsPerNode; j++ {
			name := fmt.Sprintf("%s-pod%d", n.Name, j)
			s.Pods = append(s.Pods, Pod{Name: name, NetNS: Prefix + name, Node: n.Name})
		}
	}
	if o.Topology == "routed" {
		return planRouted(s, o)
	}
	return s
}
