// Package kubelab builds duet's kube lab: a real Kubernetes cluster, from
// upstream binaries, in network namespaces on one machine, whose CNI is
// duet installed from deploy/duet.yaml. It reuses the lab's switched
// underlay and outside namespace; the store namespace becomes the control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler),
// and each node namespace runs its own containerd, kubelet and kube-proxy.
//
// Every process enters its namespace with `nsenter --net` only, so the
// kubelet, containerd and runc share the host's mount namespace (volumes,
// /run/netns/cni-*), as they would on one real host each. What one host
// would own alone (CNI config dir, duet's bolt file, sockets, kubelet and
// containerd state, cgroups) is per node under the lab's data directory.
//
// The plan (addresses, ranges, flags, configs) is pure and tested without
// root; up.go and down.go run the processes.
package kubelab

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/duetnet/duet/internal/lab"
)

// Options are `lab up --kubernetes`'s flags.
type Options struct {
	Nodes     int    `json:"nodes"`
	Family    string `json:"family"`    // dual (IPv6 first), ipv6, ipv4
	Routing   string `json:"routing"`   // direct, vxlan, bgp
	ProxyMode string `json:"proxyMode"` // nftables, iptables
	// CNI is "duet" (the default), or "bridge": the reference bridge and
	// host-local plugins with direct routes, the baseline benchmarks
	// compare duet with in the same lab.
	CNI string `json:"cni,omitempty"`
	// NoNetworkPolicy turns duet's NetworkPolicy enforcement off (the
	// manifest's network-policy "false"); the zero value enforces, as
	// the manifest does.
	NoNetworkPolicy bool `json:"noNetworkPolicy,omitempty"`
}

// The kube lab's ranges. Pods take the lab's pools, carved per node by
// kube-controller-manager (/64 and /24); Services get ranges of their own.
var (
	ClusterCIDR6 = lab.Pool6 // fd00:d0e7::/56
	ClusterCIDR4 = lab.Pool4 // 10.250.0.0/20: 16 nodes of /24
	ServiceCIDR6 = netip.MustParsePrefix("fd00:d0e7:fff0::/112")
	ServiceCIDR4 = netip.MustParsePrefix("10.250.16.0/20")
	// HostLink joins the host's own namespace to the control plane, so
	// kubectl on the host reaches the API server, as with kind.
	HostLink6 = netip.MustParsePrefix("fd00:d0e7:fffe::/64")
	HostLink4 = netip.MustParsePrefix("10.250.254.0/30")
)

const (
	// NodeMask6 and NodeMask4 size each node's spec.podCIDRs.
	NodeMask6 = 64
	NodeMask4 = 24
	// APIPort is kube-apiserver's secure port.
	APIPort = 6443
	// etcdClient is where the control plane's etcd listens, inside the
	// control-plane namespace only.
	etcdClient = "http://127.0.0.1:2381"
	// hostLinkName is the host side of the host link; the control
	// plane's side is "host".
	hostLinkName = lab.Prefix + "api"
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain = "cluster.local"
)

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	switch {
	case o.Nodes < 1 || o.Nodes > 16:
		return fmt.Errorf("--nodes %d: use 1 to 16 (the lab's IPv4 cluster range %s holds 16 node ranges of /%d)", o.Nodes, ClusterCIDR4, NodeMask4)
	case o.Family != "dual" && o.Family != "ipv6" && o.Family != "ipv4":
		return fmt.Errorf("--family %q: use dual, ipv6 or ipv4", o.Family)
	case o.Routing != "direct" && o.Routing != "vxlan" && o.Routing != "bgp":
		return fmt.Errorf("--routing %q: use direct, vxlan or bgp", o.Routing)
	case o.ProxyMode != "nftables" && o.ProxyMode != "iptables":
		return fmt.Errorf("--proxy-mode %q: use nftables or iptables", o.ProxyMode)
	case o.CNI != "" && o.CNI != "duet" && o.CNI != "bridge":
		return fmt.Errorf("CNI %q: use duet or bridge (the reference plugins, for comparison)", o.CNI)
	}
	return nil
}

// families returns the prefixes of the lab's families, IPv6 first.
func (o Options) families(v6, v4 netip.Prefix) []netip.Prefix {
	switch o.Family {
	case "ipv6":
		return []netip.Prefix{v6}
	case "ipv4":
		return []netip.Prefix{v4}
	}
	return []netip.Prefix{v6, v4}
}

// ClusterCIDRs are the pod ranges, IPv6 first.
func (o Options) ClusterCIDRs() []netip.Prefix { return o.families(ClusterCIDR6, ClusterCIDR4) }

// ServiceCIDRs are the Service ranges; the first is the primary family.
func (o Options) ServiceCIDRs() []netip.Prefix { return o.families(ServiceCIDR6, ServiceCIDR4) }

// KubernetesService is the first address of each Service range: the
// apiserver's own Service, which its certificate must name.
func (o Options) KubernetesService() []netip.Addr {
	var out []netip.Addr
	for _, p := range o.ServiceCIDRs() {
		out = append(out, p.Addr().Next())
	}
	return out
}

// DNSService is cluster DNS's ClusterIP in each family (…::a, ….10).
func (o Options) DNSService() []netip.Addr {
	var out []netip.Addr
	for _, p := range o.ServiceCIDRs() {
		a := p.Addr().As16()
		a[15] += 10
		ip := netip.AddrFrom16(a)
		if p.Addr().Is4() {
			ip = ip.Unmap()
		}
		out = append(out, ip)
	}
	return out
}

// nodeIPs are the addresses a node's kubelet reports (--node-ip): the
// lab families' underlay addresses, IPv6 first. An IPv4-only cluster
// still has a dual-stack underlay; its nodes report IPv4 only.
func (o Options) nodeIPs(n lab.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Addrs {
		if (a.Is6() && o.Family != "ipv4") || (a.Is4() && o.Family != "ipv6") {
			out = append(out, a)
		}
	}
	return out
}

// apiAddr is the API server's address on the underlay, in the primary
// family: nodes and pods (through the kubernetes Service) reach it there.
func (o Options) apiAddr(s lab.State) netip.Addr {
	for _, a := range s.Store.Addrs {
		if a.Is6() == (o.Family != "ipv4") {
			return a
		}
	}
	return s.Store.Addrs[0]
}

func hostLinkAddr(p netip.Prefix, id int) netip.Addr {
	a := p.Addr()
	for i := 0; i < id; i++ {
		a = a.Next()
	}
	return a
}

// HostAPIAddr is the API server's address as the host sees it.
func HostAPIAddr() netip.Addr { return hostLinkAddr(HostLink6, 2) }

// paths are where a kube lab keeps things, under the lab's datadir.
type paths struct{ root string }

func (p paths) pki() string { return filepath.Join(p.root, "pki") }
func (p paths) kubeconfig(name string) string {
	return filepath.Join(p.root, "kubeconfig", name+".kubeconfig")
}
func (p paths) logs() string   { return filepath.Join(p.root, "log") }
func (p paths) etcd() string   { return filepath.Join(p.root, "etcd") }
func (p paths) images() string { return filepath.Join(p.root, "images.tar") }

// nodeDir is what one host would own alone: containerd's and the
// kubelet's state, and (under nodes/, mounted by duet's DaemonSet with
// subPathExpr) the CNI config dir, duet's bolt file and its socket dir.
func (p paths) nodeDir(node string) string { return filepath.Join(p.root, "nodes", node) }
func (p paths) cniConfDir(node string) string {
	return filepath.Join(p.nodeDir(node), "net.d")
}
func (p paths) cniBin() string { return filepath.Join(p.root, "cni-bin") }
