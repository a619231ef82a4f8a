package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxPeersShown bounds the peer prefixes Explain prints per rule.
const maxPeersShown = 8

// Explain says, for people, what one pod may receive and send and which
// policy rule allows it, family by family (a pod whose rules are all IPv6
// sends and receives no IPv4): the text of `duetctl policy show POD`.
func (r *Result) Explain(namespace, name string) string {
	key := namespace + "/" + name
	p, ok := r.Pod(namespace, name)
	if !ok {
		for _, s := range r.Skipped {
			if s.Pod == key {
				return fmt.Sprintf("pod %s: not subject to NetworkPolicy: %s\n", key, s.Reason)
			}
		}
		return fmt.Sprintf("pod %s: unknown\n", key)
	}
	owner := r.Owners
	if owner == nil {
		owner = map[netip.Addr]string{}
		for _, q := range r.Pods {
			for _, a := range q.Addrs {
				owner[a] = q.Key()
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s: %s\n", key, joinAddrs(p.Addrs))
	explainDir(&b, Ingress, p.Ingress, owner)
	explainDir(&b, Egress, p.Egress, owner)
	return b.String()
}

func explainDir(b *strings.Builder, dir Dir, d *Direction, owner map[netip.Addr]string) {
	from, inOut := "from", "in"
	if dir == Egress {
		from, inOut = "to", "out"
	}
	if d == nil {
		fmt.Fprintf(b, "%s: not isolated (no policy selects the pod for %s): everything is allowed %s\n", dir, dir, inOut)
		return
	}
	fmt.Fprintf(b, "%s: isolated by %s\n", dir, strings.Join(d.Policies, ", "))
	if len(d.Rules) == 0 {
		fmt.Fprintf(b, "  no rule allows anything %s\n", inOut)
	}
	for _, rule := range d.Rules {
		peers := "any address"
		if !rule.AnyPeer {
			peers = strings.Join(rule.PeerText, "; ")
		}
		ports := "all traffic"
		if len(rule.Ports) > 0 {
			var s []string
			for _, pr := range rule.Ports {
				s = append(s, pr.String())
			}
			ports = strings.Join(s, ", ")
		}
		fmt.Fprintf(b, "  %s: %s %s: %s\n", rule.Source, from, peers, ports)
		if !rule.AnyPeer {
			fmt.Fprintf(b, "    %s\n", showPeers(rule.Peers, owner))
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	fmt.Fprintf(b, "  always: the pod's own addresses (a pod reaches itself, through its Service too), replies of allowed connections, neighbour discovery\n")
	for _, fam := range []struct {
		name string
		v6   bool
	}{{"IPv6", true}, {"IPv4", false}} {
		var by []string
		for _, rule := range d.Rules {
			if rule.AnyPeer || hasFamily(rule.Peers, fam.v6) {
				by = appendNew(by, rule.Source.String())
			}
		}
		if len(by) == 0 {
			fmt.Fprintf(b, "  %s: nothing is allowed %s\n", fam.name, inOut)
		} else {
			fmt.Fprintf(b, "  %s: allowed by %s\n", fam.name, strings.Join(by, ", "))
		}
	}
}

func showPeers(peers []netip.Prefix, owner map[netip.Addr]string) string {
	if len(peers) == 0 {
		return "no addresses"
	}
	var s []string
	for i, p := range peers {
		if i == maxPeersShown {
			s = append(s, fmt.Sprintf("and %d more", len(peers)-i))
			break
		}
		if p.IsSingleIP() {
			if o, ok := owner[p.Addr()]; ok {
				s = append(s, fmt.Sprintf("%s (%s)", p.Addr(), o))
				continue
			}
		}
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

func hasFamily(ps []netip.Prefix, v6 bool) bool {
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			return true
		}
	}
	return false
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
