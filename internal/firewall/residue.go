package firewall

import (
	"bytes"
	"net/netip"
)

// ResidueSets are the sets Residue reads: the per-pod sets of each of
// fams' tables, and the pod-pool sets of table inet duet.
func ResidueSets(fams ...Family) []RawElement {
	var out []RawElement
	for _, fam := range fams {
		for _, s := range podSets {
			out = append(out, RawElement{Family: fam, Set: s})
		}
	}
	for _, s := range podPoolSets {
		out = append(out, RawElement{Family: Inet, Set: s})
	}
	return out
}

// Residue decides, from what the per-pod sets hold (have, read from
// ResidueSets), what goes when the interfaces gone says are gone: every
// element keyed by such an interface, whatever the store says of its
// pod, in del; and the pools those pods' networks had, in pools, whose
// elements go too once no pod's network has them (Unreferenced, read
// after del is applied). This is how DEL after the allocation was freed
// elsewhere, or a pod whose DEL never came, still leaves the table as it
// was before the pod's ADD.
func Residue(have []RawElement, gone func(ifname string) bool) (del FastOp, pools []netip.Prefix) {
	verdict := map[string]bool{}
	seen := map[netip.Prefix]bool{}
	for _, e := range have {
		name, ok := keyIfname(e.Key)
		if !ok {
			continue
		}
		g, ok := verdict[name]
		if !ok {
			g = gone(name)
			verdict[name] = g
		}
		if !g {
			continue
		}
		del.Elements = append(del.Elements, e)
		if p, ok := poolOf(e); ok && isPodPoolSet(e.Set) && !seen[p] {
			seen[p] = true
			pools = append(pools, p)
		}
	}
	return del, pools
}

// PodPoolSets are the sets Unreferenced reads.
func PodPoolSets() []RawElement {
	var out []RawElement
	for _, s := range podPoolSets {
		out = append(out, RawElement{Family: Inet, Set: s})
	}
	return out
}

// Unreferenced are the pools of pools that no element of have (read
// from PodPoolSets) names: no remaining pod's network has them.
func Unreferenced(have []RawElement, pools []netip.Prefix) []netip.Prefix {
	used := map[netip.Prefix]bool{}
	for _, e := range have {
		if p, ok := poolOf(e); ok && isPodPoolSet(e.Set) {
			used[p] = true
		}
	}
	var out []netip.Prefix
	for _, p := range pools {
		if !used[p] {
			out = append(out, p)
		}
	}
	return out
}

func isPodPoolSet(s string) bool { return s == setPodPools6 || s == setPodPools4 }

// PrunePoolsScript removes pools' elements from pools6/pools4 and
// nat6/nat4, and their markers, each added first so that the script
// succeeds whatever is there (nft 1.0.6 has no "destroy"). A pool of
// another version's table that lacks them is thereby left as it was.
func PrunePoolsScript(pools []netip.Prefix) string {
	t := prunePools(pools)
	return t.String()
}

func prunePools(pools []netip.Prefix) *tx {
	t := &tx{}
	t.add(tableObj(Inet))
	for _, s := range sets(Inet) {
		t.add(s)
	}
	t.add(markerSetObj(Inet))
	var els []object
	for _, p := range pools {
		els = append(els, poolElements([]Pool{{CIDR: p, NAT: true}})...)
		for _, nat := range []bool{true, false} {
			els = append(els, elementObj(Inet, markerSet(), poolMarker(Pool{CIDR: p, NAT: nat})))
		}
	}
	removeElements(t, els)
	return t
}

// keyIfname reads the interface name that leads a per-pod key: nft's
// ifname type, 16 bytes padded with NULs.
func keyIfname(key []byte) (string, bool) {
	if len(key) < 16 {
		if len(key) == 0 {
			return "", false
		}
		return string(bytes.TrimRight(key, "\x00")), true // an older table's set may list the name unpadded
	}
	n := bytes.TrimRight(key[:16], "\x00")
	return string(n), len(n) > 0
}

// poolOf reads the pool prefix of a pod-pool element: the range from
// the address after the interface name in Key to the one in KeyEnd.
func poolOf(e RawElement) (netip.Prefix, bool) {
	if len(e.Key) <= 16 || len(e.KeyEnd) != len(e.Key) {
		return netip.Prefix{}, false
	}
	first, ok1 := netip.AddrFromSlice(e.Key[16:])
	last, ok2 := netip.AddrFromSlice(e.KeyEnd[16:])
	if !ok1 || !ok2 {
		return netip.Prefix{}, false
	}
	return rangePrefix(first, last)
}

// rangePrefix is the prefix whose first and last addresses are first and
// last, if they make one.
func rangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	a, b := first.AsSlice(), last.AsSlice()
	bits := 0
	for bits < len(a)*8 && a[bits/8]&(0x80>>(bits%8)) == b[bits/8]&(0x80>>(bits%8)) {
		bits++
	}
	p := netip.PrefixFrom(first, bits)
	if p.Masked().Addr() != first || lastAddr(p) != last {
		return netip.Prefix{}, false
	}
	return p, true
}
