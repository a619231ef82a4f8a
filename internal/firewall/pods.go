package firewall

import (
	"fmt"
	"net"
	"net/netip"
)

// Pod is what the protections need to know of one pod interface.
type Pod struct {
	// HostIf is the host end of the pod's veth: every check is keyed on it.
	HostIf string
	// MAC is the pod interface's MAC address.
	MAC net.HardwareAddr
	// Addrs are the addresses duet assigned.
	Addrs []netip.Addr
	// AllowedSources are extra source prefixes the pod may use (the
	// allowedSourcePrefixes opt-out, for appliances that route or NAT).
	AllowedSources []netip.Prefix
	// Bridged is true in bridge mode: the pod's frames are checked in the
	// bridge table, where pod-to-pod traffic on the bridge is seen too.
	Bridged bool
}

// Pool is a pod prefix and whether traffic from it to anywhere outside
// every pool is masqueraded.
type Pool struct {
	CIDR netip.Prefix
	NAT  bool
}

// LinkLocal is the EUI-64 link-local address the kernel (and podnet)
// derive from mac: the pod's legitimate IPv6 source for neighbour
// discovery.
func LinkLocal(mac net.HardwareAddr) (netip.Addr, bool) {
	if len(mac) != 6 {
		return netip.Addr{}, false
	}
	b := [16]byte{0xfe, 0x80}
	b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b), true
}

func (p Pod) family() Family {
	if p.Bridged {
		return Bridge
	}
	return Inet
}

// elements are the set elements that admit p's traffic.
func (p Pod) elements() ([]object, error) {
	if p.HostIf == "" || len(p.MAC) != 6 {
		return nil, fmt.Errorf("firewall: pod needs a host interface and a MAC (got %q, %v)", p.HostIf, p.MAC)
	}
	fam := p.family()
	el := func(set string, key ...string) object { return elementObj(fam, set, key...) }
	out := []object{el(setMACs, p.HostIf, p.MAC.String())}
	for _, s := range p.sources() {
		if s.Addr().Is6() {
			out = append(out, el(setNDTargets, p.HostIf, hexRange(s)))
		}
		out = append(out, el(sourceSet(s), p.HostIf, prefixString(s)))
	}
	return out, nil
}

// sourceSet is where a source goes: one address into the hash, a wider
// allowed prefix into the interval set.
func sourceSet(s netip.Prefix) string {
	switch {
	case s.Addr().Is6() && s.IsSingleIP():
		return setAddrs6
	case s.Addr().Is6():
		return setPrefixes6
	case s.IsSingleIP():
		return setAddrs4
	}
	return setPrefixes4
}

// sources are the prefixes p may send from: its addresses, its EUI-64
// link-local address when it has IPv6, and its allowed prefixes, with
// none inside another.
func (p Pod) sources() []netip.Prefix {
	var srcs []netip.Prefix
	for _, a := range p.Addrs {
		srcs = append(srcs, netip.PrefixFrom(a, a.BitLen()))
	}
	if ll, ok := LinkLocal(p.MAC); ok && hasIPv6(p.Addrs) {
		srcs = append(srcs, netip.PrefixFrom(ll, 128))
	}
	return uncovered(append(srcs, p.AllowedSources...))
}

// uncovered drops every prefix that another one in ps contains (and
// duplicates): an nft interval set refuses an element inside another,
// even within one transaction, so a pod whose allowedSourcePrefixes
// cover its own address must not add both. (An address covered by an
// allowed prefix is then checked by the interval set alone.)
func uncovered(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if i == j {
				continue
			}
			if q.Bits() < p.Bits() && q.Contains(p.Addr()) || (q == p && j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p.Masked())
		}
	}
	return out
}

// hexRange writes an IPv6 prefix as nft writes raw 128-bit payloads: one
// hex value for a single address, a first-last range otherwise.
func hexRange(p netip.Prefix) string {
	p = p.Masked()
	first := p.Addr().As16()
	last := first
	for i := p.Bits(); i < 128; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	if first == last {
		return fmt.Sprintf("0x%x", first[:])
	}
	return fmt.Sprintf("0x%x-0x%x", first[:], last[:])
}

func hasIPv6(as []netip.Addr) bool {
	for _, a := range as {
		if a.Is6() {
			return true
		}
	}
	return false
}

// prefixString writes a host prefix as a bare address, as nft lists it.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.Masked().String()
}

func poolElements(pools []Pool) []object {
	var out []object
	for _, p := range pools {
		all, nat := setPools4, setNAT4
		if p.CIDR.Addr().Is6() {
			all, nat = setPools6, setNAT6
		}
		k := p.CIDR.Masked().String()
		out = append(out, elementObj(Inet, all, k))
		if p.NAT {
			out = append(out, elementObj(Inet, nat, k))
		}
	}
	return out
}

// podPoolElements record that pod's network has pools: what keeps the
// pools' own elements in place while a pod needs them.
func podPoolElements(pod Pod, pools []Pool) []object {
	var out []object
	for _, p := range pools {
		set := setPodPools4
		if p.CIDR.Addr().Is6() {
			set = setPodPools6
		}
		out = append(out, elementObj(Inet, set, pod.HostIf, p.CIDR.Masked().String()))
	}
	return out
}

// addPod fills t with everything pod needs: both tables (the inet one
// always holds NAT), the pools, and the pod's elements.
func addPod(t *tx, pod Pod, pools []Pool) error {
	els, err := pod.elements()
	if err != nil {
		return err
	}
	ensureTable(t, Inet)
	if pod.Bridged {
		ensureTable(t, Bridge)
	}
	for _, e := range append(append(poolElements(pools), podPoolElements(pod, pools)...), els...) {
		t.add(e)
	}
	addMarkers(t, pod, pools)
	return nil
}

// addMarkers records that the pod's table (and inet's) holds this
// version's rules ("v"), and that inet holds each pool's elements: what
// the netlink fast path checks before it changes a pod's elements alone.
// A pool's marker goes with its elements when its last pod goes.
func addMarkers(t *tx, pod Pod, pools []Pool) {
	for _, fam := range []Family{Inet, pod.family()} {
		t.add(elementObj(fam, markerSet(), "v"))
	}
	for _, p := range pools {
		t.add(elementObj(Inet, markerSet(), poolMarker(p)))
	}
}

// addPodElements fills t with pod's and the pools' elements only, for a
// table that already holds the current static rules: one small
// transaction instead of rewriting chains on every ADD. It fails as a
// whole (touching the marker set first) when the table is missing or was
// written by another version of duet; then use addPod.
func addPodElements(t *tx, pod Pod, pools []Pool) error {
	els, err := pod.elements()
	if err != nil {
		return err
	}
	fams := []Family{Inet}
	if pod.Bridged {
		fams = append(fams, Bridge)
	}
	for _, fam := range fams {
		t.add(elementObj(fam, markerSet(), "v"))
	}
	for _, e := range append(append(poolElements(pools), podPoolElements(pod, pools)...), els...) {
		t.add(e)
	}
	addMarkers(t, pod, pools)
	return nil
}

// removePod fills t with the removal of pod's elements (those its
// allocation says it has). Each element is added, then deleted, so the
// transaction succeeds whether or not it was there: DEL must be
// idempotent, and nft 1.0.6 has no "destroy". DEL's own path is Residue,
// which reads what the table holds instead; this is its fallback, and
// removes the pod's records of pools (not the pools' own elements).
func removePod(t *tx, pod Pod, pools []Pool) error {
	els, err := pod.elements()
	if err != nil {
		return err
	}
	ensureTable(t, pod.family())
	if pod.family() != Inet {
		ensureTable(t, Inet)
	}
	removeElements(t, append(els, podPoolElements(pod, pools)...))
	return nil
}

func removeElements(t *tx, els []object) {
	for _, e := range els {
		t.add(e)
	}
	for _, e := range els {
		t.del(e)
	}
}
