// Package kube makes the Kubernetes API one more source of duet's desired
// state: a Node informer, and pure functions that turn Node objects into
// the same cluster.Node and ipam.Block values the store holds, so duetd's
// planners and reconcilers do not know where their input came from.
//
// A node's pod ranges are its spec.podCIDRs, allocated by
// kube-controller-manager (--allocate-node-cidrs): each is one block with
// the node's affinity, and the plugin on the node allocates inside it from
// its own bolt file, so a pod ADD makes no API call and needs no cluster
// store.
//
// client-go is linked only here and in cmd/duetd: the CNI plugins must
// stay lean (cmd/duet's TestLean).
package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
)

// State is the cluster as the Node objects describe it, for one node.
type State struct {
	// Self is this node: its name and InternalIP addresses.
	Self cluster.Node
	// Nodes are every node, this one included, by name.
	Nodes []cluster.Node
	// Blocks are one per pod range of every node, in the families asked.
	Blocks []ipam.Block
	// Own are this node's pod ranges in the families asked, IPv6 first:
	// the pools of the plugin's configuration.
	Own []netip.Prefix
	// Problems are other nodes' fields that were skipped (a pod range
	// that does not parse), for the log.
	Problems []string
}

// Addrs returns n's status.addresses of type InternalIP, IPv6 first: the
// addresses other nodes route its pod ranges via, and the ones the
// kubelet reports for it. Other types (ExternalIP, Hostname) are not
// addresses nodes reach each other on.
func Addrs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || slices.Contains(out, ip.Unmap()) {
			continue
		}
		out = append(out, ip.Unmap())
	}
	sixFirst(out, func(a netip.Addr) bool { return a.Is6() })
	return out
}

// PodCIDRs returns n's spec.podCIDRs (or the older single spec.podCIDR),
// IPv6 first, and the entries it had to skip. The API server validates
// them, so a bad one means an object written around that validation.
func PodCIDRs(n *corev1.Node) ([]netip.Prefix, []string) {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	var bad []string
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("node %q: spec.podCIDRs entry %q is not a prefix", n.Name, s))
		case p.Masked() != p:
			bad = append(bad, fmt.Sprintf("node %q: spec.podCIDRs entry %s has host bits set (%s is meant?)", n.Name, p, p.Masked()))
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	sixFirst(out, func(p netip.Prefix) bool { return p.Addr().Is6() })
	return out, bad
}

// sixFirst orders IPv6 before IPv4, keeping the order within a family.
func sixFirst[T any](s []T, is6 func(T) bool) {
	sort.SliceStable(s, func(i, j int) bool { return is6(s[i]) && !is6(s[j]) })
}

// Convert turns the Node objects into the desired state of node self,
// keeping the pod ranges of families fams (IPv6 first). It fails, naming
// the fix, when self is missing or lacks a pod range of a family asked:
// then nothing may be made for this node (no conflist, no routes from a
// half-known state).
func Convert(nodes []*corev1.Node, self string, fams []ipam.Family) (State, error) {
	var st State
	var own *corev1.Node
	sorted := slices.Clone(nodes)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, n := range sorted {
		cn := cluster.Node{Name: n.Name, Addrs: Addrs(n)}
		st.Nodes = append(st.Nodes, cn)
		cidrs, bad := PodCIDRs(n)
		st.Problems = append(st.Problems, bad...)
		for _, p := range cidrs {
			if !slices.Contains(fams, ipam.FamilyOf(p.Addr())) {
				continue
			}
			st.Blocks = append(st.Blocks, ipam.Block{CIDR: p, Pool: p, Node: n.Name})
			if n.Name == self {
				st.Own = append(st.Own, p)
			}
		}
		if n.Name == self {
			own, st.Self = n, cn
		}
	}
	if own == nil {
		return State{}, fmt.Errorf("node %q is not in the Kubernetes API: set --node-name (in a DaemonSet, env NODE_NAME from fieldRef spec.nodeName) to the name the kubelet registered", self)
	}
	if err := checkOwn(own, fams); err != nil {
		return State{}, err
	}
	return st, nil
}

// checkOwn says what is missing for this node to run pods in every
// family asked.
func checkOwn(n *corev1.Node, fams []ipam.Family) error {
	cidrs, bad := PodCIDRs(n)
	if len(cidrs) == 0 {
		if len(bad) > 0 {
			return fmt.Errorf("%s: fix the node's spec.podCIDRs", strings.Join(bad, "; "))
		}
		return fmt.Errorf("node %q has no spec.podCIDRs: kube-controller-manager is not allocating pod ranges: run it with --allocate-node-cidrs and a --cluster-cidr of %s, or set spec.podCIDRs", n.Name, familiesPhrase(fams))
	}
	for _, f := range fams {
		found := false
		for _, p := range cidrs {
			found = found || ipam.FamilyOf(p.Addr()) == f
		}
		if found {
			continue
		}
		have := make([]string, len(cidrs))
		for i, p := range cidrs {
			have[i] = p.String()
		}
		return fmt.Errorf("node %q has spec.podCIDRs %s but no %s range, and --families %s asks for it: give kube-controller-manager a --cluster-cidr of %s (spec.podCIDRs cannot change once set, so delete the Node object and let the kubelet register it again), or run duetd with --families %s",
			n.Name, strings.Join(have, ","), f, FamiliesFlag(fams), familiesPhrase(fams), otherFamilies(cidrs))
	}
	return nil
}

func familiesPhrase(fams []ipam.Family) string {
	if len(fams) == 2 {
		return "both families"
	}
	return fams[0].String()
}

// otherFamilies is the --families value the node's ranges would satisfy.
func otherFamilies(cidrs []netip.Prefix) string {
	if cidrs[0].Addr().Is6() {
		return "ipv6"
	}
	return "ipv4"
}
