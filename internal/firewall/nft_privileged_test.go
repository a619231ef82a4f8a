// Privileged: run as root with `go test ./internal/firewall/`. Loads every
// rendered script into the real nft, in a namespace of its own, because
// knftables' fake does not parse rule expressions.
package firewall

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func nft(t *testing.T, netns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\nscript:\n%s", err, out, script)
	}
}

func TestScriptsLoadInRealNFT(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, bridged := range []bool{false, true} {
		ns := kerneltest.NetNSName(kerneltest.NetNS(t))
		p := Pod{HostIf: "dt1", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}, Bridged: bridged,
			Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("10.7.0.2")},
			// Covers the pod's own addresses: must not collide with them.
			AllowedSources: []netip.Prefix{netip.MustParsePrefix("fd00:1::/48"), netip.MustParsePrefix("10.7.0.0/16"), netip.MustParsePrefix("2001:db8:9::/64")}}
		other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 6}, Bridged: bridged, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::3")}}
		for _, pod := range []Pod{p, p, other} { // ADD twice is idempotent
			script, err := AddPodScript(pod, pool)
			if err != nil {
				t.Fatal(err)
			}
			nft(t, ns, script)
		}
		fast, err := AddPodElementsScript(other, pool) // the fast path on the table just written
		if err != nil {
			t.Fatal(err)
		}
		nft(t, ns, fast)
		for i := 0; i < 3; i++ { // DEL three times: fast path, then full scripts
			script, err := RemovePodScript(p)
			if i == 0 {
				script, err = RemovePodElementsScript(p)
			}
			if err != nil {
				t.Fatal(err)
			}
			nft(t, ns, script)
		}
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), `"dt1"`) || !strings.Contains(string(out), `"dt2"`) {
			t.Fatalf("bridged=%v: after removing dt1 the ruleset is:\n%s", bridged, out)
		}
	}
}
