// Package cni is the logic of the duet CNI plugin: ADD, DEL, CHECK, GC and
// STATUS over three narrow dependencies (the pod network, the host, the
// store), so it can be tested with fakes as well as for real.
//
// An ADD is: parse, allocate (one store transaction), set up the pod
// network, answer. The store is closed before the kernel work starts, so a
// runtime's parallel ADDs hold the store's lock for milliseconds, and any
// failure after the allocation gives it back before the plugin exits.
package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/store"
)

// PodNetwork makes a pod's interface; podnet implements it.
type PodNetwork interface {
	Setup(podnet.Spec) (podnet.Result, error)
	Check(podnet.Spec) error
	Teardown(netns, ifName, hostIfName string) error
}

// Host answers the questions the plugin asks of the host it runs on.
type Host interface {
	// DefaultRouteMTU is the MTU of the interface of the default route.
	DefaultRouteMTU() (int, error)
	// Prefixes are the host's routes and addresses, to keep the
	// zero-config IPv4 pool clear of them.
	Prefixes() ([]netip.Prefix, error)
	// EnableForwarding turns on forwarding for the families of addrs and
	// says what it changed.
	EnableForwarding(addrs []netip.Addr) ([]kernel.SysctlChange, error)
	// OnLinkPrefixes lists the uplinks' on-link prefixes. An ADD reads
	// them once, for the pool check and the proxy plan both: the listing
	// grows with the node's pods.
	OnLinkPrefixes() ([]kernel.OnLinkPrefix, error)
	// ProxyPods adds proxy entries (routing.ProxyPlan's: the host answers
	// neighbour discovery, and ARP, on an uplink for each pod address
	// inside that uplink's prefix), and says which sysctls it changed to
	// do so.
	ProxyPods(entries []kernel.ProxyEntry) ([]kernel.SysctlChange, error)
	// UnproxyPods removes the proxy entries of addrs.
	UnproxyPods(addrs []netip.Addr) error
	// Links names the host's network interfaces.
	Links() (map[string]bool, error)
}

// Firewall applies and verifies the nftables protections.
type Firewall interface {
	// Apply runs an nft script as one transaction.
	Apply(script string) error
	// ApplyFast changes a pod's set elements over netlink, in one batch,
	// if the table is marked current; any error means nothing changed.
	ApplyFast(firewall.FastOp) error
	// List reads the elements of sets (Family and Set of each) of duet's
	// tables; a missing table or set reads as empty.
	List(sets []firewall.RawElement) ([]firewall.RawElement, error)
	// Lock serialises, on this host, the plugins' reads-then-writes of
	// duet's tables against each other's writes.
	Lock() (unlock func(), err error)
	// Removal queues name (with its families, "inet" or "inet,bridge")
	// for removal and runs fn, under the lock, for every name queued on
	// this host by then, its own included: concurrent DELs share one
	// kernel transaction, and so one RCU grace period, instead of
	// waiting for one each. A name another caller's fn removed returns
	// nil without running fn; fn's error leaves the others queued for
	// their own callers.
	Removal(name, fams string, fn func(queued map[string]string) error) error
	// Dequeue forgets a queued removal of name, under the lock: an ADD
	// reusing the interface name must not lose its new elements to a DEL
	// that queued it and died.
	Dequeue(name string)
	// CheckPod verifies a pod's protections are in place and unmodified.
	CheckPod(firewall.Pod) error
}

// Plugin is the duet CNI plugin.
type Plugin struct {
	Net      PodNetwork
	Host     Host
	Firewall Firewall
	// Open opens the datastore named in the configuration.
	Open func(config.Datastore) (store.Store, error)
	// Rand feeds ULA Global IDs and MAC addresses.
	Rand io.Reader
	// Hostname is the default node name.
	Hostname func() (string, error)
	// Stdout receives results; nil means os.Stdout.
	Stdout io.Writer
	// Stderr is the runtime's log; nil means os.Stderr.
	Stderr io.Writer
}

// HostIfName is the host end's name of the veth for an attachment: "dt"
// and 11 hex digits of a hash, like Calico's "cali…", so that it fits in
// IFNAMSIZ and is the same on every retry of the same ADD.
func HostIfName(h ipam.Handle) string {
	sum := sha256.Sum256([]byte(h.String()))
	return "dt" + hex.EncodeToString(sum[:])[:11]
}

func (p *Plugin) parse(args *skel.CmdArgs) (*config.Network, ipam.Handle, error) {
	n, err := config.Parse(args.StdinData)
	if err != nil {
		return nil, ipam.Handle{}, err
	}
	if n.NodeName == "" {
		if n.NodeName, err = p.Hostname(); err != nil {
			return nil, ipam.Handle{}, fmt.Errorf("finding the node name: %w (set \"nodeName\")", err)
		}
	}
	return n, ipam.Handle{Network: n.Name, ContainerID: args.ContainerID, IfName: args.IfName}, nil
}

// withStore opens the store, runs fn, and closes it at once.
func (p *Plugin) withStore(n *config.Network, write bool, fn func(store.Tx) error) error {
	s, err := p.Open(n.Datastore)
	if err != nil {
		return err
	}
	defer s.Close()
	if write {
		return s.Update(context.Background(), fn)
	}
	return s.View(context.Background(), fn)
}

// PodMAC is the pod interface's MAC when IPAM does not pick one: locally
// administered, unicast, and derived from the handle, so that DEL and GC
// know it without asking the kernel (the namespace may be gone) and can
// remove the pod's anti-spoofing elements exactly.
func PodMAC(h ipam.Handle) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac/" + h.String()))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// resolvePools returns the configured pools (recording them for duetctl),
// or the zero-config ones.
func resolvePools(tx store.Tx, network string, configured []ipam.Pool, rand io.Reader, prefixes func() ([]netip.Prefix, error)) ([]ipam.Pool, error) {
	if len(configured) > 0 {
		return configured, ipam.RecordPools(tx, network, configured)
	}
	return ipam.DefaultPools(tx, rand, prefixes)
}

// spec turns an allocation into the pod's desired network.
func spec(n *config.Network, a ipam.Allocation, netns string, mtu int) (podnet.Spec, error) {
	s := podnet.Spec{
		Mode:       podnet.Mode(n.Mode),
		NetNS:      netns,
		IfName:     a.IfName,
		HostIfName: HostIfName(a.Handle),
		MTU:        mtu,
	}
	if n.Protections {
		s.Group = firewall.Group
	}
	s.MAC = PodMAC(a.Handle)
	if a.MAC != "" {
		mac, err := parseMAC(a.MAC)
		if err != nil {
			return s, err
		}
		s.MAC = mac
	}
	for _, ip := range a.IPs {
		if s.Mode == podnet.Bridge {
			s.Addresses = append(s.Addresses, ip.Address)
			s.BridgeGateways = append(s.BridgeGateways, netip.PrefixFrom(ip.Gateway, ip.Address.Bits()))
		} else {
			s.Addresses = append(s.Addresses, netip.PrefixFrom(ip.Address.Addr(), ip.Address.Addr().BitLen()))
		}
	}
	if s.Mode == podnet.Bridge {
		s.BridgeName = n.Bridge
	}
	return s, nil
}

func (p *Plugin) mtu(n *config.Network) int {
	if n.MTU > 0 {
		return n.MTU
	}
	if m, err := p.Host.DefaultRouteMTU(); err == nil && m > 0 {
		return m
	}
	return 1500
}

func addrsOf(a ipam.Allocation) []netip.Addr {
	var out []netip.Addr
	for _, ip := range a.IPs {
		out = append(out, ip.Address.Addr())
	}
	return out
}

func hostname() (string, error) { return os.Hostname() }

// DefaultHostname is the Hostname used by the binaries.
var DefaultHostname = hostname
