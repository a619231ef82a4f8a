package kernel

import (
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
)

// UplinkAddrs returns the global unicast addresses of the interfaces that
// carry a default route, IPv6 first: a node's underlay addresses when
// nobody says otherwise.
func UplinkAddrs() ([]netip.Addr, error) {
	host, err := HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	var out []netip.Addr
	seen := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V6, netlink.FAMILY_V4} {
		routes, err := host.h.RouteListFiltered(fam, &netlink.Route{}, 0)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if (r.Dst != nil && !isDefault(r.Dst.String())) || r.LinkIndex == 0 || seen[r.LinkIndex*10+fam] {
				continue
			}
			seen[r.LinkIndex*10+fam] = true
			link, err := host.h.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			as, err := host.h.AddrList(link, fam)
			if err != nil {
				continue
			}
			for _, a := range as {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() && !ip.Unmap().IsLinkLocalUnicast() {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Is6() && !out[j].Is6() })
	return out, nil
}

func isDefault(s string) bool { return s == "0.0.0.0/0" || s == "::/0" }
