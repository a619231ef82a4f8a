// Package connectivity proves every path of a duet cluster in both
// families: pod to pod on one node and across nodes, pod to its node and
// to other nodes, node to pod, and pod to the outside; with ICMP, TCP and
// UDP; and checks the NAT expectations (pod-to-pod keeps its source, egress
// from a masqueraded pool shows the node's address).
package connectivity

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/lab"
)

// Result is one cell of the table.
type Result struct {
	Path     string        `json:"path"`
	Family   string        `json:"family"`
	Proto    string        `json:"proto"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Dst      netip.Addr    `json:"dst"`
	OK       bool          `json:"ok"`
	Latency  time.Duration `json:"latencyNs"`
	SeenFrom string        `json:"seenSource,omitempty"`
	Expect   string        `json:"expectSource,omitempty"`
	Error    string        `json:"error,omitempty"`
}

type endpoint struct {
	name, netns string
	addrs       []netip.Addr
}

func (e endpoint) addr(fam ipam.Family) (netip.Addr, bool) {
	for _, a := range e.addrs {
		if ipam.FamilyOf(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

type path struct {
	name     string
	src, dst endpoint
	// natTo is the node whose address the destination must see (the
	// source node when the pod's traffic is masqueraded); nil means the
	// source itself must be seen.
	masq *endpoint
}

func nsPath(name string) string { return "/var/run/netns/" + name }

// Paths picks representative pairs from the lab: the first two pods of the
// first node, the first pod of the second node, both nodes, the outside.
func paths(s lab.State) []path {
	pods := map[string][]endpoint{}
	nodes := map[string]endpoint{}
	for _, n := range s.Nodes {
		nodes[n.Name] = endpoint{n.Name, nsPath(n.NetNS), n.Addrs}
	}
	for _, p := range s.Pods {
		pods[p.Node] = append(pods[p.Node], endpoint{p.Name, nsPath(p.NetNS), p.IPs})
	}
	if len(s.Nodes) == 0 || len(pods[s.Nodes[0].Name]) == 0 {
		return nil
	}
	n1 := nodes[s.Nodes[0].Name]
	a := pods[n1.name][0]
	out := endpoint{"outside", nsPath(s.Outside.NetNS), s.Outside.Addrs}
	var ps []path
	if len(pods[n1.name]) > 1 {
		ps = append(ps, path{name: "pod to pod, same node", src: a, dst: pods[n1.name][1]})
	}
	ps = append(ps, path{name: "pod to its node", src: a, dst: n1})
	if len(s.Nodes) > 1 {
		n2 := nodes[s.Nodes[1].Name]
		if len(pods[n2.name]) > 0 {
			ps = append(ps, path{name: "pod to pod, across nodes", src: a, dst: pods[n2.name][0]})
		}
		ps = append(ps, path{name: "pod to other node", src: a, dst: n2, masq: &n1})
		if len(pods[n2.name]) > 0 {
			ps = append(ps, path{name: "node to pod, other node", src: n1, dst: pods[n2.name][0]})
		}
	}
	ps = append(ps, path{name: "node to pod", src: n1, dst: a})
	ps = append(ps, path{name: "pod to outside", src: a, dst: out, masq: &n1})
	if s.Neighbour != nil {
		// A host on the nodes' link with no route for any pod: it finds
		// each pod by neighbour discovery, answered by the pod's node.
		nb := endpoint{"neighbour", nsPath(s.Neighbour.NetNS), s.Neighbour.Addrs}
		for _, n := range s.Nodes {
			if len(pods[n.Name]) > 0 {
				ps = append(ps, path{name: "neighbour to pod (" + n.Name + ")", src: nb, dst: pods[n.Name][0]})
			}
		}
	}
	return ps
}

// Run probes every path in every family the lab's pods have.
func Run(s lab.State) []Result {
	var results []Result
	for _, fam := range []ipam.Family{ipam.IPv6, ipam.IPv4} {
		for _, p := range paths(s) {
			srcAddr, ok1 := p.src.addr(fam)
			dst, ok2 := p.dst.addr(fam)
			if !ok1 || !ok2 {
				continue
			}
			expect := srcAddr
			if p.masq != nil && masqueraded(srcAddr) {
				expect, _ = p.masq.addr(fam)
			}
			for _, proto := range []string{"icmp", "tcp", "udp"} {
				r := Result{Path: p.name, Family: fam.String(), Proto: proto, From: p.src.name, To: p.dst.name, Dst: dst}
				var seen string
				var err error
				switch proto {
				case "icmp":
					r.Latency, _, err = ping(p.src.netns, dst)
				case "tcp":
					r.Latency, seen, err = tcp(p.src.netns, p.dst.netns, dst)
				case "udp":
					r.Latency, seen, err = udp(p.src.netns, p.dst.netns, dst)
				}
				r.OK = err == nil
				if err != nil {
					r.Error = err.Error()
				}
				if proto != "icmp" && err == nil {
					r.SeenFrom, r.Expect = seen, expect.String()
					if seen != expect.String() {
						r.OK = false
						r.Error = fmt.Sprintf("the destination saw source %s, want %s", seen, expect)
					}
				}
				results = append(results, r)
			}
		}
	}
	return results
}

// masqueraded says whether the lab's pools masquerade a: the lab uses a
// ULA and a private IPv4 pool, which duet masquerades by default.
func masqueraded(a netip.Addr) bool {
	return ipam.DefaultNATOutgoing(netip.PrefixFrom(a, a.BitLen()))
}
