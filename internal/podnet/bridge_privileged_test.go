// Privileged tests; see routed_privileged_test.go for how to run them.
package podnet

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// newBridgePod is newPod for bridge mode on bridge br with gateways gws.
func newBridgePod(t *testing.T, br string, gws []netip.Prefix, addrs ...string) *pod {
	t.Helper()
	p := newPod(t, Bridge, addrs...)
	p.spec.BridgeName = br
	p.spec.BridgeGateways = gws
	return p
}

// newBridgeName returns a unique bridge name deleted when the test ends.
func newBridgeName(t *testing.T) string {
	br := kerneltest.Name("dtbr")
	kerneltest.DeleteLinkOnCleanup(t, br)
	return br
}

func TestBridge(t *testing.T) {
	kerneltest.RequireRoot(t)
	// Bridged frames pass the host's iptables FORWARD too (br_netfilter).
	kerneltest.AllowHostForward(t)
	for _, tc := range []struct {
		name string
		gws  []string
		a, b []string
	}{
		{"dual-stack", []string{"fd00:dead:11::1/64", "10.250.11.1/24"},
			[]string{"fd00:dead:11::5/64", "10.250.11.5/24"}, []string{"fd00:dead:11::6/64", "10.250.11.6/24"}},
		{"IPv6-only", []string{"fd00:dead:12::1/64"}, []string{"fd00:dead:12::5/64"}, []string{"fd00:dead:12::6/64"}},
		{"IPv4-only", []string{"10.250.13.1/24"}, []string{"10.250.13.5/24"}, []string{"10.250.13.6/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := newBridgeName(t)
			var gws []netip.Prefix
			var gwAddrs []netip.Addr
			for _, g := range tc.gws {
				gws = append(gws, pfx(g))
				gwAddrs = append(gwAddrs, pfx(g).Addr())
			}
			a := newBridgePod(t, br, gws, tc.a...)
			b := newBridgePod(t, br, gws, tc.b...)
			res := a.setup(t)
			noTentative(t, "", "dev", br)
			b.setup(t)
			if res.BridgeName != br || len(res.BridgeMAC) != 6 {
				t.Errorf("Result bridge %q %s", res.BridgeName, res.BridgeMAC)
			}
			// Pods reach each other over L2 and the host through the
			// bridge's gateway addresses, without forwarding.
			pingAll(t, []*pod{a, b}, gwAddrs)
			if hasFamily(a, true) {
				ping(t, a.ns, netip.MustParseAddr("fe80::1%eth0"))
			}
			must(t, Check(a.spec))
			if out := ip(t, "", "-d", "link", "show", "dev", a.spec.HostIfName); !strings.Contains(out, "hairpin on") || !strings.Contains(out, "master "+br) {
				t.Errorf("bridge port:\n%s", out)
			}

			before := dump(t, a)
			_, err := Setup(a.spec)
			must(t, err)
			if after := dump(t, a); after != before {
				t.Errorf("second Setup changed the kernel:\n%s\n---\n%s", before, after)
			}

			// Teardown leaves the bridge to the network's other pods.
			for range 2 {
				must(t, Teardown(a.spec.NetNS, a.spec.IfName, a.spec.HostIfName))
			}
			linkGone(t, a.spec.HostIfName)
			ip(t, "", "link", "show", "dev", br)
			if err := Check(a.spec); err == nil {
				t.Error("Check after Teardown passed")
			}
			must(t, Check(b.spec))
			pingAll(t, []*pod{b}, gwAddrs)
		})
	}
}

// TestBridgeExisting: a bridge made by someone else keeps its addresses,
// and a link of another kind under the bridge's name is refused.
func TestBridgeExisting(t *testing.T) {
	kerneltest.RequireRoot(t)
	br := newBridgeName(t)
	ip(t, "", "link", "add", br, "type", "bridge")
	ip(t, "", "addr", "add", "10.250.14.200/24", "dev", br)
	a := newBridgePod(t, br, []netip.Prefix{pfx("10.250.14.1/24")}, "10.250.14.5/24")
	a.setup(t)
	out := ip(t, "", "addr", "show", "dev", br)
	if !strings.Contains(out, "10.250.14.200/24") || !strings.Contains(out, "10.250.14.1/24") {
		t.Errorf("bridge addresses:\n%s", out)
	}
	ping(t, a.ns, netip.MustParseAddr("10.250.14.200"))

	notBridge := newPod(t, Bridge, "10.250.15.5/24")
	notBridge.spec.BridgeName = a.spec.HostIfName // a veth
	notBridge.spec.BridgeGateways = []netip.Prefix{pfx("10.250.15.1/24")}
	if _, err := Setup(notBridge.spec); err == nil {
		t.Error("Setup onto a veth as bridge succeeded")
	}
	linkGone(t, notBridge.spec.HostIfName)
}
