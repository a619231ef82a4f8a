package kernel

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ProxyEntry makes the namespace answer neighbour solicitations (IPv6) or
// ARP requests (IPv4) for Addr on Dev: how a pod that took an address
// from the node's own uplink prefix becomes reachable from that link.
type ProxyEntry struct {
	Addr netip.Addr
	Dev  string
}

func (p ProxyEntry) String() string { return fmt.Sprintf("proxy %s dev %s", p.Addr, p.Dev) }

// OnLinkPrefix is a prefix that is on-link on an interface: the network
// of one of its addresses.
type OnLinkPrefix struct {
	Dev    string
	Prefix netip.Prefix
}

// OnLinkPrefixes lists the global on-link prefixes of the namespace's
// interfaces, except lo and duet's pod veths ("dt…") and VXLAN device:
// the links other hosts may look for pod addresses on. A duet bridge's
// prefixes are listed too; callers drop those inside a pool.
//
// One address dump serves every interface, and only the interfaces that
// hold a candidate prefix are looked up by index. Each address's header
// (family, prefix length, scope) is read before its attributes, and only
// a candidate is decoded: a node's pod veths hold IPv6 link-local
// addresses and IPv4 /32s, one or two per pod, so at 200 pods the dump is
// some 600 addresses, and decoding each (what netlink.AddrList does) took
// 1.1-1.4 ms a dump, against 0.5-0.9 ms now (2026-12-07, 2 busy CPUs).
func (n *NS) OnLinkPrefixes() ([]OnLinkPrefix, error) {
	var msgs [][]byte
	err := n.do(func() (err error) {
		msgs, err = retry(func() ([][]byte, error) {
			req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
			req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
			return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", n, err)
	}
	names := map[int]string{}
	var out []OnLinkPrefix
	for _, m := range msgs {
		if len(m) < unix.SizeofIfAddrmsg {
			continue
		}
		h := nl.DeserializeIfAddrmsg(m)
		// IPv6 link-local addresses have link scope; an IPv4 address of
		// link scope still makes its network on-link, so only its length
		// rules it out.
		if h.Scope == unix.RT_SCOPE_HOST || h.Family == unix.AF_INET6 && h.Scope == unix.RT_SCOPE_LINK ||
			h.Family == unix.AF_INET && h.Prefixlen == 32 || h.Family == unix.AF_INET6 && h.Prefixlen == 128 {
			continue
		}
		p, ok := addrPrefix(m[h.Len():], int(h.Prefixlen))
		if !ok || !p.Addr().IsGlobalUnicast() || p.Addr().IsLinkLocalUnicast() {
			continue // (single addresses went with the header)
		}
		idx := int(h.Index)
		name, seen := names[idx]
		if !seen {
			if l, err := n.h.LinkByIndex(idx); err == nil {
				name = l.Attrs().Name
			}
			names[idx] = name
		}
		if name == "" || name == "lo" || strings.HasPrefix(name, "dt") || name == VXLANDev {
			continue
		}
		out = append(out, OnLinkPrefix{Dev: name, Prefix: p})
	}
	return out, nil
}

// addrPrefix is the network of an address message's attributes: of its
// local address (IFA_LOCAL, IPv4), else of IFA_ADDRESS, as the kernel
// derives the on-link route.
func addrPrefix(attrs []byte, bits int) (netip.Prefix, bool) {
	as, err := nl.ParseRouteAttr(attrs)
	if err != nil {
		return netip.Prefix{}, false
	}
	var local, addr []byte
	for _, a := range as {
		switch a.Attr.Type {
		case unix.IFA_LOCAL:
			local = a.Value
		case unix.IFA_ADDRESS:
			addr = a.Value
		}
	}
	if local != nil {
		addr = local
	}
	ip, ok := netip.AddrFromSlice(addr)
	if !ok || bits > ip.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, bits).Masked(), true
}

// ProxyEntries lists the namespace's proxy neighbour entries, both
// families. Equivalent to: ip neigh show proxy; ip -6 neigh show proxy
func (n *NS) ProxyEntries() ([]ProxyEntry, error) {
	var out []ProxyEntry
	for _, fam := range []int{netlink.FAMILY_V6, netlink.FAMILY_V4} {
		ns, err := n.h.NeighProxyList(0, fam)
		if err != nil {
			return nil, fmt.Errorf("list proxy entries in %s: %w", n, err)
		}
		for _, nb := range ns {
			a, ok := netip.AddrFromSlice(nb.IP)
			if !ok {
				continue
			}
			l, err := n.h.LinkByIndex(nb.LinkIndex)
			if err != nil {
				continue
			}
			out = append(out, ProxyEntry{Addr: a.Unmap(), Dev: l.Attrs().Name})
		}
	}
	return out, nil
}

func (n *NS) proxyNeigh(p ProxyEntry) (*netlink.Neigh, error) {
	l, err := n.link(p.Dev)
	if err != nil {
		return nil, err
	}
	return &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family(p.Addr), Flags: netlink.NTF_PROXY, IP: p.Addr.AsSlice()}, nil
}

// AddProxyEntry adds p, and turns on proxy_ndp on its device for IPv6
// (IPv4 proxy entries need only forwarding). Adding one that exists is
// not an error.
// Equivalent to: sysctl net.ipv6.conf.DEV.proxy_ndp=1 net.ipv6.neigh.DEV.proxy_delay=0;
// ip -6 neigh replace proxy ADDR dev DEV
func (n *NS) AddProxyEntry(p ProxyEntry) ([]SysctlChange, error) {
	// proxy_delay: the kernel waits up to 0.8 s at random before a proxy
	// answer (meant for routers sharing a link); a pod's first packet
	// should not.
	want := []Sysctl{{Name: "net.ipv4.neigh." + p.Dev + ".proxy_delay", Value: "0"}}
	if p.Addr.Is6() {
		want = []Sysctl{{Name: IPv6Conf(p.Dev, "proxy_ndp"), Value: "1"}, {Name: "net.ipv6.neigh." + p.Dev + ".proxy_delay", Value: "0"}}
	}
	changes, err := n.SetSysctls(want)
	if err != nil {
		return nil, err
	}
	nb, err := n.proxyNeigh(p)
	if err != nil {
		return changes, err
	}
	if err := n.h.NeighSet(nb); err != nil {
		return changes, fmt.Errorf("add %s in %s: %w", p, n, err)
	}
	return changes, nil
}

// DelProxyEntry removes p; one already gone is not an error.
func (n *NS) DelProxyEntry(p ProxyEntry) error {
	nb, err := n.proxyNeigh(p)
	if err != nil {
		return nil // the device is gone, and its entries with it
	}
	if err := n.h.NeighDel(nb); err != nil && !errorsIs(err, unix.ENOENT, unix.ESRCH) {
		return fmt.Errorf("delete %s in %s: %w", p, n, err)
	}
	return nil
}
