package ipam

import (
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer, enough to do offset arithmetic on
// IPv6 addresses (a /48 pool holds 2^74 blocks of /122).
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	b := a.As16()
	var v u128
	for i := 0; i < 8; i++ {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[i+8])
	}
	return v
}

// addr returns v as an address of the same family as like.
func (v u128) addr(like netip.Addr) netip.Addr {
	var b [16]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(v.hi >> (8 * (7 - i)))
		b[i+8] = byte(v.lo >> (8 * (7 - i)))
	}
	a := netip.AddrFrom16(b)
	if like.Is4() {
		return a.Unmap()
	}
	return a
}

func (v u128) add(w u128) u128 {
	lo, c := bits.Add64(v.lo, w.lo, 0)
	hi, _ := bits.Add64(v.hi, w.hi, c)
	return u128{hi, lo}
}

func (v u128) sub(w u128) u128 {
	lo, b := bits.Sub64(v.lo, w.lo, 0)
	hi, _ := bits.Sub64(v.hi, w.hi, b)
	return u128{hi, lo}
}

func (v u128) shl(n int) u128 {
	switch {
	case n == 0:
		return v
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{v.lo << (n - 64), 0}
	default:
		return u128{v.hi<<n | v.lo>>(64-n), v.lo << n}
	}
}

func (v u128) less(w u128) bool {
	return v.hi < w.hi || (v.hi == w.hi && v.lo < w.lo)
}

// hostBits is the number of host bits of p in its own family.
func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

// offset returns a + n where n fits in 64 bits.
func offset(a netip.Addr, n uint64) netip.Addr {
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
		return u128From(a).add(u128{0, n}).addr(netip.IPv4Unspecified())
	}
	return u128From(a).add(u128{0, n}).addr(a)
}

// size64 is the number of addresses of p, saturated at 2^64-1.
func size64(p netip.Prefix) uint64 {
	hb := hostBits(p)
	if hb >= 64 {
		return ^uint64(0)
	}
	return uint64(1) << hb
}
