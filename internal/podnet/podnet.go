// Package podnet turns the desired network of one pod interface into kernel
// state: a veth pair, addresses without DAD, routes, static neighbours and
// per-interface sysctls, in routed (L3, Calico-like) or bridge (L2,
// Docker-like) mode.
//
// Plan is pure: it computes the desired objects from a Spec. Setup, Check
// and Teardown apply, verify and remove them through internal/kernel.
package podnet

import (
	"net"
	"net/netip"
)

// Mode is how a pod is attached to its host.
type Mode string

const (
	// Routed gives the pod /32 and /128 addresses and default routes via
	// link-local gateways (169.254.1.1, fe80::1) answered by the host end of
	// the veth; the host has one /32 or /128 route per pod address.
	Routed Mode = "routed"
	// Bridge plugs the host end of the veth into a Linux bridge that holds
	// the gateway addresses (fe80::1 and each pool's first address).
	Bridge Mode = "bridge"
)

// Link-local gateways used in routed mode (and fe80::1 in bridge mode too).
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// Spec is the desired network of one pod interface.
type Spec struct {
	Mode Mode
	// NetNS is the path of the pod's network namespace.
	NetNS string
	// IfName is the interface name inside the pod (CNI_IFNAME).
	IfName string
	// HostIfName is the name of the host end of the veth pair.
	HostIfName string
	// MAC, when set, is the pod interface's MAC address (IPAM's "mac"
	// assignment derives the IPv6 address from it).
	MAC net.HardwareAddr
	// MTU of both veth ends (and of the bridge when duet creates it).
	MTU int
	// Addresses of the pod interface. Routed mode: /32 and /128. Bridge
	// mode: the pool's prefix length, so other pods on the bridge are
	// on-link.
	Addresses []netip.Prefix
	// Group, when not 0, is the host end's interface group, given as the
	// veth is created: duet's protections match pods by it (see
	// firewall.Group), so a pod is checked from its interface's first
	// packet to its last, with no per-pod element to add or remove.
	Group uint32
	// RuntimeMoves is for a runtime that moves the pod's end into its
	// namespace itself and addresses it (Docker: its driver's Join comes
	// before the container's namespace exists). Setup then makes both
	// ends in the host namespace: the host end complete, and in routed
	// mode also holding the IPv4 gateway (the pod has no permanent
	// neighbour to find it by, so the host end answers its ARP); the pod
	// end, named IfName, has only its MAC and MTU, and is left in NetNS:
	// the runtime's own namespace, where it looks for it ("" is the host
	// namespace; a lab's node runs in a namespace of its own while the
	// one Docker Engine of the machine runs in the machine's).
	RuntimeMoves bool
	// BridgeName is the bridge to plug into (bridge mode only).
	BridgeName string
	// BridgeGateways are the addresses the bridge holds, with the pool's
	// prefix length (bridge mode only); fe80::1/64 is added when any
	// address is IPv6.
	BridgeGateways []netip.Prefix
}

// Route is a route inside the pod, as reported in the CNI result.
type Route struct {
	Dst netip.Prefix
	GW  netip.Addr // invalid for on-link routes
}

// Result is what Setup made, for the CNI result.
type Result struct {
	HostIfName string
	HostMAC    net.HardwareAddr
	PodIfName  string
	PodMAC     net.HardwareAddr
	// BridgeName and BridgeMAC name the bridge in bridge mode, for the
	// result's interface list; empty in routed mode.
	BridgeName string
	BridgeMAC  net.HardwareAddr
	// Gateways per address family of the pod's default routes.
	Gateways []netip.Addr
	Routes   []Route
}
