package doctor

import (
	"net/netip"
	"strings"
)

// HostFacts is what the live-host checks look at, gathered once (Gather)
// so that the checks are pure and can run on facts written by hand.
type HostFacts struct {
	// Sysctls by path under /proc/sys, e.g. "net/ipv6/conf/all/forwarding".
	Sysctls map[string]string `json:"sysctls"`
	Links   []Link            `json:"links"`
	Addrs   []Addr            `json:"addrs"`
	Routes  []Route           `json:"routes"`
	// ProxyNeighs are NDP proxy entries (ip -6 neigh show proxy).
	ProxyNeighs []ProxyNeigh `json:"proxyNeighs"`
	// Ruleset is `nft list ruleset`; IPTables is `iptables-save -t nat` and
	// IP6Tables `ip6tables-save -t nat` (legacy tables nft does not show).
	Ruleset   string `json:"ruleset"`
	IPTables  string `json:"iptables"`
	IP6Tables string `json:"ip6tables"`
	// FirewallErr says why no ruleset could be read (not root, no nft).
	FirewallErr string `json:"firewallErr,omitempty"`
	// Engine is the running Docker Engine's, when one answers.
	Engine *EngineFacts `json:"engine,omitempty"`
}

// Link is a network interface. Kind is the driver (veth, bridge, vxlan;
// empty for physical devices).
type Link struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
	MTU  int    `json:"mtu"`
	Up   bool   `json:"up"`
}

// Addr is an address on an interface, with its prefix length.
type Addr struct {
	Dev    string       `json:"dev"`
	Prefix netip.Prefix `json:"prefix"`
}

// Route is a main-table route. Protocol is iproute2's name ("kernel",
// "ra", "static", "boot", "bird", or a number); Type is "unicast" or
// "blackhole", "unreachable" ....
type Route struct {
	Dst      netip.Prefix `json:"dst"`
	Dev      string       `json:"dev,omitempty"`
	GW       netip.Addr   `json:"gw,omitzero"`
	Protocol string       `json:"protocol,omitempty"`
	Type     string       `json:"type,omitempty"`
}

// ProxyNeigh is an NDP proxy entry: the host answers neighbour
// solicitations for Addr on Dev.
type ProxyNeigh struct {
	Addr netip.Addr `json:"addr"`
	Dev  string     `json:"dev"`
}

// sysctl reads net/<ipv4|ipv6>/conf/<dev>/<key>; ok is false when absent.
func (h *HostFacts) sysctl(path string) (string, bool) {
	v, ok := h.Sysctls[path]
	return strings.TrimSpace(v), ok
}

func (h *HostFacts) on(path string) bool {
	v, _ := h.sysctl(path)
	return v == "1"
}

func (h *HostFacts) link(name string) (Link, bool) {
	for _, l := range h.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// uplinks are the devices of default routes, by family.
func (h *HostFacts) uplinks() map[string][]string {
	out := map[string][]string{}
	for _, r := range h.Routes {
		if r.Dst.Bits() == 0 && r.Dev != "" && isUnicast(r) {
			f := family(r.Dst.Addr())
			if !contains(out[f], r.Dev) {
				out[f] = append(out[f], r.Dev)
			}
		}
	}
	return out
}

func (h *HostFacts) isUplink(dev string) bool {
	for _, devs := range h.uplinks() {
		if contains(devs, dev) {
			return true
		}
	}
	return false
}

func isUnicast(r Route) bool { return r.Type == "" || r.Type == "unicast" }

// containerSide says whether a device leads to containers: a veth or a
// bridge that carries no default route.
func (h *HostFacts) containerSide(dev string) bool {
	l, ok := h.link(dev)
	return ok && (l.Kind == "veth" || l.Kind == "bridge") && !h.isUplink(dev)
}

// podPrefixes are the prefixes the host routes to containers: routes out
// of container-side devices (docker0's subnet, a pod's /128) and, when
// withBlackholes, the blackholed blocks of routed CNIs (duet, Calico).
func (h *HostFacts) podPrefixes(withBlackholes bool) []Route {
	var out []Route
	for _, r := range h.Routes {
		a := r.Dst.Addr()
		if r.Dst.Bits() == 0 || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback() {
			continue
		}
		if r.Type == "blackhole" && withBlackholes || isUnicast(r) && !r.GW.IsValid() && h.containerSide(r.Dev) {
			out = append(out, r)
		}
	}
	return out
}
