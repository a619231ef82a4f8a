package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
)

// SupportedVersions are the CNI spec versions the plugins speak.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// Add is CNI ADD.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	n, h, err := p.parse(args)
	if err != nil {
		return cniError("parsing the network configuration", err)
	}
	extra, err := podAllowedSources(args.Args)
	if err != nil {
		return cniError("parsing CNI_ARGS", err)
	}
	// What the ADD needs of the host that no allocation decides is read
	// while the store transaction runs; the transaction waits for it only
	// before it commits, and abandons itself when the read failed or the
	// pools overlap an uplink, so nothing is written.
	var host hostFacts
	var hostErr error
	hostRead := make(chan struct{})
	go func() { host, hostErr = p.readHost(n); close(hostRead) }()
	var readErr, poolErr error
	var a ipam.Allocation
	var pools []ipam.Pool
	existed := false
	err = p.withStore(n, true, func(tx store.Tx) error {
		var err error
		if pools, err = resolvePools(tx, n.Name, n.Pools, p.Rand, p.Host.Prefixes); err != nil {
			return err
		}
		if _, existed, err = ipam.Get(tx, h); err != nil {
			return err
		}
		var allocErr error
		a, allocErr = ipam.Allocate(tx, ipam.Request{Handle: h, Node: n.NodeName, NetNS: args.Netns, Families: n.Families, Pools: pools, Rand: p.Rand, AllowedSources: extra})
		<-hostRead // closed: an etcd transaction that runs again does not wait again
		if readErr = hostErr; readErr != nil {
			return readErr
		}
		if poolErr = routing.CheckPoolsAgainstUplinks(host.onlink, prefixes(n.Pools)); poolErr != nil {
			return poolErr
		}
		return allocErr
	})
	switch {
	case poolErr != nil:
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration: pools: "+poolErr.Error(), "")
	case readErr != nil:
		return cniError("reading the host's network", readErr)
	case err != nil:
		return cniError("allocating addresses", err)
	}
	res, err := p.attach(n, a, pools, host, args.Netns, false)
	if err != nil {
		// Give the addresses back, so a failed ADD leaves nothing behind;
		// but never those of an attachment an earlier ADD completed.
		if !existed {
			if rerr := p.withStore(n, true, func(tx store.Tx) error { _, _, err := ipam.Release(tx, h); return err }); rerr != nil {
				err = fmt.Errorf("%w (and releasing its addresses failed too: %v; run duetctl ipam gc)", err, rerr)
			}
		}
		return cniError("setting up "+args.IfName, err)
	}
	return printResult(p.Stdout, result(n, a, res, args.Netns), n.CNIVersion)
}

// Attach makes an attachment whose addresses a runtime allocated itself
// (Docker's IPAM driver asks for them one at a time), with everything ADD
// makes after its allocation: the interface a.IfName in netns, or, with
// runtimeMoves, a pair in this namespace whose pod end (a.IfName) the
// runtime moves and addresses itself (podnet.Spec.RuntimeMoves).
func (p *Plugin) Attach(n *config.Network, a ipam.Allocation, pools []ipam.Pool, netns string, runtimeMoves bool) (podnet.Result, error) {
	host, err := p.readHost(n)
	if err != nil {
		return podnet.Result{}, err
	}
	return p.attach(n, a, pools, host, netns, runtimeMoves)
}

// hostFacts is what attaching a pod needs of the host that no allocation
// decides: the uplinks' on-link prefixes (the pool check, the NDP proxy
// plan) and the pod interface's MTU.
type hostFacts struct {
	onlink []kernel.OnLinkPrefix
	mtu    int
}

// readHost reads the host's facts, both at once.
func (p *Plugin) readHost(n *config.Network) (hostFacts, error) {
	var f hostFacts
	mtu := make(chan int, 1)
	go func() { mtu <- p.mtu(n) }()
	onlink, err := p.Host.OnLinkPrefixes()
	f.mtu = <-mtu
	if err != nil {
		return f, fmt.Errorf("listing the host's uplink prefixes: %w", err)
	}
	f.onlink = onlink
	return f, nil
}

// CheckPools refuses pools that contain an uplink's on-link prefix
// (routing.CheckPoolsAgainstUplinks).
func (p *Plugin) CheckPools(pools []netip.Prefix) error {
	onlink, err := p.Host.OnLinkPrefixes()
	if err != nil {
		return fmt.Errorf("listing the host's uplink prefixes: %w", err)
	}
	return routing.CheckPoolsAgainstUplinks(onlink, pools)
}

// Detach removes what Attach made, as DEL does before it frees the
// addresses; it succeeds when nothing is left.
func (p *Plugin) Detach(n *config.Network, a ipam.Allocation, netns string) error {
	hostIf := HostIfName(a.Handle)
	fwDone := make(chan error, 1)
	go func() { fwDone <- p.unprotectIf(n, hostIf) }()
	err := p.Net.Teardown(netns, a.IfName, hostIf)
	if ferr := <-fwDone; ferr != nil {
		if uerr := p.unprotect(n, a); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	if len(a.IPs) > 0 {
		err = errors.Join(err, p.Host.UnproxyPods(addrsOf(a)))
	}
	return err
}

// attach makes the pod's interface and its protections, and turns
// forwarding on. The three are independent kernel work (sysctls, nftables,
// links in two namespaces), so they run at once: an ADD waits for the
// slowest instead of their sum. The interface is created in duet's
// interface group, which the table sends through the pod checks, so it
// drops everything until its elements are in (the first pod's table is
// made with them); and nothing in the pod sends before ADD returns, its
// sysctls being set before its links go up. On failure attach removes
// what it made: the protections, and the interface (podnet also deletes a
// veth it created when its own setup fails).
func (p *Plugin) attach(n *config.Network, a ipam.Allocation, pools []ipam.Pool, host hostFacts, netns string, runtimeMoves bool) (podnet.Result, error) {
	s, err := spec(n, a, netns, host.mtu)
	if err != nil {
		return podnet.Result{}, err
	}
	s.RuntimeMoves = runtimeMoves
	pod := fwPod(n, a, s)
	var changes []kernel.SysctlChange
	var fwdErr, protErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); changes, fwdErr = p.Host.EnableForwarding(addrsOf(a)) }()
	go func() { defer wg.Done(); protErr = p.protect(n, pod, pools) }()
	r, setupErr := p.Net.Setup(s)
	wg.Wait()
	p.recordSysctls(n, changes)
	if fwdErr != nil || protErr != nil || setupErr != nil {
		if setupErr == nil {
			_ = p.Net.Teardown(netns, a.IfName, s.HostIfName)
		}
		if protErr == nil {
			_ = p.removeProtections(n, a)
		}
		if fwdErr != nil {
			fwdErr = fmt.Errorf("enabling forwarding: %w", fwdErr)
		}
		return podnet.Result{}, errors.Join(fwdErr, protErr, setupErr)
	}
	changes, err = p.Host.ProxyPods(routing.ProxyPlan(host.onlink, prefixes(pools), addrsOf(a)))
	p.recordSysctls(n, changes)
	if err != nil {
		_ = p.Host.UnproxyPods(addrsOf(a))
		_ = p.Net.Teardown(netns, a.IfName, s.HostIfName)
		_ = p.removeProtections(n, a)
		return podnet.Result{}, fmt.Errorf("answering neighbour discovery for the pod on the uplink: %w", err)
	}
	return r, nil
}

func prefixes(pools []ipam.Pool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.CIDR)
	}
	return out
}

// result is the CNI result: both veth ends, the addresses with their
// gateways, and the pod's routes.
func result(n *config.Network, a ipam.Allocation, r podnet.Result, netns string) *current.Result {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if r.BridgeName != "" {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: r.BridgeName, Mac: r.BridgeMAC.String()})
	}
	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: r.HostIfName, Mac: r.HostMAC.String()},
		&current.Interface{Name: r.PodIfName, Mac: r.PodMAC.String(), Sandbox: netns})
	pod := len(res.Interfaces) - 1
	gw := func(a netip.Addr) net.IP {
		for _, g := range r.Gateways {
			if g.Is4() == a.Is4() {
				return g.AsSlice()
			}
		}
		return nil
	}
	for _, ip := range a.IPs {
		addr := ip.Address
		if n.Mode == config.ModeRouted {
			addr = netip.PrefixFrom(addr.Addr(), addr.Addr().BitLen())
		}
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &pod, Address: ipNet(addr), Gateway: gw(addr.Addr())})
	}
	for _, rt := range r.Routes {
		route := &types.Route{Dst: ipNet(rt.Dst)}
		if rt.GW.IsValid() {
			route.GW = rt.GW.AsSlice()
		}
		res.Routes = append(res.Routes, route)
	}
	return res
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Del is CNI DEL: remove the interface first, so an address is never
// handed out while an interface still holds it; then free the addresses
// (one store transaction, which also says what they were) and remove the
// pod's proxy entries. The pod's protections are removed while the
// interface goes, at once: both wait for the kernel's RCU grace periods,
// which overlap, and the pod's traffic fails closed meanwhile (its
// interface group still sends it through the checks, which no longer
// hold its addresses). Every step succeeds when there is nothing left to
// remove.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	n, h, err := p.parse(args)
	if err != nil {
		return cniError("parsing the network configuration", err)
	}
	fwDone := make(chan error, 1)
	go func() { fwDone <- p.unprotectIf(n, HostIfName(h)) }()
	if err := p.Net.Teardown(args.Netns, args.IfName, HostIfName(h)); err != nil {
		<-fwDone
		return cniError("removing "+args.IfName, err)
	}
	a := ipam.Allocation{Handle: h}
	if err := p.withStore(n, true, func(tx store.Tx) error {
		got, ok, err := ipam.Release(tx, h)
		if ok {
			a = got
		}
		return err
	}); err != nil {
		<-fwDone
		return cniError("releasing "+h.String(), err)
	}
	if err := <-fwDone; err != nil {
		// The table could not be read: remove what the allocation names.
		if err := p.unprotect(n, a); err != nil {
			return cniError("removing what "+h.String()+" left", err)
		}
	}
	if len(a.IPs) > 0 {
		if err := p.Host.UnproxyPods(addrsOf(a)); err != nil {
			return cniError("removing what "+h.String()+" left", err)
		}
	}
	return nil
}

// removeProtections removes a's protections: what the table holds for
// its interface, or, if the table cannot be read, what a names.
func (p *Plugin) removeProtections(n *config.Network, a ipam.Allocation) error {
	if err := p.unprotectIf(n, HostIfName(a.Handle)); err != nil {
		return p.unprotect(n, a)
	}
	return nil
}

// cleanup removes a released attachment's protections and proxy entries.
func (p *Plugin) cleanup(n *config.Network, a ipam.Allocation) error {
	if err := p.removeProtections(n, a); err != nil {
		return err
	}
	if len(a.IPs) > 0 {
		return p.Host.UnproxyPods(addrsOf(a))
	}
	return nil
}

// Check is CNI CHECK: the store still holds the attachment, the result the
// runtime kept matches it, and the kernel still has all of it.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	n, h, err := p.parse(args)
	if err != nil {
		return cniError("parsing the network configuration", err)
	}
	var a ipam.Allocation
	var found bool
	if err := p.withStore(n, false, func(tx store.Tx) (err error) { a, found, err = ipam.Get(tx, h); return err }); err != nil {
		return cniError("reading the allocation", err)
	}
	if !found {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no addresses are allocated to %s: ADD it first", h), "")
	}
	if err := checkPrevResult(n, a); err != nil {
		return cniError("checking the previous result", err)
	}
	s, err := spec(n, a, args.Netns, p.mtu(n))
	if err != nil {
		return cniError("checking", err)
	}
	if err := p.Net.Check(s); err != nil {
		return cniError("checking "+args.IfName, err)
	}
	if n.Protections {
		if err := p.Firewall.CheckPod(fwPod(n, a, s)); err != nil {
			return cniError("checking the protections of "+args.IfName, err)
		}
	}
	return nil
}

func checkPrevResult(n *config.Network, a ipam.Allocation) error {
	if len(n.RawPrevResult) == 0 {
		return nil
	}
	var prev current.Result
	if err := json.Unmarshal(n.RawPrevResult, &prev); err != nil {
		return fmt.Errorf("prevResult is not a CNI result: %w", err)
	}
	want := map[netip.Addr]bool{}
	for _, ip := range a.IPs {
		want[ip.Address.Addr()] = true
	}
	for _, ip := range prev.IPs {
		addr, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok || !want[addr.Unmap()] {
			return fmt.Errorf("prevResult has %s, which the store does not hold for this attachment", ip.Address.String())
		}
	}
	return nil
}

// GC is CNI GC: free every allocation of this network that is not in
// cni.dev/valid-attachments.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	n, err := config.Parse(args.StdinData)
	if err != nil {
		return cniError("parsing the network configuration", err)
	}
	if !n.HasAttachments {
		return nil // nothing says what is valid: freeing all would be wrong
	}
	valid := map[config.Attachment]bool{}
	for _, at := range n.ValidAttachments {
		valid[at] = true
	}
	var freed []ipam.Allocation
	err = p.withStore(n, true, func(tx store.Tx) (err error) {
		freed, err = ipam.GC(tx, n.Name, func(a ipam.Allocation) bool {
			return valid[config.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}]
		})
		return err
	})
	if err != nil {
		return cniError("garbage-collecting allocations", err)
	}
	for _, a := range freed {
		// The namespace is normally gone, taking the veth with it; a
		// leftover host end and the pod's protections are removed too.
		_ = p.Net.Teardown("", a.IfName, HostIfName(a.Handle))
		_ = p.cleanup(n, a)
		fmt.Fprintf(os.Stderr, "duet: GC freed %s (%v)\n", a.Handle, addrsOf(a))
	}
	if n.Protections {
		if err := p.sweepGone(n); err != nil && !errors.Is(err, kernel.ErrNoNFTables) {
			return cniError("removing the elements of pods that are gone", err)
		}
	}
	return nil
}

// sweepGone removes the elements of every pod interface that no longer
// exists on the host and that no allocation in the store names (of any
// network: the tables are the host's): what a DEL that never came, or one
// that failed half-way, left. The store and the links are read after the
// sets, so a pod whose ADD is under way (allocated first, then
// protected, then its interface made) is never taken for gone.
func (p *Plugin) sweepGone(n *config.Network) error {
	var live map[string]bool
	var links map[string]bool
	var readErr error
	gone := func(name string) bool {
		if live == nil && readErr == nil {
			live = map[string]bool{}
			readErr = p.withStore(n, false, func(tx store.Tx) error {
				all, err := ipam.List(tx, "")
				for _, a := range all {
					live[HostIfName(a.Handle)] = true
				}
				return err
			})
			if readErr == nil {
				links, readErr = p.Host.Links()
			}
		}
		return readErr == nil && !live[name] && !links[name]
	}
	unlock, err := p.Firewall.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	err = p.sweep([]firewall.Family{firewall.Inet, firewall.Bridge}, gone)
	if err == nil {
		err = readErr
	}
	return err
}

// Status is CNI STATUS: the store answers and the pools have room.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	n, err := config.Parse(args.StdinData)
	if err != nil {
		return cniError("parsing the network configuration", err)
	}
	if n.NodeName == "" {
		if n.NodeName, err = p.Hostname(); err != nil {
			return cniError("finding the node name", err)
		}
	}
	err = p.withStore(n, false, func(tx store.Tx) error {
		pools := n.Pools
		if len(pools) == 0 {
			var ok bool
			var err error
			if pools, ok, err = ipam.StoredDefaultPools(tx); err != nil || !ok {
				return err // not created yet: the first ADD will
			}
		}
		return ipam.Room(tx, n.NodeName, n.Families, pools)
	})
	if err != nil {
		if errors.Is(err, ipam.ErrExhausted) || errors.Is(err, store.ErrUnavailable) {
			return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
		}
		return cniError("checking status", err)
	}
	return nil
}

func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("stored MAC %q is invalid: %w", s, err)
	}
	return mac, nil
}

// printResult writes res in the configuration's CNI version.
func printResult(w io.Writer, res *current.Result, version string) error {
	if w == nil {
		w = os.Stdout
	}
	r, err := res.GetAsVersion(version)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
	}
	return r.PrintTo(w)
}
