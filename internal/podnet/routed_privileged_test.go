// Privileged tests: they create network namespaces, veth pairs, bridges
// and host routes (all with test-unique names and addresses in
// fd00:dead::/48 and 10.250.0.0/16), and turn host forwarding on, putting
// it back afterwards. Run as root:
//
//	go test ./internal/podnet/ ./internal/kernel/
//
// Without root they skip, or fail when the CI variable is set.
package podnet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestRoutedDualStack(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	hostAddrs := hostTarget(t, "fd00:dead:ff::1/128", "10.250.255.1/32")
	a := newPod(t, Routed, "fd00:dead:1::5/128", "10.250.1.5/32")
	b := newPod(t, Routed, "fd00:dead:1::6/128", "10.250.1.6/32")
	res := a.setup(t)
	b.setup(t)

	want := Result{
		HostIfName: a.spec.HostIfName,
		PodIfName:  "eth0",
		Gateways:   []netip.Addr{GatewayV6, GatewayV4},
		Routes:     []Route{{Dst: pfx("::/0"), GW: GatewayV6}, {Dst: pfx("0.0.0.0/0"), GW: GatewayV4}},
	}
	if diff := cmp.Diff(want, res, cmpIP, cmp.FilterPath(func(p cmp.Path) bool {
		return strings.HasSuffix(p.String(), "MAC")
	}, cmp.Ignore())); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	if len(res.HostMAC) != 6 || len(res.PodMAC) != 6 {
		t.Errorf("MACs %s %s", res.HostMAC, res.PodMAC)
	}
	pingAll(t, []*pod{a, b}, hostAddrs)
	must(t, Check(a.spec))

	// A retried ADD changes nothing.
	before := dump(t, a)
	again, err := Setup(a.spec)
	must(t, err)
	if diff := cmp.Diff(res, again, cmpIP); diff != "" {
		t.Errorf("second Setup result (-first +second):\n%s", diff)
	}
	if after := dump(t, a); after != before {
		t.Errorf("second Setup changed the kernel:\n%s\n---\n%s", before, after)
	}

	// CHECK notices a missing host route; ADD again repairs it.
	ip(t, "", "route", "del", "10.250.1.5/32", "dev", a.spec.HostIfName)
	if err := Check(a.spec); err == nil || !strings.Contains(err.Error(), "10.250.1.5/32") {
		t.Errorf("Check after deleting the host route = %v, want an error naming it", err)
	}
	_, err = Setup(a.spec)
	must(t, err)
	must(t, Check(a.spec))
	pingAll(t, []*pod{a, b}, hostAddrs)

	for range 2 {
		must(t, Teardown(a.spec.NetNS, a.spec.IfName, a.spec.HostIfName))
	}
	linkGone(t, a.spec.HostIfName)
	if out := ip(t, "", "route", "show", "10.250.1.5"); out != "" {
		t.Errorf("host route left after Teardown: %s", out)
	}
	if err := Check(a.spec); err == nil {
		t.Error("Check after Teardown passed")
	}
}

func TestRoutedSingleFamily(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	for _, tc := range []struct {
		name   string
		a, b   string
		target string
	}{
		{"IPv6-only", "fd00:dead:2::5/128", "fd00:dead:2::6/128", "fd00:dead:fe::1/128"},
		{"IPv4-only", "10.250.2.5/32", "10.250.2.6/32", "10.250.254.1/32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostAddrs := hostTarget(t, tc.target)
			a, b := newPod(t, Routed, tc.a), newPod(t, Routed, tc.b)
			a.setup(t)
			b.setup(t)
			pingAll(t, []*pod{a, b}, hostAddrs)
			must(t, Check(a.spec))
			if tc.name == "IPv4-only" {
				// No IPv6 address at all: not even a link-local.
				if out := ip(t, a.ns, "-6", "addr", "show", "dev", "eth0"); out != "" {
					t.Errorf("IPv6 addresses on an IPv4-only pod: %s", out)
				}
			}
			must(t, Teardown(a.spec.NetNS, a.spec.IfName, a.spec.HostIfName))
			linkGone(t, a.spec.HostIfName)
		})
	}
}

// TestRoutedStates replays address sets (as a retried ADD with new IPAM
// results would) in random order on one pod: after each, the kernel holds
// exactly the planned addresses and routes, nothing left from before.
func TestRoutedStates(t *testing.T) {
	kerneltest.RequireRoot(t)
	states := [][]string{
		{"fd00:dead:3::5/128", "10.250.3.5/32"},
		{"fd00:dead:3::5/128"},
		{"10.250.3.6/32"},
		{"fd00:dead:3::7/128", "fd00:dead:3::8/128", "10.250.3.5/32"},
	}
	p := newPod(t, Routed)
	host, err := kernel.HostNS()
	must(t, err)
	defer host.Close()
	podNS, err := kernel.OpenNS(p.spec.NetNS)
	must(t, err)
	defer podNS.Close()
	for _, i := range append(rand.Perm(len(states)), rand.Perm(len(states))...) {
		p.spec.Addresses = nil
		for _, a := range states[i] {
			p.spec.Addresses = append(p.spec.Addresses, pfx(a))
		}
		t.Logf("state %d: %v", i, states[i])
		res := p.setup(t)
		must(t, Check(p.spec))
		d, _ := Plan(p.spec)
		exact(t, "pod addresses", addrsOf(d.Pod, kernel.Link{MAC: res.PodMAC}), addrs(t, podNS, "eth0"))
		exact(t, "pod routes", d.Pod.Routes, routes(t, podNS, "eth0"))
		exact(t, "host routes", d.Host.Routes, routes(t, host, p.spec.HostIfName))
	}
}

func addrs(t *testing.T, n *kernel.NS, link string) []netip.Prefix {
	as, err := n.Addrs(link)
	must(t, err)
	var out []netip.Prefix
	for _, a := range as {
		out = append(out, a.Prefix)
	}
	return out
}

func routes(t *testing.T, n *kernel.NS, link string) []kernel.Route {
	rs, err := n.Routes(link)
	must(t, err)
	return rs
}

// exact fails unless got and want hold the same elements, in any order.
func exact[T any](t *testing.T, what string, want, got []T) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpIP, cmpopts.SortSlices(func(a, b T) bool {
		return fmt.Sprint(a) < fmt.Sprint(b)
	}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

var timers = regexp.MustCompile(`\S+_timer\s+\S+`)

// dump renders the kernel state Setup owns, to compare before and after.
func dump(t *testing.T, p *pod) string {
	t.Helper()
	var out []string
	for _, args := range [][]string{
		{"-d", "link", "show", "dev", "eth0"}, {"addr", "show", "dev", "eth0"},
		{"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"},
		{"neigh", "show", "nud", "permanent"},
	} {
		out = append(out, ip(t, p.ns, args...))
	}
	for _, args := range [][]string{
		{"-d", "link", "show", "dev", p.spec.HostIfName}, {"addr", "show", "dev", p.spec.HostIfName},
		{"route", "show", "dev", p.spec.HostIfName}, {"-6", "route", "show", "dev", p.spec.HostIfName},
	} {
		out = append(out, ip(t, "", args...))
	}
	// Lifetimes and bridge port timers move on their own.
	lines := slices.DeleteFunc(strings.Split(strings.Join(out, ""), "\n"), func(l string) bool {
		return strings.Contains(l, "valid_lft") || strings.Contains(l, "expires")
	})
	return timers.ReplaceAllString(strings.Join(lines, "\n"), "")
}
