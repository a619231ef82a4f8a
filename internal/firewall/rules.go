// Package firewall renders duet's nftables tables: the per-pod protections
// (router-advertisement and DHCP-server guard, source address and MAC
// checks) and egress masquerading decided per pool.
//
// Static rules live in chains and never mention a pod; what changes per
// pod is set elements, so ADD and DEL are one small transaction each and
// the per-packet cost does not grow with the number of pods (one hash
// lookup per check). Everything here is pure: it fills knftables
// transactions, which tests dump and compare without root, and which
// Apply hands to nft in a single atomic `nft -f`.
//
// Two tables, one per family of hook:
//
//	table inet duet    routed pods' traffic (prerouting), NAT (postrouting)
//	table bridge duet  bridge-mode pods' frames, including ARP, before the
//	                   bridge forwards them to another pod or up to the host
package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"sigs.k8s.io/knftables"
)

// Table is the name of both of duet's tables.
const Table = "duet"

// Group is the interface group of every protected pod's host interface
// (podnet.Spec.Group): the prerouting hooks send what comes in from it
// through the pod checks. A property of the interface, not an element of
// a set, it is there from the interface's first packet to its last: a
// DEL can remove the pod's elements while the interface goes, and its
// traffic meanwhile fails closed (no MAC element, dropped), where a
// "pods" set of names would let it through unchecked once its element
// went. 0xd0e7 is the project's tag, as in the lab's fd00:d0e7::/32.
const Group uint32 = 0xd0e7

// Set names, shared by both tables where they apply.
const (
	setMACs = "pod_macs" // ifname . ether_addr
	// setAddrs6 and setAddrs4 hold a pod's own addresses (and its IPv6
	// link-local address) in a hash; setPrefixes6 and setPrefixes4 its
	// allowedSourcePrefixes, in an interval set. Every packet from a pod
	// is looked up in the hash, and only a source not found there in the
	// interval set: an interval lookup keyed by ifname . address (nft's
	// pipapo) cost single-flow throughput about 10 % in the lab, against
	// nothing measurable for the hash.
	setAddrs6    = "pod_addrs6"    // ifname . ipv6_addr
	setAddrs4    = "pod_addrs4"    // ifname . ipv4_addr
	setPrefixes6 = "pod_prefixes6" // ifname . ipv6_addr, interval
	setPrefixes4 = "pod_prefixes4"
	// setNDTargets holds the targets a pod may advertise in a neighbour
	// advertisement (its IPv6 sources), keyed like the others. nft 1.0.6
	// has no "icmpv6 taddr", so the target is matched as the 128 bits at
	// offset 64 of the ICMPv6 header, and elements are written in hex.
	setNDTargets = "pod_nd_targets"
	setPools6    = "pools6" // every IPv6 pool: never NAT towards them
	setPools4    = "pools4"
	setNAT6      = "nat6" // IPv6 pools with natOutgoing
	setNAT4      = "nat4"
	// setPodPools6 and setPodPools4 say which pools each pod's network
	// has (ifname . pool prefix): a pool's elements in pools6, nat6 and
	// the marker set go when the last pod whose network has it goes.
	setPodPools6 = "pod_pools6"
	setPodPools4 = "pod_pools4"
	// setPeers6 and setPeers4 are duetd's: the pod ranges of every node
	// (Kubernetes mode), never masqueraded towards either. They are apart
	// from pools6 so that each writer owns its set whole: duetd replaces
	// its own, and the plugin's pruning never removes duetd's.
	setPeers6 = "peer_pools6"
	setPeers4 = "peer_pools4"
)

// podSets are the sets keyed by a pod's host interface in the pod's own
// table; podPoolSets those in table inet duet. DEL and GC remove every
// element of theirs whose key starts with the interface's name.
var (
	podSets     = []string{setMACs, setAddrs6, setAddrs4, setPrefixes6, setPrefixes4, setNDTargets}
	podPoolSets = []string{setPodPools6, setPodPools4}
)

const (
	chainFromPod = "from-pod"
	chainICMPv6  = "from-pod-icmpv6"
	chainUDP     = "from-pod-udp"
)

// rule is a static rule; the comment identifies it when the table is read
// back, since nft prints rules in its own canonical form.
type rule struct{ expr, comment string }

// guardRules are the checks every frame or packet from a pod passes, in
// either table. The order matters: the MAC check comes first; then RA,
// redirect and DHCP-server drops, before the source checks, so a pod
// cannot send them even from its own address; DAD's unspecified source is
// allowed before the address check. The ICMPv6 and UDP guards sit in
// chains of their own behind one verdict-map lookup, so the bulk of
// traffic (TCP) passes four rules instead of seven: every rule costs on
// every packet, and the full list cost single-flow IPv6 throughput about
// 9 % against an empty chain in the lab.
var guardRules = []rule{
	{"iifname . ether saddr != @" + setMACs + " counter drop", "duet: source MAC is not the pod's"},
	{"meta l4proto vmap { icmpv6 : jump " + chainICMPv6 + " , udp : jump " + chainUDP + " }", "duet: ICMPv6 and UDP guards"},
}

var icmpv6Rules = []rule{
	{"icmpv6 type { nd-router-advert, nd-redirect } counter drop", "duet: RA guard"},
	{"icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @" + setNDTargets + " counter drop", "duet: neighbour advertisement for an address that is not the pod's"},
	{"ip6 saddr :: icmpv6 type nd-neighbor-solicit accept", "duet: DAD"},
}

var udpRules = []rule{
	{"udp sport { 67, 547 } counter drop", "duet: DHCP server guard"},
}

// inetRules and bridgeRules add the source checks: the family expression
// differs (nfproto in inet, ether type in bridge), and only the bridge
// table sees ARP.
//
// A source check is one rule of two lookups: nft stops at the first
// expression that does not match, so a source found in the hash of the
// pod's own addresses never reaches the interval set of its allowed
// prefixes.
var inetRules = append(append([]rule{}, guardRules...),
	rule{"meta nfproto ipv6 iifname . ip6 saddr != @" + setAddrs6 + " iifname . ip6 saddr != @" + setPrefixes6 + " counter drop", "duet: IPv6 source is not the pod's"},
	rule{"meta nfproto ipv4 iifname . ip saddr != @" + setAddrs4 + " iifname . ip saddr != @" + setPrefixes4 + " counter drop", "duet: IPv4 source is not the pod's"},
)

var bridgeRules = append(append([]rule{}, guardRules...),
	rule{"ether type ip6 iifname . ip6 saddr != @" + setAddrs6 + " iifname . ip6 saddr != @" + setPrefixes6 + " counter drop", "duet: IPv6 source is not the pod's"},
	rule{"ether type ip iifname . ip saddr != @" + setAddrs4 + " iifname . ip saddr != @" + setPrefixes4 + " counter drop", "duet: IPv4 source is not the pod's"},
	rule{"ether type arp iifname . arp saddr ether != @" + setMACs + " counter drop", "duet: ARP sender MAC is not the pod's"},
	rule{"ether type arp arp saddr ip 0.0.0.0 accept", "duet: ARP probe"},
	rule{"ether type arp iifname . arp saddr ip != @" + setAddrs4 + " iifname . arp saddr ip != @" + setPrefixes4 + " counter drop", "duet: ARP for an address that is not the pod's"},
	rule{"ether type != { ip, ip6, arp } counter drop", "duet: only IP and ARP from pods"},
)

// natRules masquerade what leaves a natOutgoing pool for a destination in
// no pool: pod-to-pod traffic, on this node or another, keeps its source.
var natRules = []rule{
	{"ip6 saddr @" + setNAT6 + " ip6 daddr != @" + setPools6 + " ip6 daddr != @" + setPeers6 + " masquerade", "duet: natOutgoing (IPv6)"},
	{"ip saddr @" + setNAT4 + " ip daddr != @" + setPools4 + " ip daddr != @" + setPeers4 + " masquerade", "duet: natOutgoing (IPv4)"},
}

func sets(fam knftables.Family) []*knftables.Set {
	interval := []knftables.SetFlag{knftables.IntervalFlag}
	s := []*knftables.Set{
		{Name: setMACs, Type: "ifname . ether_addr"},
		{Name: setAddrs6, Type: "ifname . ipv6_addr"},
		{Name: setAddrs4, Type: "ifname . ipv4_addr"},
		{Name: setPrefixes6, Type: "ifname . ipv6_addr", Flags: interval},
		{Name: setPrefixes4, Type: "ifname . ipv4_addr", Flags: interval},
		{Name: setNDTargets, TypeOf: "iifname . @th,64,128", Flags: interval},
	}
	if fam == knftables.InetFamily {
		s = append(s,
			&knftables.Set{Name: setPools6, Type: "ipv6_addr", Flags: interval},
			&knftables.Set{Name: setPools4, Type: "ipv4_addr", Flags: interval},
			&knftables.Set{Name: setNAT6, Type: "ipv6_addr", Flags: interval},
			&knftables.Set{Name: setNAT4, Type: "ipv4_addr", Flags: interval},
			&knftables.Set{Name: setPodPools6, Type: "ifname . ipv6_addr", Flags: interval},
			&knftables.Set{Name: setPodPools4, Type: "ifname . ipv4_addr", Flags: interval},
			&knftables.Set{Name: setPeers6, Type: "ipv6_addr", Flags: interval},
			&knftables.Set{Name: setPeers4, Type: "ipv4_addr", Flags: interval},
		)
	}
	for _, x := range s {
		x.Family, x.Table = fam, Table
	}
	return s
}

// ensureTable adds fam's table, sets and chains, and rewrites its static
// rules. Adding what exists is a no-op and the rules are flushed first, so
// this is safe to run in every transaction: it also repairs a table that
// someone edited by hand.
func ensureTable(tx *knftables.Transaction, fam knftables.Family) {
	tx.Add(&knftables.Table{Family: fam, Name: Table})
	for _, s := range sets(fam) {
		tx.Add(s)
	}
	// The marker says which static rules the table holds; see markerSet.
	tx.Add(&knftables.Set{Family: fam, Table: Table, Name: markerSet(), Type: "ifname"})
	rules := bridgeRules
	hookPrio := knftables.BaseChainPriority("-300") // before conntrack, like raw
	if fam == knftables.InetFamily {
		rules, hookPrio = inetRules, knftables.RawPriority
	}
	chains := map[string][]rule{chainFromPod: rules, chainICMPv6: icmpv6Rules, chainUDP: udpRules}
	icmp := &knftables.Chain{Family: fam, Table: Table, Name: chainICMPv6}
	udp := &knftables.Chain{Family: fam, Table: Table, Name: chainUDP}
	from := &knftables.Chain{Family: fam, Table: Table, Name: chainFromPod}
	pre := &knftables.Chain{Family: fam, Table: Table, Name: "prerouting",
		Type: knftables.PtrTo(knftables.FilterType), Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(hookPrio)}
	chains["prerouting"] = []rule{{fmt.Sprintf("iifgroup %d jump %s", Group, chainFromPod), "duet: pods"}}
	list := []*knftables.Chain{icmp, udp, from, pre} // jump targets first
	if fam == knftables.InetFamily {
		nat := &knftables.Chain{Family: fam, Table: Table, Name: "postrouting",
			Type: knftables.PtrTo(knftables.NATType), Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)}
		list = append(list, nat)
		chains["postrouting"] = natRules
	}
	for _, c := range list {
		tx.Add(c)
		tx.Flush(c)
		for _, r := range chains[c.Name] {
			tx.Add(&knftables.Rule{Family: fam, Table: Table, Chain: c.Name, Rule: r.expr, Comment: knftables.PtrTo(r.comment)})
		}
	}
}

// rulesVersion is a hash of every static rule, so a table written by
// another version of duet is told apart from a current one.
var rulesVersion = func() string {
	h := sha256.New()
	for _, rs := range [][]rule{inetRules, bridgeRules, icmpv6Rules, udpRules, natRules} {
		for _, r := range rs {
			fmt.Fprintf(h, "%s|%s\n", r.expr, r.comment)
		}
	}
	for _, fam := range []knftables.Family{knftables.InetFamily, knftables.BridgeFamily} {
		for _, s := range sets(fam) {
			fmt.Fprintf(h, "%s %s %s %s %v\n", fam, s.Name, s.Type, s.TypeOf, s.Flags)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}()

// markerSet is an empty set named after rulesVersion. The fast path of
// ADD (elements only) touches it first: in a table without it (missing,
// or written by another version) the whole transaction fails, and the
// caller falls back to rewriting the table.
func markerSet() string { return "rules_" + rulesVersion }
