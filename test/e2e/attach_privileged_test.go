// The life of two pods through libcni, per mode and family: ADD (result
// and kernel state as documented, nothing tentative), connectivity at the
// first attempt, CHECK (passing, then failing once something is broken),
// DEL twice.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

var (
	gw6       = netip.MustParseAddr("fe80::1")
	gw4Routed = netip.MustParseAddr("169.254.1.1")
)

func TestAttach(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, tc := range []struct {
		mode, families string
		n              int  // the test's address ranges
		noProtections  bool // "protections": false
	}{
		{"routed", "dual", 1, false},
		{"routed", "ipv6", 2, false},
		{"routed", "ipv4", 3, false},
		{"bridge", "dual", 4, false},
		{"bridge", "ipv6", 5, false},
		{"bridge", "ipv4", 6, false},
		{"routed", "dual", 7, true},
		{"bridge", "dual", 8, true},
	} {
		name := tc.mode + "/" + tc.families
		if tc.noProtections {
			name += "/protections-off"
		}
		t.Run(name, func(t *testing.T) {
			kerneltest.Forwarding(t)
			linksBefore := dtLinks(t)
			fams := families(tc.families)
			targets := hostTarget(t, targetPrefixes(tc.families, tc.n)...)
			keys := map[string]any{"mode": tc.mode, "families": tc.families, "pools": testPools(tc.families, tc.n)}
			mtu := 0
			if tc.noProtections { // and an explicit MTU
				keys["protections"], keys["mtu"] = false, 1400
				mtu = 1400
			}
			bridge := ""
			if tc.mode == "bridge" {
				bridge = kerneltest.Name("e2ebr")
				kerneltest.DeleteLinkOnCleanup(t, bridge) // after the pods' cleanup
				keys["bridge"] = bridge
			}
			n := duetNetwork(t, keys)
			a, b := n.newPod(t), n.newPod(t)
			for _, p := range []*pod{a, b} {
				n.add(t, p)
				noTentative(t, p.path)
				noTentative(t, "", p.hostIf(n))
				if bridge != "" {
					noTentative(t, "", bridge)
				}
				checkResult(t, n, p, tc.mode, bridge, tc.n, fams)
				checkKernel(t, n, p, tc.mode, bridge)
				if mtu != 0 {
					checkMTU(t, mtu, p.path, p.ifName)
					checkMTU(t, mtu, "", p.hostIf(n))
				}
			}
			for _, v6 := range fams {
				x, _ := a.addr(v6)
				if y, _ := b.addr(v6); x == y {
					t.Errorf("both pods got %s", x)
				}
			}

			connectivity(t, []*pod{a, b}, targets, fams)

			for _, p := range []*pod{a, b} {
				if err := n.check(p); err != nil {
					t.Errorf("CHECK %s right after ADD: %v", p.id, err)
				}
			}
			// Break a; CHECK must say so, and b stays fine.
			if tc.mode == "routed" {
				addr, _ := a.addr(fams[0])
				kerneltest.Run(t, "ip", "route", "del", netip.PrefixFrom(addr, addr.BitLen()).String())
			} else {
				kerneltest.Run(t, "ip", "link", "set", a.hostIf(n), "nomaster")
			}
			if err := n.check(a); err == nil {
				t.Errorf("CHECK passed after breaking %s's %s", a.id, map[string]string{"routed": "host route", "bridge": "bridge port"}[tc.mode])
			} else {
				t.Logf("CHECK of the broken pod: %v", err)
			}
			if err := n.check(b); err != nil {
				t.Errorf("CHECK %s (untouched): %v", b.id, err)
			}

			for _, p := range []*pod{a, b} {
				n.del(t, p)
				n.del(t, p)
				assertGone(t, n, p)
			}
			if v := duetctlShow(t, n.store); len(v.Allocations) != 0 {
				t.Errorf("duetctl ipam show after DEL: %+v", v.Allocations)
			}
			for l := range dtLinks(t) {
				if !linksBefore[l] {
					t.Errorf("host link %s left after DEL", l)
				}
			}
		})
	}
}

// checkResult compares p's ADD result with what the README documents.
func checkResult(t *testing.T, n *network, p *pod, mode, bridge string, rangeN int, fams []bool) {
	t.Helper()
	res := p.res
	var wantIfs []string
	if bridge != "" {
		wantIfs = append(wantIfs, bridge)
	}
	wantIfs = append(wantIfs, p.hostIf(n), p.ifName)
	var gotIfs []string
	for _, i := range res.Interfaces {
		gotIfs = append(gotIfs, i.Name)
	}
	if !slices.Equal(gotIfs, wantIfs) {
		t.Errorf("result interfaces %v, want %v", gotIfs, wantIfs)
	}
	podIdx := len(res.Interfaces) - 1
	if podIdx < 0 || res.Interfaces[podIdx].Sandbox != p.path {
		t.Errorf("pod interface not last or without sandbox %s: %+v", p.path, res.Interfaces)
	}
	if len(res.IPs) != len(fams) {
		t.Fatalf("result has %d IPs, want %d: %+v", len(res.IPs), len(fams), res.IPs)
	}
	var wantRoutes []string
	for i, v6 := range fams {
		ip := res.IPs[i]
		addr, _ := netip.AddrFromSlice(ip.Address.IP)
		addr = addr.Unmap()
		bits, _ := ip.Address.Mask.Size()
		pool := testPool(v6, rangeN)
		wantBits, wantGW := addr.BitLen(), gw4Routed
		if v6 {
			wantGW = gw6
		}
		if mode == "bridge" {
			wantBits = pool.Bits()
			if !v6 {
				wantGW = pool.Addr().Next()
			}
		}
		gw, _ := netip.AddrFromSlice(ip.Gateway)
		switch {
		case addr.Is6() != v6:
			t.Errorf("IPs[%d] = %s, want %s (IPv6 first)", i, addr, famName(v6))
		case !pool.Contains(addr) || addr == pool.Addr() || addr == pool.Addr().Next():
			t.Errorf("IPs[%d] = %s: not a pod address of pool %s", i, addr, pool)
		case bits != wantBits:
			t.Errorf("IPs[%d] = %s/%d, want /%d", i, addr, bits, wantBits)
		case gw.Unmap() != wantGW:
			t.Errorf("IPs[%d] gateway %s, want %s", i, ip.Gateway, wantGW)
		case ip.Interface == nil || *ip.Interface != podIdx:
			t.Errorf("IPs[%d] interface %v, want %d", i, ip.Interface, podIdx)
		}
		def := "0.0.0.0/0"
		if v6 {
			def = "::/0"
		}
		wantRoutes = append(wantRoutes, def+" via "+wantGW.String())
	}
	var gotRoutes []string
	for _, r := range res.Routes {
		gotRoutes = append(gotRoutes, r.Dst.String()+" via "+r.GW.String())
	}
	if !slices.Equal(gotRoutes, wantRoutes) {
		t.Errorf("result routes %v, want %v", gotRoutes, wantRoutes)
	}
}

// checkKernel checks that the result is real: the pod's addresses with
// their prefix lengths and its default routes, and the host side (routes
// per pod in routed mode; the port on the bridge in bridge mode).
func checkKernel(t *testing.T, n *network, p *pod, mode, bridge string) {
	t.Helper()
	h := handle(t, p.path)
	link, err := h.LinkByName(p.ifName)
	if err != nil {
		t.Fatalf("pod %s: %v", p.id, err)
	}
	have := prefixes(addrs(t, h, link))
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range p.res.IPs {
		addr, _ := netip.AddrFromSlice(ip.Address.IP)
		bits, _ := ip.Address.Mask.Size()
		want := netip.PrefixFrom(addr.Unmap(), bits)
		if !slices.Contains(have, want) {
			t.Errorf("pod %s: %s not on %s (has %v)", p.id, want, p.ifName, have)
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return isDefault(r.Dst) && r.Gw.Equal(ip.Gateway) }) {
			t.Errorf("pod %s: no default route via %s: %v", p.id, ip.Gateway, routes)
		}
	}
	host := handle(t, "")
	hostLink, err := host.LinkByName(p.hostIf(n))
	if err != nil {
		t.Fatalf("host end: %v", err)
	}
	if mode == "bridge" {
		br, err := host.LinkByName(bridge)
		if err != nil {
			t.Fatalf("bridge: %v", err)
		}
		if hostLink.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("host end %s is not a port of %s", hostLink.Attrs().Name, bridge)
		}
		return
	}
	hostRoutes, err := host.RouteList(hostLink, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range p.res.IPs {
		if !slices.ContainsFunc(hostRoutes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == ip.Address.String() }) {
			t.Errorf("host: no route to %s dev %s: %v", ip.Address.String(), hostLink.Attrs().Name, hostRoutes)
		}
	}
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// checkMTU checks the MTU of a link in the namespace at path ("" for the host).
func checkMTU(t *testing.T, want int, path, name string) {
	t.Helper()
	l, err := handle(t, path).LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Attrs().MTU; got != want {
		t.Errorf("%s in %q has MTU %d, want %d", name, path, got, want)
	}
}
