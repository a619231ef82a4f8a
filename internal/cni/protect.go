package cni

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
)

// argAllowedSources is the CNI_ARGS key of a pod's own opt-out prefixes.
const argAllowedSources = "DUET_ALLOWED_SOURCE_PREFIXES"

// fwPod is the firewall's view of an attachment; the pod's own allowed
// sources come from its allocation, so DEL and GC see what ADD saw.
func fwPod(n *config.Network, a ipam.Allocation, s podnet.Spec) firewall.Pod {
	return firewall.Pod{
		HostIf:         s.HostIfName,
		MAC:            s.MAC,
		Addrs:          addrsOf(a),
		AllowedSources: append(append([]netip.Prefix{}, n.AllowedSources...), a.AllowedSources...),
		Bridged:        n.Mode == config.ModeBridge,
	}
}

func fwPools(pools []ipam.Pool) []firewall.Pool {
	out := make([]firewall.Pool, 0, len(pools))
	for _, p := range pools {
		out = append(out, firewall.Pool{CIDR: p.CIDR, NAT: p.NATOutgoing})
	}
	return out
}

// podAllowedSources reads DUET_ALLOWED_SOURCE_PREFIXES=p1,p2 from CNI_ARGS.
func podAllowedSources(cniArgs string) ([]netip.Prefix, error) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != argAllowedSources {
			continue
		}
		ps, err := config.ParsePrefixes(strings.Split(v, ","), "CNI_ARGS "+argAllowedSources)
		if err != nil {
			return nil, err
		}
		return ps, nil
	}
	return nil, nil
}

// protect installs the pod's protections (and its pools' NAT). It runs
// beside the interface's creation (attach): the interface is born in
// duet's group, so until these elements are in, all it sends is dropped.
func (p *Plugin) protect(n *config.Network, pod firewall.Pod, pools []ipam.Pool) error {
	if !n.Protections {
		return nil
	}
	unlock, err := p.Firewall.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	p.Firewall.Dequeue(pod.HostIf)
	// Fastest: the pod's elements over netlink, no nft process, when the
	// table is marked as holding this version's rules and these pools.
	if op, err := firewall.FastAddPod(pod, fwPools(pools)); err == nil && p.Firewall.ApplyFast(op) == nil {
		return nil
	}
	// Then elements only through nft, into a table that holds this
	// version's rules. It fails as a whole when the table is missing or
	// older; then the table is rewritten with the elements, in one
	// transaction too.
	if fast, err := firewall.AddPodElementsScript(pod, fwPools(pools)); err == nil && p.Firewall.Apply(fast) == nil {
		return nil
	}
	script, err := firewall.AddPodScript(pod, fwPools(pools))
	if err != nil {
		return err
	}
	if err := p.Firewall.Apply(script); err != nil {
		return fmt.Errorf("installing the pod's protections: %w (or set \"protections\": false to run without RA guard and anti-spoofing)", err)
	}
	return nil
}

// unprotectIf removes every element keyed by the pod's host interface,
// whatever the allocation says of its addresses (it may have been freed
// elsewhere, or DEL may be retried), and the pools no other pod's network
// has. It succeeds when they are gone, or when there is no nftables.
func (p *Plugin) unprotectIf(n *config.Network, hostIf string) error {
	if !n.Protections {
		return nil
	}
	fams := "inet"
	if n.Mode == config.ModeBridge {
		fams = "inet,bridge"
	}
	err := p.Firewall.Removal(hostIf, fams, func(queued map[string]string) error {
		return p.sweep(famsOf(queued), func(name string) bool { _, ok := queued[name]; return ok })
	})
	if errors.Is(err, kernel.ErrNoNFTables) {
		return nil
	}
	return err
}

// famsOf is the union of the queued removals' families.
func famsOf(queued map[string]string) []firewall.Family {
	fams := []firewall.Family{firewall.Inet}
	for _, f := range queued {
		if strings.Contains(f, "bridge") {
			return append(fams, firewall.Bridge)
		}
	}
	return fams
}

// unprotect is unprotectIf's fallback, for a table that cannot be read:
// it removes the elements a's addresses make, as one nft transaction
// that succeeds whatever is there.
func (p *Plugin) unprotect(n *config.Network, a ipam.Allocation) error {
	if !n.Protections {
		return nil
	}
	s, err := spec(n, a, "", 0)
	if err != nil {
		return err
	}
	script, err := firewall.RemovePodScript(fwPod(n, a, s), fwPools(n.Pools))
	if err != nil {
		return err
	}
	if err := p.Firewall.Apply(script); err != nil && !errors.Is(err, kernel.ErrNoNFTables) {
		return fmt.Errorf("removing the pod's protections: %w", err)
	}
	return nil
}

// sweep removes what firewall.Residue says of the interfaces gone names,
// from fams' tables: one netlink batch for the pods' elements, then, for
// the pools those pods' networks had, the elements of those no pod's
// network has any more (one nft transaction, rarely). The caller holds
// the firewall's lock (a queued removal, or GC), so no ADD protects a pod
// between the read and the removal, and an ADD's fast path, which trusts
// a pool's marker, never adds a pod to a pool whose elements are going.
func (p *Plugin) sweep(fams []firewall.Family, gone func(ifname string) bool) error {
	have, err := p.Firewall.List(firewall.ResidueSets(fams...))
	if err != nil {
		return err
	}
	del, pools := firewall.Residue(have, gone)
	if len(del.Elements) > 0 {
		if err := p.Firewall.ApplyFast(del); err != nil {
			return fmt.Errorf("removing %d elements of gone pods: %w", len(del.Elements), err)
		}
	}
	if len(pools) == 0 {
		return nil
	}
	left, err := p.Firewall.List(firewall.PodPoolSets())
	if err != nil {
		return err
	}
	if prune := firewall.Unreferenced(left, pools); len(prune) > 0 {
		if err := p.Firewall.Apply(firewall.PrunePoolsScript(prune)); err != nil {
			// The pods are gone already: a pool's elements left behind
			// only keep its NAT, and say so here.
			fmt.Fprintf(os.Stderr, "duet: removing the elements of pools no pod uses (%v): %v\n", prune, err)
		}
	}
	return nil
}
