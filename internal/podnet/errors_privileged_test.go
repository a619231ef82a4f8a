// Privileged tests; see routed_privileged_test.go for how to run them.
package podnet

import (
	"errors"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestSetupMissingNetNS(t *testing.T) {
	kerneltest.RequireRoot(t)
	p := newPod(t, Routed, "fd00:dead:21::5/128")
	p.spec.NetNS = "/var/run/netns/duet-t-absent"
	_, err := Setup(p.spec)
	var nerr *NetNSError
	if !errors.As(err, &nerr) || nerr.Path != p.spec.NetNS {
		t.Fatalf("Setup = %v, want *NetNSError", err)
	}
	linkGone(t, p.spec.HostIfName)
	if err := Check(p.spec); !errors.As(err, &nerr) {
		t.Errorf("Check = %v, want *NetNSError", err)
	}
	// Not a namespace at all.
	p.spec.NetNS = "/etc/hostname"
	if _, err := Setup(p.spec); !errors.As(err, &nerr) {
		t.Errorf("Setup into a plain file = %v, want *NetNSError", err)
	}
}

func TestSetupLinkExists(t *testing.T) {
	kerneltest.RequireRoot(t)
	p := newPod(t, Routed, "fd00:dead:22::5/128", "10.250.22.5/32")
	ip(t, p.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "other")
	podBefore := ip(t, p.ns, "-o", "link") + ip(t, p.ns, "addr")
	_, err := Setup(p.spec)
	var lerr *LinkExistsError
	if !errors.As(err, &lerr) || lerr.Name != "eth0" || lerr.NetNS != p.spec.NetNS {
		t.Fatalf("Setup = %v, want *LinkExistsError on eth0 in the pod", err)
	}
	linkGone(t, p.spec.HostIfName)
	if after := ip(t, p.ns, "-o", "link") + ip(t, p.ns, "addr"); after != podBefore {
		t.Errorf("pod changed:\n%s\n---\n%s", podBefore, after)
	}

	// The host name taken by something that is not this pod's veth.
	q := newPod(t, Routed, "fd00:dead:22::6/128")
	ip(t, "", "link", "add", q.spec.HostIfName, "type", "veth", "peer", "name", q.spec.HostIfName+"p")
	_, err = Setup(q.spec)
	if !errors.As(err, &lerr) || lerr.Name != q.spec.HostIfName || lerr.NetNS != "" {
		t.Fatalf("Setup = %v, want *LinkExistsError on %s in the host", err, q.spec.HostIfName)
	}
	if out := ip(t, q.ns, "-o", "link"); len(out) == 0 || strings.Contains(out, "eth0") {
		t.Errorf("pod links after refused Setup:\n%s", out)
	}
}

// TestSetupRollback: a failure after the veth exists removes it, and with
// it every address and route Setup made.
func TestSetupRollback(t *testing.T) {
	kerneltest.RequireRoot(t)
	p := newPod(t, Routed, "fd00:dead:23::5/128", "10.250.23.5/32")
	boom := errors.New("injected")
	testHookReconciled = func() error { return boom }
	t.Cleanup(func() { testHookReconciled = func() error { return nil } })
	if _, err := Setup(p.spec); !errors.Is(err, boom) {
		t.Fatalf("Setup = %v, want the injected error", err)
	}
	linkGone(t, p.spec.HostIfName)
	if out := ip(t, p.ns, "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("pod interface left:\n%s", out)
	}
	if out := ip(t, "", "route", "show", "10.250.23.5"); out != "" {
		t.Errorf("host route left: %s", out)
	}
}

// TestTeardownWithoutNetNS: the pod's namespace is gone; Teardown removes a
// host end still named, and succeeds when there is nothing.
func TestTeardownWithoutNetNS(t *testing.T) {
	kerneltest.RequireRoot(t)
	hostIf := kerneltest.Name("dt")
	kerneltest.DeleteLinkOnCleanup(t, hostIf)
	ip(t, "", "link", "add", hostIf, "type", "veth", "peer", "name", hostIf+"p")
	for range 2 {
		must(t, Teardown("/var/run/netns/duet-t-absent", "eth0", hostIf))
	}
	linkGone(t, hostIf)
	must(t, Teardown("", "", ""))

	// Namespace deleted under a running pod: the kernel removes both ends.
	p := newPod(t, Routed, "fd00:dead:24::5/128")
	p.setup(t)
	ip(t, "", "netns", "del", p.ns)
	must(t, Teardown(p.spec.NetNS, p.spec.IfName, p.spec.HostIfName))
	linkGone(t, p.spec.HostIfName)
}
