package podnet

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// A runtime that moves the pod end itself (Docker) gets the pair with the
// host end complete here and the pod end, down, in the runtime's
// namespace; IPv6 fixtures first.
func TestRuntimeMoves(t *testing.T) {
	kerneltest.RequireRoot(t)
	runtimeNS := kerneltest.NetNS(t)
	hostIf, podIf := kerneltest.Name("dt"), kerneltest.Name("dc")
	kerneltest.DeleteLinkOnCleanup(t, hostIf)
	mac := net.HardwareAddr{0x02, 0xd0, 0xe7, 0, 0, 7}
	spec := Spec{Mode: Routed, NetNS: runtimeNS, IfName: podIf, HostIfName: hostIf, MTU: 1400, MAC: mac, RuntimeMoves: true,
		Addresses: []netip.Prefix{netip.MustParsePrefix("fd00:dead:7::5/128"), netip.MustParsePrefix("10.250.7.5/32")}}
	res, err := Setup(spec)
	must(t, err)
	if res.PodIfName != podIf || res.PodMAC.String() != mac.String() || len(res.Gateways) != 2 {
		t.Errorf("result %+v", res)
	}
	rt := kerneltest.NetNSName(runtimeNS)
	if l := kerneltest.Run(t, "ip", "-n", rt, "-o", "link", "show", podIf); !strings.Contains(l, mac.String()) || strings.Contains(l, ",UP") {
		t.Errorf("the pod end in the runtime's namespace: %s, want %s and down", l, mac)
	}
	addrs := kerneltest.Run(t, "ip", "-o", "addr", "show", "dev", hostIf)
	for _, want := range []string{"inet6 fe80::1/64", "inet 169.254.1.1/32 scope link"} {
		if !strings.Contains(addrs, want) {
			t.Errorf("host end lacks %q:\n%s", want, addrs)
		}
	}
	r6 := kerneltest.Run(t, "ip", "-6", "route", "show", "dev", hostIf)
	r4 := kerneltest.Run(t, "ip", "-4", "route", "show", "dev", hostIf)
	if !strings.Contains(r6, "fd00:dead:7::5") || !strings.Contains(r4, "10.250.7.5") || strings.Contains(r4, "scope link") {
		t.Errorf("host routes: %s / %s, want both, the IPv4 one scope global", r6, r4)
	}
	// The host never sends from its end's 169.254.1.1.
	if got := kerneltest.Run(t, "ip", "route", "get", "10.250.7.5"); strings.Contains(got, "src 169.254.1.1") {
		t.Errorf("route to the pod picks 169.254.1.1 as source: %s", got)
	}
	// Again: the same pair, reconciled.
	again, err := Setup(spec)
	must(t, err)
	if again.HostIfName != res.HostIfName || again.PodMAC.String() != res.PodMAC.String() {
		t.Errorf("second Setup: %+v", again)
	}
	must(t, Teardown(runtimeNS, podIf, hostIf))
	if out := kerneltest.Run(t, "ip", "-n", rt, "-o", "link", "show"); strings.Contains(out, podIf) {
		t.Errorf("the pod end is left: %s", out)
	}
}
