// duet-ipam under the reference bridge and ptp plugins (CNI 1.0.0, what
// Debian's containernetworking-plugins speak), dual-stack.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestDuetIPAM(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, tc := range []struct {
		plugin string
		n      int
	}{
		{"bridge", 0x14},
		{"ptp", 0x15},
	} {
		t.Run(tc.plugin, func(t *testing.T) {
			kerneltest.Forwarding(t)
			if _, err := exec.LookPath(filepath.Join(refPluginDir, tc.plugin)); err != nil {
				t.Fatalf("reference plugin %s: %v (apt-get install containernetworking-plugins)", tc.plugin, err)
			}
			store := filepath.Join(t.TempDir(), "duet.db")
			conf := map[string]any{"type": tc.plugin, "ipam": map[string]any{
				"type": "duet-ipam", "families": "dual", "pools": testPools("dual", tc.n),
				"datastore": map[string]any{"path": store},
			}}
			if tc.plugin == "bridge" {
				br := kerneltest.Name("e2ebr")
				kerneltest.DeleteLinkOnCleanup(t, br) // after the pods' cleanup
				conf["bridge"], conf["isGateway"] = br, true
			}
			n := newNetwork(t, "1.0.0", conf, store)
			a, b := n.newPod(t), n.newPod(t)
			for _, p := range []*pod{a, b} {
				start := time.Now()
				n.add(t, p)
				t.Logf("%s ADD took %s", tc.plugin, time.Since(start))
				checkIPAMResult(t, p, tc.n)
				if _, ok := readStore(t, store).allocation(p.handle(n)); !ok {
					t.Errorf("store has no allocation for %s", p.id)
				}
			}
			holders(t, readStore(t, store))
			for _, v6 := range []bool{true, false} {
				x, _ := a.addr(v6)
				y, _ := b.addr(v6)
				if x == y {
					t.Errorf("both pods got %s", x)
				}
				// The reference plugins leave DAD on (the bridge's and
				// ptp's host-side gateway addresses start tentative), so
				// unlike duet's own pods these may need a moment.
				start := time.Now()
				pingSoon(t, a.ns, y)
				pingSoon(t, b.ns, x)
				t.Logf("%s pings answered after %s", famName(v6), time.Since(start))
			}
			for _, p := range []*pod{a, b} {
				n.del(t, p)
				n.del(t, p)
				if alloc, ok := readStore(t, store).allocation(p.handle(n)); ok {
					t.Errorf("DEL left %+v", alloc)
				}
			}
			if v := readStore(t, store); len(v.Allocations) != 0 {
				t.Errorf("allocations left: %+v", v.Allocations)
			}
			holders(t, readStore(t, store))
		})
	}
}

// checkIPAMResult checks what duet-ipam documents: IPv6 first, the pool's
// prefix length, the pool's first address as gateway.
func checkIPAMResult(t *testing.T, p *pod, rangeN int) {
	t.Helper()
	if len(p.res.IPs) != 2 {
		t.Fatalf("result has %d IPs, want 2: %+v", len(p.res.IPs), p.res.IPs)
	}
	for i, v6 := range []bool{true, false} {
		ip := p.res.IPs[i]
		pool := testPool(v6, rangeN)
		addr, _ := netip.AddrFromSlice(ip.Address.IP)
		gw, _ := netip.AddrFromSlice(ip.Gateway)
		bits, _ := ip.Address.Mask.Size()
		if !pool.Contains(addr.Unmap()) || bits != pool.Bits() || gw.Unmap() != pool.Addr().Next() {
			t.Errorf("IPs[%d] = %s gateway %s, want an address of %s with its length and gateway %s", i, ip.Address.String(), ip.Gateway, pool, pool.Addr().Next())
		}
	}
}

// pingSoon pings from nsName until one answer comes back, for up to 5 s.
func pingSoon(t *testing.T, nsName string, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", nsName, "ping", "-c1", "-W1", dst.String()).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("ping %s from %s: %v\n%s", dst, nsName, err, strings.TrimSpace(string(out)))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
