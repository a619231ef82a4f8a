// Package connectivity proves every path of a duet cluster in both
// families: pod to pod on one node and across nodes, pod to its node and
// to other nodes, node to pod, and pod to the outside; with ICMP, TCP and
// UDP; and checks the NAT expectations (pod-to-pod keeps its source, egress
// from a masqueraded pool shows the node's address).
package connectivity

import (
	"errors"
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

// paths covers every node and every pair of nodes, so a route missing
// between any two nodes shows: on each node, pod to pod, pod to its node,
// node to pod and pod to the outside; for each pair of nodes, pod to pod
// (in both directions when the lab is small, in one otherwise), pod to
// the other node and the node to the other node's pod. The pods used
// rotate, so a lab with many pods per node probes many of them, not only
// each node's first.
func paths(s lab.State) []path {
	pods := map[string][]endpoint{}
	var nodes []endpoint
	for _, n := range s.Nodes {
		nodes = append(nodes, endpoint{n.Name, nsPath(n.NetNS), n.Addrs})
	}
	for _, p := range s.Pods {
		pods[p.Node] = append(pods[p.Node], endpoint{p.Name, nsPath(p.NetNS), p.IPs})
	}
	// pod returns node n's k-th pod, cycling.
	pod := func(n endpoint, k int) (endpoint, bool) {
		ps := pods[n.name]
		if len(ps) == 0 {
			return endpoint{}, false
		}
		return ps[k%len(ps)], true
	}
	out := endpoint{"outside", nsPath(s.Outside.NetNS), s.Outside.Addrs}
	var ps []path
	for _, n := range nodes {
		a, ok := pod(n, 0)
		if !ok {
			continue
		}
		if b := pods[n.name]; len(b) > 1 {
			ps = append(ps, path{name: "pod to pod, same node", src: a, dst: b[1]})
		}
		ps = append(ps, path{name: "pod to its node", src: a, dst: n})
		last, _ := pod(n, len(pods[n.name])-1)
		ps = append(ps, path{name: "node to pod", src: n, dst: last})
		m := n
		ps = append(ps, path{name: "pod to outside", src: a, dst: out, masq: &m})
	}
	both := len(nodes) <= 3
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			ni, nj := nodes[i], nodes[j]
			src, ok1 := pod(ni, j)
			dst, ok2 := pod(nj, i)
			if ok1 && ok2 {
				ps = append(ps, path{name: "pod to pod, across nodes", src: src, dst: dst})
				if both {
					ps = append(ps, path{name: "pod to pod, across nodes", src: dst, dst: src})
				}
			}
			if ok1 {
				m := ni
				ps = append(ps, path{name: "pod to other node", src: src, dst: nj, masq: &m})
			}
			if ok2 {
				ps = append(ps, path{name: "node to pod, other node", src: ni, dst: dst})
			}
		}
	}
	if s.Neighbour != nil {
		// A host on the nodes' link with no route for any pod: it finds
		// each pod by neighbour discovery, answered by the pod's node.
		nb := endpoint{"neighbour", nsPath(s.Neighbour.NetNS), s.Neighbour.Addrs}
		for _, n := range nodes {
			if p, ok := pod(n, 0); ok {
				ps = append(ps, path{name: "neighbour to pod (" + n.name + ")", src: nb, dst: p})
			}
		}
	}
	return ps
}

// ErrNoPods is Run's answer for a lab without pods: there is no duet path
// to prove, and "all 0 checks passed" would say nothing.
var ErrNoPods = errors.New("the lab has no pods, so there is no path to probe: bring it up again with --pods-per-node 1 or more (duetctl lab down; duetctl lab up --pods-per-node 2)")

// Run probes every path in every family the lab's pods have.
func Run(s lab.State) ([]Result, error) {
	if len(s.Pods) == 0 {
		return nil, ErrNoPods
	}
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
	return results, nil
}

// masqueraded says whether the lab's pools masquerade a: the lab uses a
// ULA and a private IPv4 pool, which duet masquerades by default.
func masqueraded(a netip.Addr) bool {
	return ipam.DefaultNATOutgoing(netip.PrefixFrom(a, a.BitLen()))
}
