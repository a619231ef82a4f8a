package podnet

import (
	"net"
	"net/netip"

	"github.com/duetnet/duet/internal/kernel"
)

// Desired is the kernel state of one pod interface, as Plan computes it
// from a Spec: what Setup makes and Check verifies.
type Desired struct {
	Mode  Mode
	NetNS string
	// RuntimeMoves: the pod end is only made here (Spec.RuntimeMoves).
	RuntimeMoves bool
	// Pod is the veth end inside the pod's namespace.
	Pod Iface
	// Host is the veth end in the host namespace.
	Host Iface
	// Bridge is the bridge the host end plugs into; nil in routed mode.
	Bridge *Iface
	// Routes are the pod's default routes, IPv6 first, for the CNI result;
	// Gateways are their next hops.
	Routes   []Route
	Gateways []netip.Addr
}

// Iface is the desired state of one interface. Lists apply in order.
type Iface struct {
	Name string
	// MAC is the pod end's address when the Spec sets one; nil leaves it to
	// Setup.
	MAC net.HardwareAddr
	MTU int
	// Master is the bridge a bridge-mode host end is plugged into, with
	// hairpin on so a pod can reach itself through a service address.
	Master string
	// Group is the interface group the host end is created in (0: none).
	Group uint32
	// Sysctls are set before the link goes up, so that no IPv6 address is
	// ever tentative and no router advertisement is ever taken.
	Sysctls []kernel.Sysctl
	// Addrs are added without DAD.
	Addrs []netip.Prefix
	// LinkLocal asks for the EUI-64 link-local address of the interface's
	// MAC (fe80::/64), added without DAD. The sysctls turn off the kernel's
	// own, which would pass through a tentative state after link up.
	LinkLocal bool
	// Routes in the interface's namespace; a route to an on-link gateway
	// comes before the routes via it.
	Routes []kernel.Route
	// PeerNeighbours are pinned to the MAC of the veth's other end
	// (nud permanent), so the first packet to a gateway needs no ARP or ND
	// round trip.
	PeerNeighbours []netip.Addr
}

// Plan validates spec and computes the kernel state it describes, without
// touching the kernel. An empty Mode means Routed. Errors are *SpecError.
func Plan(spec Spec) (Desired, error) {
	if spec.Mode == "" {
		spec.Mode = Routed
	}
	if err := validate(spec); err != nil {
		return Desired{}, err
	}
	v4, v6 := splitFamilies(spec.Addresses)
	d := Desired{
		Mode:         spec.Mode,
		NetNS:        spec.NetNS,
		RuntimeMoves: spec.RuntimeMoves,
		Pod: Iface{
			Name:      spec.IfName,
			MAC:       spec.MAC,
			MTU:       spec.MTU,
			Sysctls:   hardening(spec.IfName, len(v6) > 0),
			Addrs:     append(v6, v4...),
			LinkLocal: len(v6) > 0,
		},
		Host: Iface{
			Name:    spec.HostIfName,
			MTU:     spec.MTU,
			Group:   spec.Group,
			Sysctls: hardening(spec.HostIfName, len(v6) > 0),
		},
	}
	gw4 := GatewayV4
	if spec.Mode == Bridge {
		// The bridge serves every pod of the network, so its families are
		// the pools', not just this pod's.
		_, gw6 := splitFamilies(spec.BridgeGateways)
		bridge6 := len(v6) > 0 || len(gw6) > 0
		d.Host.Master = spec.BridgeName
		d.Bridge = &Iface{
			Name:    spec.BridgeName,
			MTU:     spec.MTU,
			Sysctls: hardening(spec.BridgeName, bridge6),
		}
		if bridge6 {
			d.Bridge.Addrs = append(d.Bridge.Addrs, netip.PrefixFrom(GatewayV6, 64))
		}
		d.Bridge.Addrs = append(d.Bridge.Addrs, spec.BridgeGateways...)
		for _, g := range spec.BridgeGateways {
			if g.Addr().Is4() {
				gw4 = g.Addr()
				break
			}
		}
	}
	if len(v6) > 0 {
		d.Gateways = append(d.Gateways, GatewayV6)
	}
	if len(v4) > 0 {
		d.Gateways = append(d.Gateways, gw4)
	}
	for _, gw := range d.Gateways {
		d.Routes = append(d.Routes, Route{Dst: kernel.DefaultRoute(gw), GW: gw})
		if spec.Mode == Routed {
			d.Pod.PeerNeighbours = append(d.Pod.PeerNeighbours, gw)
			if gw.Is4() {
				// The IPv4 gateway is outside every pod prefix: make it on-link.
				d.Pod.Routes = append(d.Pod.Routes, kernel.Route{Dst: netip.PrefixFrom(gw, 32), Dev: spec.IfName})
			}
		}
		d.Pod.Routes = append(d.Pod.Routes, kernel.Route{Dst: kernel.DefaultRoute(gw), GW: gw, Dev: spec.IfName})
	}
	if spec.Mode == Routed {
		if len(v6) > 0 {
			d.Host.Addrs = []netip.Prefix{netip.PrefixFrom(GatewayV6, 64)}
		}
		if len(v4) > 0 && spec.RuntimeMoves {
			d.Host.Addrs = append(d.Host.Addrs, netip.PrefixFrom(GatewayV4, 32))
		}
		for _, p := range d.Pod.Addrs {
			// With the IPv4 gateway on the host end (RuntimeMoves), its
			// route must not make 169.254.1.1 the host's source.
			d.Host.Routes = append(d.Host.Routes, kernel.Route{Dst: p, Dev: spec.HostIfName, Universe: spec.RuntimeMoves && p.Addr().Is4()})
		}
	}
	if spec.RuntimeMoves {
		// The runtime configures the pod's side in its namespace.
		d.Pod.Sysctls, d.Pod.Addrs, d.Pod.LinkLocal, d.Pod.Routes, d.Pod.PeerNeighbours = nil, nil, false, nil, nil
	}
	return d, nil
}

// hardening is the IPv6 sysctls every interface duet makes or owns gets
// before it goes up: no DAD (duet's addresses are unique), no router
// advertisements or SLAAC from a pod, no kernel-made link-local (duet adds
// its own without DAD) and IPv6 on even if the namespace's default is off.
// Without IPv6 addresses they are best effort, for a kernel without IPv6.
func hardening(ifName string, ipv6 bool) []kernel.Sysctl {
	s := []kernel.Sysctl{
		{Name: kernel.IPv6Conf(ifName, "accept_dad"), Value: "0"},
		{Name: kernel.IPv6Conf(ifName, "accept_ra"), Value: "0"},
		{Name: kernel.IPv6Conf(ifName, "autoconf"), Value: "0"},
		{Name: kernel.IPv6Conf(ifName, "addr_gen_mode"), Value: "1"},
	}
	for i := range s {
		s[i].Optional = !ipv6
	}
	if ipv6 {
		s = append(s, kernel.Sysctl{Name: kernel.IPv6Conf(ifName, "disable_ipv6"), Value: "0"})
	}
	return s
}

// splitFamilies returns the IPv4 and IPv6 prefixes, each in spec order.
func splitFamilies(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// linkLocal is the EUI-64 link-local address of mac (RFC 4291 appendix A),
// the one the kernel would make with addr_gen_mode 0.
func linkLocal(mac net.HardwareAddr) netip.Prefix {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}
