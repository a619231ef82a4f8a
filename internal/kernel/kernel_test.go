package kernel

import (
	"net"
	"net/netip"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"},
		{IPv6Conf("eth0.100", "accept_ra"), "/proc/sys/net/ipv6/conf/eth0.100/accept_ra"},
		{IPv4Conf("br-x", "rp_filter"), "/proc/sys/net/ipv4/conf/br-x/rp_filter"},
	} {
		if got := sysctlPath(tc.name); got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPrefixOf(t *testing.T) {
	for _, tc := range []struct {
		in   *net.IPNet
		mask bool
		want string
	}{
		{&net.IPNet{IP: net.ParseIP("fd00:dead::5"), Mask: net.CIDRMask(64, 128)}, false, "fd00:dead::5/64"},
		{&net.IPNet{IP: net.ParseIP("fd00:dead::5"), Mask: net.CIDRMask(64, 128)}, true, "fd00:dead::/64"},
		{&net.IPNet{IP: net.ParseIP("10.250.1.7"), Mask: net.CIDRMask(24, 32)}, true, "10.250.1.0/24"},
		{&net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, false, "0.0.0.0/0"},
	} {
		got, ok := prefixOf(tc.in, tc.mask)
		if !ok || got != netip.MustParsePrefix(tc.want) {
			t.Errorf("prefixOf(%v, %v) = %v, %v; want %s", tc.in, tc.mask, got, ok, tc.want)
		}
	}
	if _, ok := prefixOf(nil, false); ok {
		t.Error("prefixOf(nil) ok")
	}
}

func TestRandomMAC(t *testing.T) {
	m := RandomMAC()
	if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("RandomMAC() = %s, want unicast, locally administered", m)
	}
}

func TestRouteString(t *testing.T) {
	r := Route{Dst: DefaultRoute(netip.MustParseAddr("fe80::1")), GW: netip.MustParseAddr("fe80::1"), Dev: "eth0"}
	if got, want := r.String(), "::/0 via fe80::1 dev eth0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
