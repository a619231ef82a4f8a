// Package firewall renders duet's nftables tables: the per-pod protections
// (router-advertisement and DHCP-server guard, source address and MAC
// checks) and egress masquerading decided per pool.
//
// Static rules live in chains and never mention a pod; what changes per
// pod is set elements, so ADD and DEL are one small transaction each and
// the per-packet cost does not grow with the number of pods (one hash
// lookup per check). Everything here is pure: it renders nft scripts,
// each one atomic `nft -f`, which tests run on knftables' fake and
// compare without root, and builds the netlink batches of the fast path.
// NetworkPolicy's table is package policynft's, apart, because it is
// duetd's alone and this package is linked into the CNI plugin.
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

func sets(fam Family) []object {
	set := func(name, typ string, interval bool) object {
		return object{kind: "set", fam: fam, name: name, setType: typ, interval: interval}
	}
	s := []object{
		set(setMACs, "ifname . ether_addr", false),
		set(setAddrs6, "ifname . ipv6_addr", false),
		set(setAddrs4, "ifname . ipv4_addr", false),
		set(setPrefixes6, "ifname . ipv6_addr", true),
		set(setPrefixes4, "ifname . ipv4_addr", true),
		{kind: "set", fam: fam, name: setNDTargets, typeOf: "iifname . @th,64,128", interval: true},
	}
	if fam == Inet {
		s = append(s,
			set(setPools6, "ipv6_addr", true),
			set(setPools4, "ipv4_addr", true),
			set(setNAT6, "ipv6_addr", true),
			set(setNAT4, "ipv4_addr", true),
			set(setPodPools6, "ifname . ipv6_addr", true),
			set(setPodPools4, "ifname . ipv4_addr", true),
			set(setPeers6, "ipv6_addr", true),
			set(setPeers4, "ipv4_addr", true),
		)
	}
	return s
}

// markerSetObj declares fam's marker set (see markerSet).
func markerSetObj(fam Family) object {
	return object{kind: "set", fam: fam, name: markerSet(), setType: "ifname"}
}

// Hook priorities: prerouting at raw's (-300), before conntrack, in both
// tables; masquerade at srcnat's (100).
const (
	priorityRaw    = -300
	prioritySrcNAT = 100
)

// ensureTable adds fam's table, sets and chains, and rewrites its static
// rules. Adding what exists is a no-op and the rules are flushed first, so
// this is safe to run in every transaction: it also repairs a table that
// someone edited by hand.
func ensureTable(t *tx, fam Family) {
	t.add(tableObj(fam))
	for _, s := range sets(fam) {
		t.add(s)
	}
	// The marker says which static rules the table holds; see markerSet.
	t.add(markerSetObj(fam))
	rules := bridgeRules
	if fam == Inet {
		rules = inetRules
	}
	chain := func(name string) object { return object{kind: "chain", fam: fam, name: name} }
	pre := chain("prerouting")
	pre.chainType, pre.hook, pre.priority = "filter", "prerouting", priorityRaw
	chains := map[string][]rule{chainFromPod: rules, chainICMPv6: icmpv6Rules, chainUDP: udpRules,
		"prerouting": {{fmt.Sprintf("iifgroup %d jump %s", Group, chainFromPod), "duet: pods"}}}
	list := []object{chain(chainICMPv6), chain(chainUDP), chain(chainFromPod), pre} // jump targets first
	if fam == Inet {
		nat := chain("postrouting")
		nat.chainType, nat.hook, nat.priority = "nat", "postrouting", prioritySrcNAT
		list = append(list, nat)
		chains["postrouting"] = natRules
	}
	for _, c := range list {
		t.add(c)
		t.flush(c)
		for _, r := range chains[c.name] {
			t.add(object{kind: "rule", fam: fam, name: c.name, rule: r})
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
	for _, fam := range []Family{Inet, Bridge} {
		for _, s := range sets(fam) {
			flags := "[]"
			if s.interval {
				flags = "[interval]"
			}
			fmt.Fprintf(h, "%s %s %s %s %s\n", fam, s.name, s.setType, s.typeOf, flags)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}()

// markerSet is an empty set named after rulesVersion. The fast path of
// ADD (elements only) touches it first: in a table without it (missing,
// or written by another version) the whole transaction fails, and the
// caller falls back to rewriting the table.
func markerSet() string { return "rules_" + rulesVersion }
