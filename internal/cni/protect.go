package cni

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
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

// protect installs the pod's protections (and its pools' NAT) before the
// pod's interface exists, so its first packet is already checked.
func (p *Plugin) protect(n *config.Network, pod firewall.Pod, pools []ipam.Pool) error {
	if !n.Protections {
		return nil
	}
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

// unprotect removes the pod's elements; it succeeds when they are gone.
func (p *Plugin) unprotect(n *config.Network, pod firewall.Pod) error {
	if !n.Protections {
		return nil
	}
	if op, err := firewall.FastRemovePod(pod, nil); err == nil && p.Firewall.ApplyFast(op) == nil {
		return nil
	}
	if fast, err := firewall.RemovePodElementsScript(pod); err == nil && p.Firewall.Apply(fast) == nil {
		return nil
	}
	script, err := firewall.RemovePodScript(pod)
	if err != nil {
		return err
	}
	return p.Firewall.Apply(script)
}
