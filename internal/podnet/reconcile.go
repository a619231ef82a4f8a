package podnet

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"

	"github.com/duetnet/duet/internal/kernel"
)

// reconcile brings an existing veth pair to d. Every step is idempotent,
// so a retried ADD converges, and the addresses and routes of an earlier
// attempt with other addresses are removed. A pair this call created
// (fresh) holds no address or route of its own yet, so nothing is listed:
// listing dumps the whole namespace's addresses and routes, which on the
// host grows with every pod.
//
// The two ends are configured at once: each is in its own namespace, and
// no step of one needs the other's, only the host end's MAC, read first
// (the pod's neighbour entries for its gateways). Within each end the
// order matters: sysctls before the link goes up (no DAD, no RA, no
// kernel link-local), the link up before its addresses and routes.
//
// It returns the two links as it read them, with the pod end's MAC as set.
func reconcile(host, pod *kernel.NS, d Desired, fresh bool) (hl, pl kernel.Link, err error) {
	if hl, err = host.Link(d.Host.Name); err != nil {
		return hl, pl, err
	}
	if pl, err = pod.Link(d.Pod.Name); err != nil {
		return hl, pl, err
	}
	if pod == host { // both ends here (RuntimeMoves): one handle, in turn
		if err = reconcileHost(host, d, hl, fresh); err == nil {
			err = reconcilePod(pod, d, pl, hl.MAC, fresh)
		}
	} else {
		hostDone := make(chan error, 1)
		go func() { hostDone <- reconcileHost(host, d, hl, fresh) }()
		err = reconcilePod(pod, d, pl, hl.MAC, fresh)
		err = errors.Join(err, <-hostDone)
	}
	if d.Pod.MAC != nil {
		pl.MAC = d.Pod.MAC
	}
	return hl, pl, err
}

func reconcileHost(host *kernel.NS, d Desired, hl kernel.Link, fresh bool) error {
	if _, err := host.SetSysctls(d.Host.Sysctls); err != nil {
		return err
	}
	if hl.MTU != d.Host.MTU {
		if err := host.SetLinkMTU(d.Host.Name, d.Host.MTU); err != nil {
			return err
		}
	}
	if d.Host.Master != "" {
		if err := host.SetMaster(d.Host.Name, d.Host.Master); err != nil {
			return err
		}
		if err := host.SetHairpin(d.Host.Name, true); err != nil {
			return err
		}
	}
	if err := host.SetLinkUp(d.Host.Name); err != nil {
		return err
	}
	if err := ensureAddrs(host, d.Host.Name, addrsOf(d.Host, hl), true, fresh); err != nil {
		return err
	}
	return ensureRoutes(host, d.Host.Name, d.Host.Routes, fresh)
}

func reconcilePod(pod *kernel.NS, d Desired, pl kernel.Link, hostMAC net.HardwareAddr, fresh bool) error {
	if _, err := pod.SetSysctls(d.Pod.Sysctls); err != nil {
		return err
	}
	if pl.MTU != d.Pod.MTU {
		if err := pod.SetLinkMTU(d.Pod.Name, d.Pod.MTU); err != nil {
			return err
		}
	}
	if d.Pod.MAC != nil && !bytes.Equal(pl.MAC, d.Pod.MAC) {
		if err := pod.SetLinkMAC(d.Pod.Name, d.Pod.MAC); err != nil {
			return err
		}
		pl.MAC = d.Pod.MAC
	}
	if !d.RuntimeMoves { // the runtime brings it up where it moves it
		if err := pod.SetLinkUp(d.Pod.Name); err != nil {
			return err
		}
	}
	if err := ensureAddrs(pod, d.Pod.Name, addrsOf(d.Pod, pl), true, fresh); err != nil {
		return err
	}
	if err := ensureRoutes(pod, d.Pod.Name, d.Pod.Routes, fresh); err != nil {
		return err
	}
	for _, ip := range d.Pod.PeerNeighbours {
		if err := pod.ReplacePermanentNeigh(kernel.Neigh{IP: ip, MAC: hostMAC, Dev: d.Pod.Name}); err != nil {
			return err
		}
	}
	return nil
}

// addrsOf is the interface's full address list, with its link-local.
func addrsOf(i Iface, l kernel.Link) []netip.Prefix {
	if !i.LinkLocal {
		return i.Addrs
	}
	return append(slices.Clone(i.Addrs), linkLocal(l.MAC))
}

// ensureAddrs adds the missing addresses of want to link and, with prune,
// removes the ones not in want. A fresh link has none to list.
func ensureAddrs(n *kernel.NS, link string, want []netip.Prefix, prune, fresh bool) error {
	var have []kernel.Addr
	if !fresh {
		var err error
		if have, err = n.Addrs(link); err != nil {
			return err
		}
	}
	for _, a := range have {
		if prune && !slices.Contains(want, a.Prefix) {
			if err := n.DelAddr(link, a.Prefix); err != nil {
				return err
			}
		}
	}
	for _, p := range want {
		if !slices.ContainsFunc(have, func(a kernel.Addr) bool { return a.Prefix == p }) {
			if err := n.AddAddr(link, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureRoutes replaces each route of want through link, in order, after
// deleting the other routes through it (those not derived from addresses):
// the pod's interface and the host end are duet's alone. A fresh link has
// none to list.
func ensureRoutes(n *kernel.NS, link string, want []kernel.Route, fresh bool) error {
	var have []kernel.Route
	if !fresh {
		var err error
		if have, err = n.Routes(link); err != nil {
			return err
		}
	}
	for _, r := range have {
		if !slices.Contains(want, r) {
			if err := n.DelRoute(r); err != nil {
				return err
			}
		}
	}
	for _, r := range want {
		if err := n.ReplaceRoute(r); err != nil {
			return err
		}
	}
	return nil
}
