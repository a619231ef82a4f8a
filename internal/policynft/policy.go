// Package policynft compiles NetworkPolicy (policy.Result's per-pod rules)
// to table inet duet-policy and keeps the kernel's table in step, one
// atomic transaction per change. It is duetd's: it writes through
// knftables, which the CNI plugin, started once per container, does not
// link (see package firewall).
package policynft

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/policy"
)

// NetworkPolicy lives in a table of its own, so the plugin's table (and
// its fast path) never changes when a policy does:
//
//	table inet duet-policy
//	  chain forward            hook forward: after kube-proxy's DNAT
//	                           (prerouting), before masquerade (postrouting)
//	    ct state established,related accept
//	    meta l4proto icmpv6 jump nd-mld      ND and MLD pass, RA drops
//	    ip6 saddr vmap @egress6                 jump out-<pod>: return or drop
//	    ip saddr vmap @egress4
//	    ip6 daddr vmap @ingress6                goto in-<pod>: accept or drop
//	    ip daddr vmap @ingress4
//	  chain in-<id>-<ns/name>  one per isolated pod and direction
//	    ct state invalid drop
//	    ip6 saddr @<chain>-all6 accept          peers allowed all traffic
//	    ip saddr @<chain>-all4 accept
//	    ip6 saddr . meta l4proto . th dport @<chain>-ports6 accept
//	    ip saddr . meta l4proto . th dport @<chain>-ports4 accept
//	    counter drop
//
// A packet costs one verdict-map lookup per direction and at most four
// set lookups, however many policies, rules and peers there are: every
// policy selecting a pod is merged (policy.Flatten) into the same four
// sets. Chains hold static rules only; what changes is set and map
// elements. Egress chains return rather than accept, so pod-to-pod
// traffic on one node passes the sender's egress and then the receiver's
// ingress.
//
// Traffic the node itself originates (kubelet probes, host processes)
// reaches local pods through output, not forward, and so is never
// policed, as Kubernetes requires; the pods' answers go to input, also
// untouched. Pass SyncPolicy this node's pods only: remote pods are
// policed on their own nodes.
const Table = "duet-policy"

const (
	polForward  = "forward"
	polICMPv6   = "nd-mld"   // not "icmpv6": a keyword, which nft refuses as a chain name
	polIngress6 = "ingress6" // pod IPv6 address : goto its ingress chain
	polIngress4 = "ingress4"
	polEgress6  = "egress6" // pod IPv6 address : jump its egress chain
	polEgress4  = "egress4"
)

// rule is a static rule; its comment identifies it when the table is read
// back, since nft prints rules in its own canonical form.
type rule struct{ expr, comment string }

var polForwardRules = []rule{
	{"ct state established,related accept", "duet-policy: replies and related traffic"},
	{"meta l4proto icmpv6 jump " + polICMPv6, "duet-policy: neighbour discovery and MLD"},
	{"ip6 saddr vmap @" + polEgress6, "duet-policy: egress of isolated pods (IPv6)"},
	{"ip saddr vmap @" + polEgress4, "duet-policy: egress of isolated pods (IPv4)"},
	{"ip6 daddr vmap @" + polIngress6, "duet-policy: ingress of isolated pods (IPv6)"},
	{"ip daddr vmap @" + polIngress4, "duet-policy: ingress of isolated pods (IPv4)"},
}

// polICMPv6Rules: neighbour discovery and MLD are never policed (conntrack
// does not track them, so they would otherwise reach "ct state invalid
// drop"); a router advertisement or redirect is never forwarded
// legitimately, so one crossing the forward hook (a bridged pod's, with
// br_netfilter) is dropped. Other ICMPv6 (echo) goes on to the policy.
var polICMPv6Rules = []rule{
	{"icmpv6 type { nd-router-advert, nd-redirect } counter drop", "duet-policy: pods are not routers"},
	{"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept",
		"duet-policy: neighbour discovery and MLD always pass"},
}

// polPodRules are the static rules of one pod chain: peers are sources
// for ingress, destinations for egress.
func polPodRules(dir policy.Dir, chain string) []rule {
	field, verdict := "saddr", "accept"
	if dir == policy.Egress {
		field, verdict = "daddr", "return"
	}
	return []rule{
		{"ct state invalid drop", "duet-policy: invalid"},
		{fmt.Sprintf("ip6 %s @%s %s", field, chain+"-all6", verdict), "duet-policy: all traffic (IPv6)"},
		{fmt.Sprintf("ip %s @%s %s", field, chain+"-all4", verdict), "duet-policy: all traffic (IPv4)"},
		{fmt.Sprintf("ip6 %s . meta l4proto . th dport @%s %s", field, chain+"-ports6", verdict), "duet-policy: ports (IPv6)"},
		{fmt.Sprintf("ip %s . meta l4proto . th dport @%s %s", field, chain+"-ports4", verdict), "duet-policy: ports (IPv4)"},
		{"counter drop", "duet-policy: not allowed"},
	}
}

// polSetTypes are the four sets of a pod chain, by suffix.
var polSetTypes = map[string]string{
	"-all6":   "ipv6_addr",
	"-all4":   "ipv4_addr",
	"-ports6": "ipv6_addr . inet_proto . inet_service",
	"-ports4": "ipv4_addr . inet_proto . inet_service",
}

// polState is everything in the table that depends on pods: pure data,
// rendered from the policy result and compared between syncs.
type polState struct {
	chains map[string]string              // pod chain name -> comment
	dirs   map[string]policy.Dir          // pod chain name -> direction
	sets   map[string]map[string][]string // set name -> element key -> key parts
	maps   map[string]map[string]string   // map name -> address -> verdict
}

func newPolState() *polState {
	st := &polState{chains: map[string]string{}, dirs: map[string]policy.Dir{}, sets: map[string]map[string][]string{}, maps: map[string]map[string]string{}}
	for _, m := range []string{polIngress6, polIngress4, polEgress6, polEgress4} {
		st.maps[m] = map[string]string{}
	}
	return st
}

// renderPolicy turns the pods' rules into table contents. Pods that no
// policy isolates get nothing. Should two pods claim one address (a
// stale object, briefly), the first by namespace and name keeps it.
func renderPolicy(pods []policy.PodRules) *polState {
	st := newPolState()
	sorted := slices.Clone(pods)
	slices.SortFunc(sorted, func(a, b policy.PodRules) int { return strings.Compare(a.Key(), b.Key()) })
	for i := range sorted {
		p := &sorted[i]
		for _, x := range []struct {
			dir    policy.Dir
			d      *policy.Direction
			m6, m4 string
			verb   string
		}{{policy.Ingress, p.Ingress, polIngress6, polIngress4, "goto"}, {policy.Egress, p.Egress, polEgress6, polEgress4, "jump"}} {
			if x.d == nil {
				continue
			}
			chain := polChainName(x.dir, p.Key())
			st.chains[chain] = p.Key() + " " + x.dir.String()
			st.dirs[chain] = x.dir
			for suffix := range polSetTypes {
				st.sets[chain+suffix] = map[string][]string{}
			}
			f := x.d.Flatten()
			for _, pr := range f.All {
				st.add(chain+"-all"+fam(pr), pr.String())
			}
			// A pod may always reach itself, as Kubernetes' own suite
			// expects (its reachability model allows loopback): through
			// its Service, kube-proxy's DNAT sends the packet back to the
			// pod with the pod's own source (masquerade comes later, in
			// postrouting), so without this a pod isolated for ingress
			// would be refused by itself. The set is an interval set, so
			// an address already inside one of f.All's prefixes would
			// overlap; those are skipped.
			for _, a := range p.Addrs {
				if !slices.ContainsFunc(f.All, func(pr netip.Prefix) bool { return pr.Contains(a) }) {
					pr := netip.PrefixFrom(a, a.BitLen())
					st.add(chain+"-all"+fam(pr), pr.String())
				}
			}
			for _, g := range f.ByPort {
				ports := fmt.Sprintf("%d-%d", g.Ports.From, g.Ports.To)
				if g.Ports.From == g.Ports.To {
					ports = fmt.Sprint(g.Ports.From)
				}
				for _, pr := range g.Peers {
					st.add(chain+"-ports"+fam(pr), pr.String(), g.Ports.Proto.String(), ports)
				}
			}
			for _, a := range p.Addrs {
				m := x.m4
				if a.Is6() {
					m = x.m6
				}
				if _, taken := st.maps[m][a.String()]; !taken {
					st.maps[m][a.String()] = x.verb + " " + chain
				}
			}
		}
	}
	return st
}

func (st *polState) add(set string, key ...string) {
	st.sets[set][strings.Join(key, " . ")] = key
}

func fam(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "4"
	}
	return "6"
}

// polChainName names a pod's chain for one direction: a hash of the pod's
// namespace and name, so names are unique and stable, then the name
// itself for people reading `nft list table inet duet-policy`.
func polChainName(dir policy.Dir, key string) string {
	h := sha256.Sum256([]byte(key))
	id := base32.StdEncoding.EncodeToString(h[:])[:8]
	human := []byte(key)
	for i, c := range human {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '/' || c == '_') {
			human[i] = '_'
		}
	}
	if len(human) > 64 {
		human = human[:64]
	}
	prefix := "in-"
	if dir == policy.Egress {
		prefix = "out-"
	}
	return prefix + id + "-" + string(human)
}

// polBase adds the table's maps and its static chains and rules. The
// caller has added the table and flushed every chain that exists, so
// rules are not doubled.
func polBase(tx *knftables.Transaction) {
	for _, m := range []struct{ name, typ string }{
		{polIngress6, "ipv6_addr : verdict"}, {polIngress4, "ipv4_addr : verdict"},
		{polEgress6, "ipv6_addr : verdict"}, {polEgress4, "ipv4_addr : verdict"},
	} {
		tx.Add(&knftables.Map{Name: m.name, Type: m.typ})
	}
	tx.Add(&knftables.Chain{Name: polICMPv6})
	for _, r := range polICMPv6Rules {
		tx.Add(&knftables.Rule{Chain: polICMPv6, Rule: r.expr, Comment: knftables.PtrTo(r.comment)})
	}
	tx.Add(&knftables.Chain{Name: polForward, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
	for _, r := range polForwardRules {
		tx.Add(&knftables.Rule{Chain: polForward, Rule: r.expr, Comment: knftables.PtrTo(r.comment)})
	}
}

// addPodChain adds a pod chain, its sets and its static rules (the
// chain must be new or flushed).
func addPodChain(tx *knftables.Transaction, name, comment string, dir policy.Dir) {
	for _, suffix := range sortedKeys(polSetTypes) {
		tx.Add(&knftables.Set{Name: name + suffix, Type: polSetTypes[suffix], Flags: []knftables.SetFlag{knftables.IntervalFlag}})
	}
	tx.Add(&knftables.Chain{Name: name, Comment: knftables.PtrTo(comment)})
	for _, r := range polPodRules(dir, name) {
		tx.Add(&knftables.Rule{Chain: name, Rule: r.expr, Comment: knftables.PtrTo(r.comment)})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
