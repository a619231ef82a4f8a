package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// CheckHost runs the live-host checks on gathered facts.
func CheckHost(h *HostFacts) []Finding {
	r := &reporter{layer: LayerHost}
	v6 := !h.on("net/ipv6/conf/all/disable_ipv6")
	checkDisableIPv6(r, h)
	checkForwarding(r, h, v6)
	ups := h.uplinks()
	for _, f := range []string{IPv6, IPv4} {
		if len(ups[f]) == 0 && (f == IPv4 || v6) {
			r.add("HOST004", 0, f, "there is no "+f+" default route",
				"containers' "+f+" traffic to anything beyond this host's own links has nowhere to go, however well the containers are set up",
				fmt.Sprintf("fix the host first (ping%s an outside address): add a default route (ip %sroute add default via <router>), or let the uplink accept router advertisements", map[string]string{IPv6: "6", IPv4: ""}[f], map[string]string{IPv6: "-6 ", IPv4: ""}[f]))
		}
	}
	checkNDPProxy(r, h)
	checkMasquerade(r, h)
	checkMTU(r, h, v6)
	checkEngine(r, h)
	Sort(r.out)
	return r.out
}

func checkDisableIPv6(r *reporter, h *HostFacts) {
	why := "IPv6 is off there, so neither the host nor its containers have IPv6 through it"
	fix := func(dev string) string {
		return fmt.Sprintf("sysctl -w net.ipv6.conf.%s.disable_ipv6=0, and remove the setting from /etc/sysctl.d and the kernel command line (ipv6.disable=1)", dev)
	}
	if h.on("net/ipv6/conf/all/disable_ipv6") {
		r.add("HOST001", 0, "net.ipv6.conf.all.disable_ipv6", "IPv6 is disabled on every interface (net.ipv6.conf.all.disable_ipv6=1)", why, fix("all"))
		return
	}
	if h.on("net/ipv6/conf/default/disable_ipv6") {
		r.add("HOST001", 0, "net.ipv6.conf.default.disable_ipv6", "IPv6 is disabled on new interfaces (net.ipv6.conf.default.disable_ipv6=1)",
			"every veth and bridge a container runtime creates starts without IPv6, so containers get no IPv6 path through the host", fix("default"))
	}
	for _, l := range h.Links {
		if (h.isUplink(l.Name) || h.containerSide(l.Name)) && h.on("net/ipv6/conf/"+l.Name+"/disable_ipv6") {
			r.add("HOST001", 0, "interface "+l.Name, fmt.Sprintf("IPv6 is disabled on %s", l.Name), why, fix(l.Name))
		}
	}
}

func checkForwarding(r *reporter, h *HostFacts, v6 bool) {
	if !h.on("net/ipv4/ip_forward") {
		r.add("HOST002", 0, "net.ipv4.ip_forward", "IPv4 forwarding is off (net.ipv4.ip_forward=0)",
			"the host does not route its containers' IPv4 packets: they reach the host and nothing beyond it",
			"sysctl -w net.ipv4.ip_forward=1, and make it permanent in /etc/sysctl.d")
	}
	if !v6 {
		return
	}
	if !h.on("net/ipv6/conf/all/forwarding") {
		r.add("HOST002", 0, "net.ipv6.conf.all.forwarding", "IPv6 forwarding is off (net.ipv6.conf.all.forwarding=0)",
			"the host does not route its containers' IPv6 packets: they reach the host and nothing beyond it",
			"first set accept_ra=2 on every uplink that takes its default route from router advertisements, then sysctl -w net.ipv6.conf.all.forwarding=1")
		return
	}
	for _, rt := range h.Routes {
		if rt.Dst.Bits() != 0 || !rt.Dst.Addr().Is6() || rt.Protocol != "ra" {
			continue
		}
		if v, _ := h.sysctl("net/ipv6/conf/" + rt.Dev + "/accept_ra"); v != "2" {
			r.add("HOST003", 0, "interface "+rt.Dev, fmt.Sprintf("IPv6 forwarding is on and the default route via %s came from a router advertisement, but %s has accept_ra=%s", rt.GW, rt.Dev, v),
				"a router ignores router advertisements unless accept_ra is 2: when the route's lifetime runs out the host loses its IPv6 default route, and every container with it (Docker's IPv6 documentation; moby#43466)",
				fmt.Sprintf("sysctl -w net.ipv6.conf.%s.accept_ra=2, and make it permanent", rt.Dev))
		}
	}
}

// onLink are the uplinks' on-link IPv6 prefixes (from their addresses).
func (h *HostFacts) onLink() []Addr {
	var out []Addr
	for _, a := range h.Addrs {
		p := a.Prefix.Masked()
		if p.Addr().Is6() && !p.Addr().IsLinkLocalUnicast() && p.Bits() < 128 && !h.containerSide(a.Dev) && a.Dev != "lo" {
			out = append(out, Addr{Dev: a.Dev, Prefix: p})
		}
	}
	return out
}

func checkNDPProxy(r *reporter, h *HostFacts) {
	for _, ol := range h.onLink() {
		var inside []netip.Prefix
		for _, rt := range h.podPrefixes(false) {
			if rt.Dst.Addr().Is6() && rt.Dst.Bits() >= ol.Prefix.Bits() && ol.Prefix.Contains(rt.Dst.Addr()) {
				inside = append(inside, rt.Dst)
			}
		}
		if len(inside) == 0 {
			continue
		}
		if !h.on("net/ipv6/conf/all/proxy_ndp") && !h.on("net/ipv6/conf/"+ol.Dev+"/proxy_ndp") {
			r.add("HOST005", 0, "interface "+ol.Dev, fmt.Sprintf("container addresses %s sit in %s, on-link on %s, but proxy_ndp is off there", joinPrefixes(inside), ol.Prefix, ol.Dev),
				"the router sends a neighbour solicitation for each container address straight onto the link; nobody there has it, so nobody answers and the containers are unreachable from outside (the NDP proxy scenario of Docker's IPv6 documentation)",
				fmt.Sprintf("sysctl -w net.ipv6.conf.%s.proxy_ndp=1 and add an entry per address (ip -6 neigh add proxy <address> dev %s), or run ndppd; duet does both by itself", ol.Dev, ol.Dev))
			continue
		}
		for _, p := range inside {
			found := false
			for _, pn := range h.ProxyNeighs {
				found = found || pn.Dev == ol.Dev && p.Contains(pn.Addr)
			}
			if !found {
				r.add("HOST006", 0, "interface "+ol.Dev, fmt.Sprintf("proxy_ndp is on for %s but no proxy entry covers %s", ol.Dev, p),
					"the kernel answers neighbour solicitations only for addresses with a proxy entry: this container is unreachable from the link",
					fmt.Sprintf("ip -6 neigh add proxy %s dev %s (one per address), or run ndppd", p.Addr(), ol.Dev))
			}
		}
	}
}

func checkMasquerade(r *reporter, h *HostFacts) {
	ups := h.uplinks()
	var need []netip.Prefix
	for _, rt := range h.podPrefixes(true) {
		if needsNAT(rt.Dst) && len(ups[family(rt.Dst.Addr())]) > 0 {
			need = append(need, rt.Dst)
		}
	}
	if len(need) == 0 {
		return
	}
	if h.FirewallErr != "" {
		r.add("HOST008", 0, "firewall", "the firewall ruleset could not be read: "+h.FirewallErr,
			"private container prefixes ("+joinPrefixes(need)+") need masquerade, which could not be checked", "run the doctor as root, with nft or iptables-save installed")
		return
	}
	rules := masqRules(h)
	sort.Slice(need, func(i, j int) bool { return need[i].Bits() < need[j].Bits() })
	var reported []netip.Prefix
	for _, p := range need {
		if covered(rules, p) || containedIn(reported, p) {
			continue
		}
		reported = append(reported, p)
		r.add("HOST007", 0, "prefix "+p.String(), fmt.Sprintf("container prefix %s has no masquerade rule", p),
			natText(p)+"; no nftables or iptables rule masquerades it, so containers reach the host and its links but nothing beyond",
			fmt.Sprintf("add masquerade for it (nft add rule inet nat postrouting %s saddr %s oifname <uplink> masquerade, or ip%stables -t nat -A POSTROUTING -s %s ! -o <bridge> -j MASQUERADE), set ip6tables: true for Docker, natOutgoing for Calico, or route the prefix to this host instead",
				map[bool]string{true: "ip6", false: "ip"}[p.Addr().Is6()], p, map[bool]string{true: "6", false: ""}[p.Addr().Is6()], p))
	}
}

func containedIn(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func checkMTU(r *reporter, h *HostFacts, v6 bool) {
	upMTU := 0
	for _, devs := range h.uplinks() {
		for _, d := range devs {
			if l, ok := h.link(d); ok && (upMTU == 0 || l.MTU < upMTU) {
				upMTU = l.MTU
			}
		}
	}
	for _, l := range h.Links {
		side := h.containerSide(l.Name)
		if v6 && l.MTU > 0 && l.MTU < 1280 && (side || h.isUplink(l.Name)) && !h.on("net/ipv6/conf/"+l.Name+"/disable_ipv6") {
			r.add("HOST009", 0, "interface "+l.Name, fmt.Sprintf("%s has MTU %d, below IPv6's minimum of 1280", l.Name, l.MTU),
				"the kernel removes IPv6 from an interface whose MTU is below 1280: everything behind it is IPv4-only",
				fmt.Sprintf("ip link set %s mtu 1280 (or more); for tunnels, raise the underlay's MTU instead", l.Name))
		}
		if side && upMTU > 0 && l.MTU > upMTU && !strings.HasPrefix(l.Name, "lo") {
			r.add("HOST010", 0, "interface "+l.Name, fmt.Sprintf("%s has MTU %d but the uplink has %d", l.Name, l.MTU, upMTU),
				"containers send packets the uplink cannot carry; IPv6 routers never fragment, so large packets depend on Packet Too Big messages that firewalls often drop, and connections stall after the handshake",
				fmt.Sprintf("ip link set %s mtu %d, and set the CNI or Docker MTU (\"mtu\" in daemon.json or the conflist) to match", l.Name, upMTU))
		}
	}
}
