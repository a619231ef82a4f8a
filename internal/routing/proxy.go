package routing

import (
	"fmt"
	"net/netip"

	"github.com/duetnet/duet/internal/kernel"
)

// uplinkPrefixes drops the on-link prefixes that are pod networks (a duet
// bridge holds its pool's gateway with the pool's own length), leaving
// the node's real links.
func uplinkPrefixes(onlink []kernel.OnLinkPrefix, pools []netip.Prefix) []kernel.OnLinkPrefix {
	var out []kernel.OnLinkPrefix
	for _, o := range onlink {
		inPool := false
		for _, p := range pools {
			inPool = inPool || o.Prefix.Masked() == p.Masked()
		}
		if !inPool {
			out = append(out, o)
		}
	}
	return out
}

// ProxyPlan returns the proxy entries that make each pod address that sits
// inside an uplink's on-link prefix answerable on that uplink (seed 001:
// host 2001:db8::c001/64, containers in 2001:db8::c008/125).
func ProxyPlan(onlink []kernel.OnLinkPrefix, pools []netip.Prefix, addrs []netip.Addr) []kernel.ProxyEntry {
	var out []kernel.ProxyEntry
	for _, a := range addrs {
		for _, o := range uplinkPrefixes(onlink, pools) {
			if o.Prefix.Contains(a) {
				out = append(out, kernel.ProxyEntry{Addr: a, Dev: o.Dev})
			}
		}
	}
	return out
}

// CheckPoolsAgainstUplinks refuses a pool that contains an uplink's
// prefix: pods could be handed the addresses of the hosts on that link,
// and no proxy entry could fix it. A pool inside an uplink prefix is fine
// (that is the NDP-proxy case), and so is one apart from it.
func CheckPoolsAgainstUplinks(onlink []kernel.OnLinkPrefix, pools []netip.Prefix) error {
	for _, o := range uplinkPrefixes(onlink, pools) {
		for _, p := range pools {
			if p.Bits() < o.Prefix.Bits() && p.Contains(o.Prefix.Addr()) {
				return fmt.Errorf("pool %s contains %s, the on-link prefix of %s: pods could get the addresses of hosts on that link; use a pool inside %s (answered by NDP proxy) or outside it", p, o.Prefix, o.Dev, o.Prefix)
			}
		}
	}
	return nil
}

// ProxyKernel is what the proxy reconciler needs; *kernel.NS has it.
type ProxyKernel interface {
	OnLinkPrefixes() ([]kernel.OnLinkPrefix, error)
	ProxyEntries() ([]kernel.ProxyEntry, error)
	AddProxyEntry(kernel.ProxyEntry) ([]kernel.SysctlChange, error)
	DelProxyEntry(kernel.ProxyEntry) error
}

var _ ProxyKernel = (*kernel.NS)(nil)

// ReconcileProxy makes the proxy entries for pod addresses exactly those
// ProxyPlan wants; entries for addresses outside every pool belong to
// someone else and are left alone.
func ReconcileProxy(k ProxyKernel, pools []netip.Prefix, addrs []netip.Addr) (int, error) {
	onlink, err := k.OnLinkPrefixes()
	if err != nil {
		return 0, err
	}
	want := map[kernel.ProxyEntry]bool{}
	for _, e := range ProxyPlan(onlink, pools, addrs) {
		want[e] = true
	}
	have, err := k.ProxyEntries()
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, e := range have {
		if want[e] {
			delete(want, e)
			continue
		}
		for _, p := range pools {
			if p.Contains(e.Addr) {
				if err := k.DelProxyEntry(e); err != nil {
					return changed, err
				}
				changed++
				break
			}
		}
	}
	for e := range want {
		if _, err := k.AddProxyEntry(e); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}
