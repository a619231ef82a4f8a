// Privileged tests: they create network namespaces, veths and bridges, and
// change host sysctls (put back afterwards). Run as root:
//
//	go test ./internal/podnet/ ./internal/kernel/
//
// Without root they skip, or fail when CI is set.
package kernel_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func open(t *testing.T, path string) *kernel.NS {
	t.Helper()
	var n *kernel.NS
	var err error
	if path == "" {
		n, err = kernel.HostNS()
	} else {
		n, err = kernel.OpenNS(path)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestOpenNSMissing(t *testing.T) {
	kerneltest.RequireRoot(t)
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/var/run/netns/duet-t-absent", file} {
		if _, err := kernel.OpenNS(p); !errors.Is(err, kernel.ErrNoNetNS) {
			t.Errorf("OpenNS(%s) = %v, want ErrNoNetNS", p, err)
		}
	}
}

// TestVethAcrossNamespaces makes a pair with one end in a pod namespace and
// drives addresses, routes, neighbours and sysctls there.
func TestVethAcrossNamespaces(t *testing.T) {
	kerneltest.RequireRoot(t)
	host, pod := open(t, ""), open(t, kerneltest.NetNS(t))
	hostIf := kerneltest.Name("dt")
	kerneltest.DeleteLinkOnCleanup(t, hostIf)
	mac := kernel.RandomMAC()
	if err := host.AddVeth(kernel.Veth{Name: hostIf, MTU: 1400, PeerName: "eth0", PeerNS: pod, PeerMAC: mac}); err != nil {
		t.Fatal(err)
	}
	h, err := host.Link(hostIf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pod.Link("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != "veth" || h.PeerIndex != p.Index || p.PeerIndex != h.Index || p.MTU != 1400 || h.MTU != 1400 || p.MAC.String() != mac.String() {
		t.Fatalf("host end %+v, pod end %+v", h, p)
	}
	if _, err := host.Link("eth0-absent"); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("Link(absent) = %v, want ErrNotFound", err)
	}

	// Sysctls land in the pod's namespace, not the host's.
	ch, err := pod.SetSysctls([]kernel.Sysctl{
		{Name: kernel.IPv6Conf("eth0", "accept_dad"), Value: "0"},
		{Name: kernel.IPv6Conf("eth0", "addr_gen_mode"), Value: "1"},
		{Name: kernel.IPv6Conf("nonexistent0", "accept_ra"), Value: "0", Optional: true},
	})
	if err != nil || len(ch) != 2 {
		t.Fatalf("SetSysctls = %v, %v", ch, err)
	}
	if ch, err := pod.SetSysctls([]kernel.Sysctl{{Name: kernel.IPv6Conf("eth0", "accept_dad"), Value: "0"}}); err != nil || len(ch) != 0 {
		t.Errorf("second SetSysctls = %v, %v; want no change", ch, err)
	}
	if _, err := host.Sysctl(kernel.IPv6Conf("eth0", "accept_dad")); err == nil {
		if v, _ := pod.Sysctl(kernel.IPv6Conf("eth0", "accept_dad")); v != "0" {
			t.Errorf("pod accept_dad = %q", v)
		}
	}

	for _, n := range []*kernel.NS{host, pod} {
		name := hostIf
		if n == pod {
			name = "eth0"
		}
		if err := n.SetLinkUp(name); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.MustParsePrefix("fd00:dead:77::5/128")
	for range 2 {
		if err := pod.AddAddr("eth0", addr); err != nil {
			t.Fatal(err)
		}
		if err := pod.AddAddr("eth0", netip.MustParsePrefix("10.250.77.5/32")); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := pod.Addrs("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(addrs, func(a kernel.Addr) bool { return a.Prefix == addr }); i < 0 || addrs[i].Tentative {
		t.Errorf("addresses %+v: want %s, not tentative", addrs, addr)
	}

	gw := netip.MustParseAddr("fe80::1")
	routes := []kernel.Route{
		{Dst: netip.MustParsePrefix("169.254.1.1/32"), Dev: "eth0"},
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), GW: netip.MustParseAddr("169.254.1.1"), Dev: "eth0"},
		{Dst: netip.MustParsePrefix("::/0"), GW: gw, Dev: "eth0"},
	}
	for range 2 {
		for _, r := range routes {
			if err := pod.ReplaceRoute(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := pod.Routes("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !slices.Contains(got, r) {
			t.Errorf("routes %v: missing %v", got, r)
		}
	}
	if err := pod.DelRoute(routes[2]); err != nil {
		t.Fatal(err)
	}
	if err := pod.DelRoute(routes[2]); err != nil {
		t.Errorf("second DelRoute: %v", err)
	}

	nb := kernel.Neigh{IP: gw, MAC: h.MAC, Dev: "eth0"}
	if err := pod.ReplacePermanentNeigh(nb); err != nil {
		t.Fatal(err)
	}
	neighs, err := pod.Neighs("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(neighs, func(n kernel.Neigh) bool {
		return n.IP == gw && n.Permanent && n.MAC.String() == h.MAC.String()
	}) {
		t.Errorf("neighbours %+v: missing permanent %s", neighs, gw)
	}

	if err := pod.DelAddr("eth0", addr); err != nil {
		t.Fatal(err)
	}
	if err := pod.DelAddr("eth0", addr); err != nil {
		t.Errorf("second DelAddr: %v", err)
	}
	// Deleting the pod end takes the host end with it.
	if err := pod.DeleteLink("eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Link(hostIf); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("host end after deleting pod end: %v", err)
	}
	if err := pod.DeleteLink("eth0"); err != nil {
		t.Errorf("second DeleteLink: %v", err)
	}
}

func TestBridge(t *testing.T) {
	kerneltest.RequireRoot(t)
	n := open(t, kerneltest.NetNS(t))
	for i, want := range []bool{true, false} {
		created, err := n.EnsureBridge("br0", 1400)
		if err != nil || created != want {
			t.Fatalf("EnsureBridge #%d = %v, %v; want %v", i, created, err, want)
		}
	}
	if err := n.AddVeth(kernel.Veth{Name: "p0", MTU: 1400, PeerName: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.EnsureBridge("p0", 1400); err == nil {
		t.Error("EnsureBridge on a veth succeeded")
	}
	for range 2 {
		if err := n.SetMaster("p0", "br0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.SetHairpin("p0", true); err != nil {
		t.Fatal(err)
	}
	if on, err := n.Hairpin("p0"); err != nil || !on {
		t.Errorf("Hairpin = %v, %v", on, err)
	}
	br, _ := n.Link("br0")
	if p, _ := n.Link("p0"); p.MasterIndex != br.Index {
		t.Errorf("p0 master %d, want %d", p.MasterIndex, br.Index)
	}
}

func TestEnableForwarding(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.LockHostSysctls(t)
	host := open(t, "")
	before := map[string]string{}
	keys := []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"}
	ents, _ := os.ReadDir("/proc/sys/net/ipv6/conf")
	for _, e := range ents {
		// Test interfaces come and go concurrently (other test packages).
		if !strings.HasPrefix(e.Name(), "dt") {
			keys = append(keys, kernel.IPv6Conf(e.Name(), "accept_ra"))
		}
	}
	for _, k := range keys {
		before[k], _ = host.Sysctl(k)
	}
	changes, err := kernel.EnableForwarding(netip.IPv6Unspecified(), netip.IPv4Unspecified())
	t.Cleanup(func() { _ = kernel.RestoreSysctls(changes) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes: %v", changes)
	for _, k := range keys[:2] {
		if v, _ := host.Sysctl(k); v != "1" {
			t.Errorf("%s = %s after EnableForwarding", k, v)
		}
	}
	for _, k := range keys[2:] {
		v, _ := host.Sysctl(k)
		special := strings.Contains(k, ".all.") || strings.Contains(k, ".default.") || strings.Contains(k, ".lo.")
		if before[k] == "1" && !special && before["net.ipv6.conf.all.forwarding"] != "1" && v != "2" {
			t.Errorf("%s = %s, want 2", k, v)
		}
	}
	if err := kernel.RestoreSysctls(changes); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if v, _ := host.Sysctl(k); v != before[k] {
			t.Errorf("%s = %s after restore, want %s", k, v, before[k])
		}
	}
}

func TestHostQueries(t *testing.T) {
	kerneltest.RequireRoot(t)
	mtu, err := kernel.DefaultRouteMTU()
	if err != nil || mtu < 1280 {
		t.Errorf("DefaultRouteMTU = %d, %v", mtu, err)
	}
	dummy := kerneltest.Name("dt")
	// A veth rather than a dummy: not every kernel has the dummy driver.
	kerneltest.Run(t, "ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy+"p")
	kerneltest.DeleteLinkOnCleanup(t, dummy)
	kerneltest.Run(t, "ip", "addr", "add", "10.250.99.7/24", "dev", dummy)
	kerneltest.Run(t, "ip", "link", "set", dummy, "up")
	kerneltest.Run(t, "ip", "route", "add", "10.250.98.0/23", "dev", dummy)
	ps, err := kernel.HostPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.250.99.0/24", "10.250.98.0/23", "10.250.99.7/32"} {
		if !slices.Contains(ps, netip.MustParsePrefix(want)) {
			t.Errorf("HostPrefixes lacks %s: %v", want, ps)
		}
	}
	for _, p := range ps {
		if p.Bits() == 0 {
			t.Errorf("HostPrefixes has default %s", p)
		}
	}
}
