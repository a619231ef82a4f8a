// A pool that contains the host's own uplink prefix is refused before
// anything is allocated: pods could be handed the addresses of the other
// hosts on that link.
//
// Privileged: run as root with `go test ./test/e2e/`.

package e2e

import (
	"net/netip"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestPoolContainsUplink(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	// Give the host an uplink-like prefix of its own, on a test veth.
	a, b := kerneltest.Name("e2eu"), kerneltest.Name("e2ev")
	kerneltest.Run(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	kerneltest.DeleteLinkOnCleanup(t, a)
	kerneltest.Run(t, "ip", "addr", "add", "fd00:e2e:77:1::1/64", "dev", a, "nodad")
	kerneltest.Run(t, "ip", "addr", "add", "10.250.177.1/24", "dev", a)
	kerneltest.Run(t, "ip", "link", "set", a, "up")
	host, err := kernel.HostNS()
	if err != nil {
		t.Fatal(err)
	}
	onlink, err := host.OnLinkPrefixes()
	host.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, o := range onlink {
		seen = seen || o.Prefix == netip.MustParsePrefix("fd00:e2e:77:1::/64")
	}
	if !seen {
		t.Fatalf("the test uplink prefix is not on-link: %v", onlink)
	}
	n := duetNetwork(t, map[string]any{"pools": []any{
		map[string]any{"cidr": "fd00:e2e:77::/48"}, // contains fd00:e2e:77:1::/64
		map[string]any{"cidr": testPool(false, 0x14).String()},
	}})
	p := n.newPod(t)
	links, routes := dtLinks(t), testRoutes(t)
	e := execFail(t, execCmd("duet", "ADD", p.id, p.path, p.ifName, jsonBytes(t, n.conf)))
	t.Logf("code %d: %s", e.Code, e.Msg)
	if e.Code != 7 || !contains(e.Msg, "fd00:e2e:77::/48", "fd00:e2e:77:1::/64", a) {
		t.Errorf("code %d %q: want 7 naming the pool, the uplink prefix and its interface", e.Code, e.Msg)
	}
	nothingLeft(t, n, p, links, routes)
}
