// Package policy compiles Kubernetes NetworkPolicy objects, with the pods
// and namespaces they select, into rule sets over netip types: for every
// pod, what it may receive (ingress) and send (egress), as peer prefixes
// and port ranges. It is pure: no client-go, no kernel; internal/kube feeds
// it the objects its informers hold and internal/firewall renders its
// answer into nftables.
//
// The semantics are upstream's (networking.k8s.io/v1), in both families
// at once. Addresses stay family-blind (one []netip.Prefix) and a peer of
// one family never matches traffic of the other: ipBlock 0.0.0.0/0 opens
// IPv4 only and ::/0 opens IPv6 only, so a pod with only one of them is
// still isolated in the other family.
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
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
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

func (r PortRange) contains(proto Proto, port uint16) bool {
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
	return len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pr PortRange) bool { return pr.contains(proto, port) })
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

// Problem is a part of a policy that cannot be rendered. The rule it is in
// allows nothing (the policy still isolates the pods it selects); a
// problem in the policy's own podSelector or policyTypes drops what cannot
// be read. Other policies apply unchanged.
type Problem struct {
	Policy string // "ns/name"
	Field  string // "spec.ingress[0].from[1].ipBlock.except[0]"
	Msg    string
}

func (p Problem) Error() string {
	return fmt.Sprintf("networkpolicy %s: %s: %s", p.Policy, p.Field, p.Msg)
}
