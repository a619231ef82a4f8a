package policy

import (
	"net/netip"
	"slices"
)

// Subtract returns p minus every prefix in minus, as the minimal list of
// disjoint prefixes (each the largest aligned block that fits), sorted.
// A prefix of minus of the other family, or outside p, removes nothing.
// This is how an ipBlock's except list is applied: interval sets in nft
// hold prefixes, not "a but not b".
//
//	Subtract(::/0, [fc00::/7]) = [::/1 8000::/2 c000::/3 e000::/4 f000::/5 f800::/6 fe00::/7]
func Subtract(p netip.Prefix, minus []netip.Prefix) []netip.Prefix {
	p = p.Masked()
	var cut []netip.Prefix
	for _, m := range minus {
		m = m.Masked()
		if m.Addr().Is4() != p.Addr().Is4() || !m.Overlaps(p) {
			continue
		}
		if m.Bits() <= p.Bits() { // m covers p
			return nil
		}
		cut = append(cut, m)
	}
	var out []netip.Prefix
	subtract(p, cut, &out)
	return out
}

// subtract appends p minus cut to out; every prefix in cut overlaps p and
// is strictly smaller, or covers it.
func subtract(p netip.Prefix, cut []netip.Prefix, out *[]netip.Prefix) {
	if len(cut) == 0 {
		*out = append(*out, p)
		return
	}
	for _, m := range cut {
		if m.Bits() <= p.Bits() {
			return
		}
	}
	lo, hi := halves(p)
	for _, h := range []netip.Prefix{lo, hi} {
		var in []netip.Prefix
		for _, m := range cut {
			if m.Overlaps(h) {
				in = append(in, m)
			}
		}
		subtract(h, in, out)
	}
}

// Union returns the addresses of ps as the minimal list of disjoint
// prefixes, sorted (IPv6 first, then by address): contained prefixes are
// dropped and sibling halves merged. Families never mix: ::/1 and 8000::/1
// make ::/0, which does not cover 0.0.0.0/0.
func Union(ps []netip.Prefix) []netip.Prefix {
	in := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			in = append(in, p.Masked())
		}
	}
	slices.SortFunc(in, comparePrefix)
	var out []netip.Prefix
	for _, p := range in {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue // inside the previous one
		}
		out = append(out, p)
		// A block and its sibling make their parent; the parent may in
		// turn pair with the block before it.
		for n := len(out); n >= 2; n = len(out) {
			a, b := out[n-2], out[n-1]
			if a.Bits() != b.Bits() || a.Bits() == 0 || sibling(a) != b {
				break
			}
			out = append(out[:n-2], parent(a))
		}
	}
	return out
}

// comparePrefix orders IPv6 first, then by address, then by length
// (shorter first), so a prefix comes right before the prefixes it
// contains.
func comparePrefix(a, b netip.Prefix) int {
	if a4, b4 := a.Addr().Is4(), b.Addr().Is4(); a4 != b4 {
		if b4 {
			return -1
		}
		return 1
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// halves splits p (not a single address) into its two halves.
func halves(p netip.Prefix) (lo, hi netip.Prefix) {
	b := p.Bits()
	lo = netip.PrefixFrom(p.Addr(), b+1)
	return lo, netip.PrefixFrom(setBit(p.Addr(), b), b+1)
}

// sibling is the other half of p's parent.
func sibling(p netip.Prefix) netip.Prefix {
	b := p.Bits()
	return netip.PrefixFrom(flipBit(p.Addr(), b-1), b)
}

func parent(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
}

func setBit(a netip.Addr, i int) netip.Addr {
	if flipped := flipBit(a, i); bit(a, i) == 0 {
		return flipped
	}
	return a
}

func bit(a netip.Addr, i int) byte {
	if a.Is4() {
		b := a.As4()
		return b[i/8] >> (7 - i%8) & 1
	}
	b := a.As16()
	return b[i/8] >> (7 - i%8) & 1
}

func flipBit(a netip.Addr, i int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		b[i/8] ^= 1 << (7 - i%8)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	b[i/8] ^= 1 << (7 - i%8)
	return netip.AddrFrom16(b)
}
