package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
)

// RawElement is a set element as the kernel stores it: key bytes (and the
// inclusive end of a range, for concatenated interval sets). It lets ADD
// and DEL change a pod's elements over netlink in one batch, without
// running nft, when the table is known to be current.
type RawElement struct {
	Family Family
	Set    string
	Key    []byte
	KeyEnd []byte
}

// FastOp is one netlink batch: check that every marker in Checks exists
// (the table holds this version's rules, and these pools' elements),
// then add or delete Elements. If a check fails, the caller falls back
// to the nft scripts, which write the table whole.
type FastOp struct {
	Checks   []RawElement
	Add      bool
	Elements []RawElement
}

// marker is the marker-set element key in fam.
func marker(fam Family, key string) RawElement {
	return RawElement{Family: fam, Set: markerSet(), Key: ifname(key)}
}

// poolMarker names a pool whose elements (in pools6 or pools4, and nat6
// or nat4 as it asks) table inet duet holds, as an element of the marker
// set (an ifname: at most 15 bytes).
func poolMarker(p Pool) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s %v", p.CIDR.Masked(), p.NAT))
	return "p" + hex.EncodeToString(h[:])[:14]
}

// ifname encodes an interface name as nft's ifname type: 16 bytes.
func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

// pad4 pads a concatenation component to a 32-bit register boundary.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return v[:]
	}
	v := a.As16()
	return v[:]
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// FastAddPod is AddPodElements as one netlink batch. The pools' own
// elements are written by the nft path: the batch checks their markers.
func FastAddPod(pod Pod, pools []Pool) (FastOp, error) {
	if pod.HostIf == "" || len(pod.MAC) != 6 {
		return FastOp{}, fmt.Errorf("firewall: pod needs a host interface and a MAC (got %q, %v)", pod.HostIf, pod.MAC)
	}
	fam := pod.family()
	op := FastOp{Add: true, Checks: []RawElement{marker(fam, "v")}}
	for _, p := range pools {
		op.Checks = append(op.Checks, marker(Inet, poolMarker(p)))
	}
	name := ifname(pod.HostIf)
	op.Elements = append(op.Elements,
		RawElement{Family: fam, Set: setMACs, Key: cat(name, pod.MAC)})
	for _, src := range pod.sources() {
		first, last := cat(name, addrBytes(src.Masked().Addr())), cat(name, addrBytes(lastAddr(src)))
		if src.Addr().Is6() {
			op.Elements = append(op.Elements, RawElement{Family: fam, Set: setNDTargets, Key: first, KeyEnd: last})
		}
		el := RawElement{Family: fam, Set: sourceSet(src), Key: first}
		if !src.IsSingleIP() {
			el.KeyEnd = last // an interval set's element is a range
		}
		op.Elements = append(op.Elements, el)
	}
	for _, p := range pools {
		set := setPodPools4
		if p.CIDR.Addr().Is6() {
			set = setPodPools6
		}
		op.Elements = append(op.Elements, RawElement{Family: Inet, Set: set,
			Key: cat(name, addrBytes(p.CIDR.Masked().Addr())), KeyEnd: cat(name, addrBytes(lastAddr(p.CIDR)))})
	}
	return op, nil
}

// cat concatenates nft key components, each padded to a register.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, pad4(p)...)
	}
	return out
}
