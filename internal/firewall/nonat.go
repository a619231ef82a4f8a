package firewall

import (
	"fmt"
	"net/netip"
	"slices"
)

// PeerPoolSets are the sets of table inet duet that PeerPools compares.
var PeerPoolSets = []string{setPeers6, setPeers4}

// PeerPools compares the elements of the peer_pools6 and peer_pools4 sets
// of table inet duet ("never masquerade towards these"), have, as nft
// lists them (a missing table or set reads as none), with want: duetd
// keeps every node's pod ranges there in Kubernetes mode, so pod-to-pod
// traffic across nodes keeps the pod's source. The sets are duetd's alone
// (the plugin keeps its own pools in pools6 and pools4), so they are
// replaced whole: a node that goes takes its range with it. It returns
// the canonical set to write (nested and duplicate prefixes dropped) and
// whether the kernel's differs.
func PeerPools(have []string, want []netip.Prefix) (set []netip.Prefix, changed bool, err error) {
	var cur []netip.Prefix
	for _, e := range have {
		p, err := parseElement(e)
		if err != nil {
			return nil, false, fmt.Errorf("set inet %s %s or %s: %w", Table, setPeers6, setPeers4, err)
		}
		cur = append(cur, p)
	}
	set = canonical(want)
	return set, !slices.Equal(canonical(cur), set), nil
}

// canonical is ps without duplicates or prefixes inside another, sorted.
func canonical(ps []netip.Prefix) []netip.Prefix {
	out := uncovered(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// PeerPoolsScript is the nft script that makes peer_pools6 and
// peer_pools4 hold exactly prefixes (PeerPools' set), in one atomic
// transaction. It declares the table and those two sets (as ensureTable
// does) and nothing else, so a table it creates before the first pod has
// no marker: the plugin's first ADD then writes the whole table, as it
// would have, and keeps these elements (it never flushes a set).
//
// Equivalent to: flush set inet duet peer_pools6; add element inet duet peer_pools6 { fd00:10:244:2::/64 }
func PeerPoolsScript(prefixes []netip.Prefix) string {
	return peerPools(prefixes).String()
}

func peerPools(prefixes []netip.Prefix) *tx {
	t := &tx{}
	t.add(tableObj(Inet))
	for _, s := range sets(Inet) {
		if s.name == setPeers6 || s.name == setPeers4 {
			t.add(s)
			t.flush(s)
		}
	}
	for _, p := range canonical(prefixes) {
		set := setPeers4
		if p.Addr().Is6() {
			set = setPeers6
		}
		t.add(elementObj(Inet, set, p.String()))
	}
	return t
}

// parseElement reads an element as nft lists it: a prefix, or a bare
// address for a single one.
func parseElement(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("element %q is neither a prefix nor an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
