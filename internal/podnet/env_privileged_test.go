// Helpers for the privileged tests; see setup_privileged_test.go for how
// to run them.
package podnet

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// pod is a test pod: its namespace, and the spec that attaches it.
type pod struct {
	ns   string // name for "ip netns exec"
	spec Spec
}

// newPod makes a namespace and a spec with a unique host interface name,
// cleaning both up when the test ends.
func newPod(t *testing.T, mode Mode, addrs ...string) *pod {
	t.Helper()
	path := kerneltest.NetNS(t)
	hostIf := kerneltest.Name("dt")
	kerneltest.DeleteLinkOnCleanup(t, hostIf)
	spec := Spec{Mode: mode, NetNS: path, IfName: "eth0", HostIfName: hostIf, MTU: 1400}
	for _, a := range addrs {
		spec.Addresses = append(spec.Addresses, netip.MustParsePrefix(a))
	}
	return &pod{ns: kerneltest.NetNSName(path), spec: spec}
}

// setup runs Setup and asserts IPv6 is usable at once: nothing tentative
// on either end.
func (p *pod) setup(t *testing.T) Result {
	t.Helper()
	res, err := Setup(p.spec)
	if err != nil {
		t.Fatalf("Setup(%+v): %v", p.spec, err)
	}
	noTentative(t, p.ns)
	noTentative(t, "", "dev", p.spec.HostIfName)
	return res
}

// addr returns the pod's address of a's family.
func (p *pod) addr(v6 bool) netip.Addr {
	for _, a := range p.spec.Addresses {
		if a.Addr().Is6() == v6 {
			return a.Addr()
		}
	}
	panic("no address of that family")
}

// noTentative fails if any IPv6 address in ns ("" for the host, narrowed by
// filter) is tentative or failed DAD.
func noTentative(t *testing.T, ns string, filter ...string) {
	t.Helper()
	for _, state := range []string{"tentative", "dadfailed"} {
		args := append(append([]string{"-6", "addr", "show"}, filter...), state)
		if out := ip(t, ns, args...); strings.TrimSpace(out) != "" {
			t.Errorf("%s addresses in %q: %s", state, ns, out)
		}
	}
}

// ip runs iproute2 in ns ("" for the host).
func ip(t *testing.T, ns string, args ...string) string {
	t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return kerneltest.Run(t, "ip", args...)
}

// ping sends exactly one echo request from ns ("" for the host) and fails
// the test unless it is answered within a second: no retry, so a
// tentative address or a slow first neighbour lookup shows up.
func ping(t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	args := []string{"ping", "-c1", "-W1", dst.String()}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// hostTarget gives the host local addresses to ping, on a veth pair of its
// own, so no existing host interface is touched.
func hostTarget(t *testing.T, addrs ...string) []netip.Addr {
	t.Helper()
	name := kerneltest.Name("dt")
	ip(t, "", "link", "add", name, "type", "veth", "peer", "name", name+"p")
	kerneltest.DeleteLinkOnCleanup(t, name)
	host, err := kernel.HostNS()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var out []netip.Addr
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		if err := host.AddAddr(name, p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Addr())
	}
	ip(t, "", "link", "set", name, "up")
	ip(t, "", "link", "set", name+"p", "up")
	return out
}

// pingAll pings every pair among pods and from each pod to each host
// address and back, in every family the pods share.
func pingAll(t *testing.T, pods []*pod, hostAddrs []netip.Addr) {
	t.Helper()
	for _, v6 := range []bool{true, false} {
		for _, a := range pods {
			if !hasFamily(a, v6) {
				continue
			}
			for _, b := range pods {
				if a != b {
					ping(t, a.ns, b.addr(v6))
				}
			}
			for _, h := range hostAddrs {
				if h.Is6() == v6 {
					ping(t, a.ns, h)
				}
			}
			ping(t, "", a.addr(v6))
		}
	}
}

func hasFamily(p *pod, v6 bool) bool {
	for _, a := range p.spec.Addresses {
		if a.Addr().Is6() == v6 {
			return true
		}
	}
	return false
}

// linkGone fails unless the host has no link called name.
func linkGone(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "show", name).CombinedOutput(); err == nil {
		t.Errorf("link %s still exists: %s", name, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
