// Zero configuration: no pools, no mode, no families; only a datastore
// path so the test does not touch /var/lib/duet.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"net/netip"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestZeroConfig(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	// Before the first ADD, so the IPv4 pool is chosen clear of it.
	targets := hostTarget(t, targetPrefixes("dual", 0x20)...)
	n := duetNetwork(t, nil)
	a, b := n.newPod(t), n.newPod(t)
	for _, p := range []*pod{a, b} {
		n.add(t, p)
		noTentative(t, p.path)
		noTentative(t, "", p.hostIf(n))
		if len(p.res.IPs) != 2 {
			t.Fatalf("pod %s got %d addresses, want IPv6 and IPv4: %+v", p.id, len(p.res.IPs), p.res.IPs)
		}
		for i, want := range []netip.Prefix{netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.0/8")} {
			got, _ := netip.AddrFromSlice(p.res.IPs[i].Address.IP)
			bits, _ := p.res.IPs[i].Address.Mask.Size()
			if got = got.Unmap(); !want.Contains(got) || bits != got.BitLen() {
				t.Errorf("IPs[%d] = %s/%d, want a /%d in %s", i, got, bits, got.BitLen(), want)
			}
		}
	}

	v := duetctlShow(t, n.store)
	var pools []netip.Prefix
	for _, ps := range v.Pools {
		for _, p := range ps {
			pools = append(pools, p.CIDR)
		}
	}
	if len(pools) != 2 || pools[0].Bits() != 48 || !netip.MustParsePrefix("fd00::/8").Contains(pools[0].Addr()) ||
		pools[1].Bits() != 16 || !netip.MustParsePrefix("10.0.0.0/8").Contains(pools[1].Addr()) {
		t.Errorf("zero-config pools %v, want a ULA /48 and a 10.x /16 (duetctl: %+v)", pools, v.Pools)
	}
	for _, p := range []*pod{a, b} {
		for i, v6 := range []bool{true, false} {
			if addr, _ := p.addr(v6); i < len(pools) && !pools[i].Contains(addr) {
				t.Errorf("pod address %s is outside pool %s", addr, pools[i])
			}
		}
	}

	connectivity(t, []*pod{a, b}, targets, []bool{true, false})
	for _, p := range []*pod{a, b} {
		if err := n.check(p); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		n.del(t, p)
		assertGone(t, n, p)
	}
}
