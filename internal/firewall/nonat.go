package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"sigs.k8s.io/knftables"
)

// NoNATPools returns the prefixes of want that the pools6 and pools4 sets
// of table inet duet ("never masquerade towards these") lack, read
// through l; a missing table or set reads as empty. duetd keeps every
// node's pod ranges there in Kubernetes mode, so pod-to-pod traffic
// across nodes keeps the pod's source: the plugin adds only its own
// pools. It only adds: a prefix inside an element is covered already, and
// one that overlaps an element otherwise is returned in skipped (nft
// refuses overlapping intervals) rather than replacing what the plugin
// wrote.
func NoNATPools(ctx context.Context, l Lister, want []netip.Prefix) (add []netip.Prefix, skipped []string, err error) {
	var have []netip.Prefix
	for _, set := range []string{setPools6, setPools4} {
		els, err := l.ListElements(ctx, "set", set)
		if knftables.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading set inet %s %s: %w", Table, set, err)
		}
		for _, e := range els {
			p, err := parseElement(strings.Join(e.Key, " . "))
			if err != nil {
				return nil, nil, fmt.Errorf("set inet %s %s: %w", Table, set, err)
			}
			have = append(have, p)
		}
	}
	add, skipped = missingPools(have, want)
	return add, skipped, nil
}

// NoNATPoolsScript is the nft script that adds prefixes (NoNATPools'
// answer) to pools6 and pools4. It declares the table and those two sets
// (as ensureTable does) and nothing else, so a table it creates before
// the first pod has no marker: the plugin's first ADD then writes the
// whole table, as it would have, and keeps these elements (it never
// flushes a set).
//
// Equivalent to: nft add element inet duet pools6 { fd00:10:244:2::/64 }
func NoNATPoolsScript(prefixes []netip.Prefix) string {
	tx := newTx()
	tx.Add(&knftables.Table{Family: knftables.InetFamily, Name: Table})
	for _, s := range sets(knftables.InetFamily) {
		if s.Name == setPools6 || s.Name == setPools4 {
			tx.Add(s)
		}
	}
	for _, e := range poolElements(noNAT(prefixes)) {
		tx.Add(e)
	}
	return tx.String()
}

// missingPools are the prefixes of want that no element of have covers,
// without duplicates or one inside another, and those that overlap an
// element without being inside it.
func missingPools(have, want []netip.Prefix) (add []netip.Prefix, skipped []string) {
	for _, w := range uncovered(want) {
		covered, clash := false, netip.Prefix{}
		for _, h := range have {
			switch {
			case h.Bits() <= w.Bits() && h.Contains(w.Addr()):
				covered = true
			case h.Overlaps(w):
				clash = h
			}
		}
		switch {
		case covered:
		case clash.IsValid():
			skipped = append(skipped, fmt.Sprintf("%s overlaps %s, already in the set", w, clash))
		default:
			add = append(add, w)
		}
	}
	return add, skipped
}

// noNAT makes pools whose elements go in pools6/pools4 only: whether a
// pool's own egress is masqueraded stays the plugin's decision.
func noNAT(ps []netip.Prefix) []Pool {
	out := make([]Pool, len(ps))
	for i, p := range ps {
		out[i] = Pool{CIDR: p}
	}
	return out
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
