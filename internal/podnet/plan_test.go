package podnet

import (
	"net"
	"net/netip"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	pfx   = netip.MustParsePrefix
	addr  = netip.MustParseAddr
	cmpIP = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
)

func sysctls(ifName string, optional bool) []kernel.Sysctl {
	s := []kernel.Sysctl{
		{Name: "net.ipv6.conf." + ifName + ".accept_dad", Value: "0", Optional: optional},
		{Name: "net.ipv6.conf." + ifName + ".accept_ra", Value: "0", Optional: optional},
		{Name: "net.ipv6.conf." + ifName + ".autoconf", Value: "0", Optional: optional},
		{Name: "net.ipv6.conf." + ifName + ".addr_gen_mode", Value: "1", Optional: optional},
	}
	if !optional {
		s = append(s, kernel.Sysctl{Name: "net.ipv6.conf." + ifName + ".disable_ipv6", Value: "0"})
	}
	return s
}

func routedSpec(addrs ...string) Spec {
	s := Spec{Mode: Routed, NetNS: "/var/run/netns/pod", IfName: "eth0", HostIfName: "duet1234", MTU: 1450}
	for _, a := range addrs {
		s.Addresses = append(s.Addresses, pfx(a))
	}
	return s
}

func bridgeSpec(addrs ...string) Spec {
	s := routedSpec(addrs...)
	s.Mode = Bridge
	s.BridgeName = "duet0"
	s.BridgeGateways = []netip.Prefix{pfx("fd00:dead:1::1/64"), pfx("10.250.1.1/24")}
	return s
}

func TestPlan(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x05}
	withMAC := routedSpec("10.250.0.5/32", "fd00:dead::5/128")
	withMAC.MAC = mac
	for _, tc := range []struct {
		name string
		spec Spec
		want Desired
	}{{
		name: "routed dual-stack, IPv4 listed first, IPv6 planned first",
		spec: withMAC,
		want: Desired{
			Mode: Routed, NetNS: "/var/run/netns/pod",
			Pod: Iface{
				Name: "eth0", MAC: mac, MTU: 1450, Sysctls: sysctls("eth0", false), LinkLocal: true,
				Addrs: []netip.Prefix{pfx("fd00:dead::5/128"), pfx("10.250.0.5/32")},
				Routes: []kernel.Route{
					{Dst: pfx("::/0"), GW: GatewayV6, Dev: "eth0"},
					{Dst: pfx("169.254.1.1/32"), Dev: "eth0"},
					{Dst: pfx("0.0.0.0/0"), GW: GatewayV4, Dev: "eth0"},
				},
				PeerNeighbours: []netip.Addr{GatewayV6, GatewayV4},
			},
			Host: Iface{
				Name: "duet1234", MTU: 1450, Sysctls: sysctls("duet1234", false),
				Addrs: []netip.Prefix{pfx("fe80::1/64")},
				Routes: []kernel.Route{
					{Dst: pfx("fd00:dead::5/128"), Dev: "duet1234"},
					{Dst: pfx("10.250.0.5/32"), Dev: "duet1234"},
				},
			},
			Routes:   []Route{{Dst: pfx("::/0"), GW: GatewayV6}, {Dst: pfx("0.0.0.0/0"), GW: GatewayV4}},
			Gateways: []netip.Addr{GatewayV6, GatewayV4},
		},
	}, {
		name: "routed IPv6-only",
		spec: routedSpec("fd00:dead::5/128"),
		want: Desired{
			Mode: Routed, NetNS: "/var/run/netns/pod",
			Pod: Iface{
				Name: "eth0", MTU: 1450, Sysctls: sysctls("eth0", false), LinkLocal: true,
				Addrs:          []netip.Prefix{pfx("fd00:dead::5/128")},
				Routes:         []kernel.Route{{Dst: pfx("::/0"), GW: GatewayV6, Dev: "eth0"}},
				PeerNeighbours: []netip.Addr{GatewayV6},
			},
			Host: Iface{
				Name: "duet1234", MTU: 1450, Sysctls: sysctls("duet1234", false),
				Addrs:  []netip.Prefix{pfx("fe80::1/64")},
				Routes: []kernel.Route{{Dst: pfx("fd00:dead::5/128"), Dev: "duet1234"}},
			},
			Routes:   []Route{{Dst: pfx("::/0"), GW: GatewayV6}},
			Gateways: []netip.Addr{GatewayV6},
		},
	}, {
		name: "routed IPv4-only: IPv6 hardening best effort, no IPv6 addresses",
		spec: Spec{NetNS: "/proc/1/ns/net", IfName: "eth0", HostIfName: "duet1234", MTU: 1500, Addresses: []netip.Prefix{pfx("10.250.0.5/32")}},
		want: Desired{
			Mode: Routed, NetNS: "/proc/1/ns/net",
			Pod: Iface{
				Name: "eth0", MTU: 1500, Sysctls: sysctls("eth0", true),
				Addrs: []netip.Prefix{pfx("10.250.0.5/32")},
				Routes: []kernel.Route{
					{Dst: pfx("169.254.1.1/32"), Dev: "eth0"},
					{Dst: pfx("0.0.0.0/0"), GW: GatewayV4, Dev: "eth0"},
				},
				PeerNeighbours: []netip.Addr{GatewayV4},
			},
			Host: Iface{
				Name: "duet1234", MTU: 1500, Sysctls: sysctls("duet1234", true),
				Routes: []kernel.Route{{Dst: pfx("10.250.0.5/32"), Dev: "duet1234"}},
			},
			Routes:   []Route{{Dst: pfx("0.0.0.0/0"), GW: GatewayV4}},
			Gateways: []netip.Addr{GatewayV4},
		},
	}, {
		name: "bridge dual-stack",
		spec: bridgeSpec("fd00:dead:1::5/64", "10.250.1.5/24"),
		want: Desired{
			Mode: Bridge, NetNS: "/var/run/netns/pod",
			Pod: Iface{
				Name: "eth0", MTU: 1450, Sysctls: sysctls("eth0", false), LinkLocal: true,
				Addrs: []netip.Prefix{pfx("fd00:dead:1::5/64"), pfx("10.250.1.5/24")},
				Routes: []kernel.Route{
					{Dst: pfx("::/0"), GW: GatewayV6, Dev: "eth0"},
					{Dst: pfx("0.0.0.0/0"), GW: addr("10.250.1.1"), Dev: "eth0"},
				},
			},
			Host: Iface{Name: "duet1234", MTU: 1450, Master: "duet0", Sysctls: sysctls("duet1234", false)},
			Bridge: &Iface{
				Name: "duet0", MTU: 1450, Sysctls: sysctls("duet0", false),
				Addrs: []netip.Prefix{pfx("fe80::1/64"), pfx("fd00:dead:1::1/64"), pfx("10.250.1.1/24")},
			},
			Routes:   []Route{{Dst: pfx("::/0"), GW: GatewayV6}, {Dst: pfx("0.0.0.0/0"), GW: addr("10.250.1.1")}},
			Gateways: []netip.Addr{GatewayV6, addr("10.250.1.1")},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Plan(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpIP); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanBridgeIPv4PodOnDualStackBridge: the bridge is hardened and gets
// fe80::1 for the network's IPv6 pool even when this pod has no IPv6.
func TestPlanBridgeIPv4PodOnDualStackBridge(t *testing.T) {
	d, err := Plan(bridgeSpec("10.250.1.5/24"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Bridge.Addrs[0] != pfx("fe80::1/64") || d.Bridge.Sysctls[0].Optional {
		t.Errorf("bridge %+v: want fe80::1/64 and mandatory IPv6 sysctls", d.Bridge)
	}
	if d.Pod.LinkLocal || !d.Pod.Sysctls[0].Optional || len(d.Gateways) != 1 {
		t.Errorf("pod %+v, gateways %v: want IPv4 only", d.Pod, d.Gateways)
	}
}
