package podnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/duetnet/duet/internal/kernel"
)

// Check verifies that the kernel still holds what Setup made for spec (the
// CNI CHECK): both veth ends, paired and up, the bridge port in bridge
// mode, every address usable (not tentative), the pod's routes and
// neighbours and the host's routes. The error names the first thing
// missing; a missing pod namespace is a *NetNSError.
func Check(spec Spec) error {
	d, err := Plan(spec)
	if err != nil {
		return err
	}
	pod, err := openPod(d.NetNS)
	if err != nil {
		return err
	}
	defer pod.Close()
	host, err := kernel.HostNS()
	if err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	defer host.Close()
	if err := check(host, pod, d); err != nil {
		return fmt.Errorf("podnet: check %s in netns %s: %w", d.Pod.Name, d.NetNS, err)
	}
	return nil
}

func check(host, pod *kernel.NS, d Desired) error {
	pl, err := checkLink(pod, d.Pod)
	if err != nil {
		return err
	}
	hl, err := checkLink(host, d.Host)
	if err != nil {
		return err
	}
	if !isPair(hl, pl) {
		return fmt.Errorf("host interface %s is not the veth peer of %s", hl.Name, pl.Name)
	}
	if hl.Group != d.Host.Group {
		return fmt.Errorf("host interface %s is in interface group %d, want %d: duet's protections match pods by it", hl.Name, hl.Group, d.Host.Group)
	}
	if d.Pod.MAC != nil && !bytes.Equal(pl.MAC, d.Pod.MAC) {
		return fmt.Errorf("pod interface %s has MAC %s, want %s", pl.Name, pl.MAC, d.Pod.MAC)
	}
	if d.Bridge != nil {
		if err := checkBridgePort(host, *d.Bridge, hl); err != nil {
			return err
		}
	}
	if err := checkAddrs(pod, d.Pod.Name, addrsOf(d.Pod, pl)); err != nil {
		return err
	}
	if err := checkAddrs(host, d.Host.Name, addrsOf(d.Host, hl)); err != nil {
		return err
	}
	if err := checkRoutes(pod, d.Pod.Name, d.Pod.Routes); err != nil {
		return err
	}
	if err := checkRoutes(host, d.Host.Name, d.Host.Routes); err != nil {
		return err
	}
	neighs, err := pod.Neighs(d.Pod.Name)
	if err != nil {
		return err
	}
	for _, ip := range d.Pod.PeerNeighbours {
		if !slices.ContainsFunc(neighs, func(n kernel.Neigh) bool {
			return n.IP == ip && n.Permanent && bytes.Equal(n.MAC, hl.MAC)
		}) {
			return fmt.Errorf("permanent neighbour %s lladdr %s on %s in the pod: missing", ip, hl.MAC, d.Pod.Name)
		}
	}
	return nil
}

func checkLink(n *kernel.NS, want Iface) (kernel.Link, error) {
	l, err := n.Link(want.Name)
	switch {
	case err != nil:
		return l, err
	case !l.Up:
		return l, fmt.Errorf("link %s in %s is down", l.Name, n)
	case l.MTU != want.MTU:
		return l, fmt.Errorf("link %s in %s has MTU %d, want %d", l.Name, n, l.MTU, want.MTU)
	}
	return l, nil
}

func checkBridgePort(host *kernel.NS, b Iface, port kernel.Link) error {
	bl, err := host.Link(b.Name)
	if err != nil {
		return err
	}
	if port.MasterIndex != bl.Index {
		return fmt.Errorf("host interface %s is not plugged into bridge %s", port.Name, b.Name)
	}
	if on, err := host.Hairpin(port.Name); err != nil || !on {
		return fmt.Errorf("bridge port %s: hairpin off (%v)", port.Name, err)
	}
	return checkAddrs(host, b.Name, b.Addrs)
}

func checkAddrs(n *kernel.NS, link string, want []netip.Prefix) error {
	have, err := n.Addrs(link)
	if err != nil {
		return err
	}
	for _, p := range want {
		i := slices.IndexFunc(have, func(a kernel.Addr) bool { return a.Prefix == p })
		switch {
		case i < 0:
			return fmt.Errorf("address %s on %s in %s: missing", p, link, n)
		case have[i].Tentative || have[i].DADFailed:
			return fmt.Errorf("address %s on %s in %s: tentative or failed DAD", p, link, n)
		}
	}
	return nil
}

func checkRoutes(n *kernel.NS, link string, want []kernel.Route) error {
	have, err := n.Routes(link)
	if err != nil {
		return err
	}
	for _, r := range want {
		if !slices.Contains(have, r) {
			return fmt.Errorf("route %s in %s: missing", r, n)
		}
	}
	return nil
}
