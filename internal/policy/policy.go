// Package policy is duet's model of NetworkPolicy after compilation: for
// every pod, what it may receive (ingress) and send (egress), as peer
// prefixes and port ranges over netip types, with the prefix arithmetic
// (Subtract, Union) and the flattening into disjoint sets (Flatten) that
// rendering needs, and the explanation people read (Explain). It imports
// nothing from Kubernetes, so the CNI plugin, which links
// internal/firewall, stays lean; package netpol compiles the API objects
// into it.
//
// Addresses stay family-blind (one []netip.Prefix) and a peer of one
// family never matches traffic of the other: 0.0.0.0/0 covers IPv4 only
// and ::/0 IPv6 only.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Dir is the direction a rule applies to, from the selected pod's side.
type Dir uint8

const (
	Ingress Dir = iota // traffic to the pod; peers are sources
	Egress             // traffic from the pod; peers are destinations
)

func (d Dir) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Proto is an IP protocol number. NetworkPolicy ports name TCP, UDP and
// SCTP; other protocols (ICMP, ICMPv6) only match rules without ports.
type Proto uint8

const (
	ICMP   Proto = 1
	TCP    Proto = 6
	UDP    Proto = 17
	ICMPv6 Proto = 58
	SCTP   Proto = 132
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// PortRange is an inclusive range of destination ports of one protocol.
// From 0 To 65535 is every port of Proto (a NetworkPolicyPort with a
// protocol and no port).
type PortRange struct {
	Proto    Proto
	From, To uint16
}

// AllPorts says whether r is every port of its protocol.
func (r PortRange) AllPorts() bool { return r.From == 0 && r.To == 65535 }

func (r PortRange) String() string {
	switch {
	case r.AllPorts():
		return r.Proto.String()
	case r.From == r.To:
		return fmt.Sprintf("%s/%d", r.Proto, r.From)
	}
	return fmt.Sprintf("%s/%d-%d", r.Proto, r.From, r.To)
}

// Contains says whether r matches a packet of proto to port.
func (r PortRange) Contains(proto Proto, port uint16) bool {
	return r.Proto == proto && r.From <= port && port <= r.To
}

// Ref names one rule of one policy, for explanations:
// "ns/name ingress[0]".
type Ref struct {
	Namespace, Name string
	Dir             Dir
	Index           int
}

// Policy is "namespace/name".
func (r Ref) Policy() string { return r.Namespace + "/" + r.Name }

func (r Ref) String() string { return fmt.Sprintf("%s %s[%d]", r.Policy(), r.Dir, r.Index) }

// Rule allows traffic between the selected pod and Peers on Ports. It is
// one rule of one policy, or part of one: a rule whose named ports
// resolve to different numbers on different destination pods is split
// into one Rule per set of numbers.
type Rule struct {
	Source Ref
	// AnyPeer: the rule lists no peers, so every address of both
	// families matches. An ipBlock ::/0 is not AnyPeer.
	AnyPeer bool
	// Peers are the addresses that match, both families, disjoint and
	// sorted (Union): pod IPs as /128 and /32, ipBlocks with their
	// excepts already subtracted.
	Peers []netip.Prefix
	// Ports are the destination ports that match, merged and sorted;
	// empty is all traffic, every protocol included.
	Ports []PortRange
	// PeerText describes where Peers came from, for people.
	PeerText []string
}

func (r *Rule) matches(peer netip.Addr, proto Proto, port uint16) bool {
	if !r.AnyPeer && !slices.ContainsFunc(r.Peers, func(p netip.Prefix) bool { return p.Contains(peer) }) {
		return false
	}
	return len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pr PortRange) bool { return pr.Contains(proto, port) })
}

// Direction is what an isolated pod allows in one direction: the union of
// Rules over every policy in Policies. No rules is deny all.
type Direction struct {
	Policies []string // "ns/name" of every policy isolating the pod this way
	Rules    []Rule
	// Notes explain rules that match nothing for this pod, such as a
	// named port the pod does not have.
	Notes []string
}

// Allows says whether a packet with peer address peer (the source for
// ingress, the destination for egress), protocol and destination port is
// allowed, and by which rules. A nil Direction (not isolated) allows
// everything. Port is ignored for protocols other than TCP, UDP and SCTP.
func (d *Direction) Allows(peer netip.Addr, proto Proto, port uint16) (bool, []Ref) {
	if d == nil {
		return true, nil
	}
	var by []Ref
	for i := range d.Rules {
		if d.Rules[i].matches(peer, proto, port) && !slices.Contains(by, d.Rules[i].Source) {
			by = append(by, d.Rules[i].Source)
		}
	}
	return len(by) > 0, by
}

// PodRules is what policy makes of one pod.
type PodRules struct {
	Namespace, Name string
	Addrs           []netip.Addr // the pod's IPs, IPv6 first
	// Ingress and Egress are nil when no policy isolates the pod in that
	// direction: everything is allowed.
	Ingress, Egress *Direction
}

// Key is "namespace/name".
func (p *PodRules) Key() string { return p.Namespace + "/" + p.Name }

// Skipped is a pod policy ignores, with the reason: it is neither
// selected nor a peer.
type Skipped struct {
	Pod, Reason string
}

// Result is the compiled state: every pod policy applies to, isolated or
// not, sorted by namespace and name.
type Result struct {
	Pods    []PodRules
	Skipped []Skipped
	// Owners names the pod ("ns/name") of every address that takes part,
	// for explanations, including pods not in Pods (netpol.CompileFor).
	Owners map[netip.Addr]string `json:"-"`
}

// Pod finds a pod by namespace and name.
func (r *Result) Pod(namespace, name string) (*PodRules, bool) {
	key := namespace + "/" + name
	i, ok := slices.BinarySearchFunc(r.Pods, key, func(p PodRules, k string) int { return strings.Compare(p.Key(), k) })
	if !ok {
		return nil, false
	}
	return &r.Pods[i], true
}

// MergePorts sorts port ranges by protocol and start and merges those
// that overlap or touch.
func MergePorts(ports []PortRange) []PortRange {
	if len(ports) == 0 {
		return nil
	}
	in := slices.Clone(ports)
	slices.SortFunc(in, func(a, b PortRange) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.From) - int(b.From)
	})
	out := in[:1]
	for _, r := range in[1:] {
		last := &out[len(out)-1]
		if r.Proto == last.Proto && int(r.From) <= int(last.To)+1 {
			last.To = max(last.To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}
