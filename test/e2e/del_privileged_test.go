// DEL in the situations runtimes put it in: after an ADD that never
// happened or failed, and after the pod's namespace is already gone. It
// must succeed and leave nothing.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestDelRobust(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, tc := range []struct {
		mode string
		n    int
	}{
		{"routed", 0x16},
		{"bridge", 0x17},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			kerneltest.Forwarding(t)
			keys := map[string]any{"mode": tc.mode, "pools": testPools("dual", tc.n)}
			bridge := ""
			if tc.mode == "bridge" {
				bridge = kerneltest.Name("e2ebr")
				kerneltest.DeleteLinkOnCleanup(t, bridge)
				keys["bridge"] = bridge
			}
			n := duetNetwork(t, keys)

			// A DEL with no ADD before it (the runtime cleaning up after
			// an ADD that failed early, or was never sent).
			never := n.newPod(t)
			for range 2 {
				if err := n.cni.DelNetworkList(t.Context(), n.list, never.rt()); err != nil {
					t.Errorf("DEL of an attachment never added: %v", err)
				}
			}
			assertGone(t, n, never)
			if bridge != "" && linkExists(t, "", bridge) {
				t.Errorf("DEL created the bridge %s", bridge)
			}

			// A DEL after the namespace is gone (the container exited and
			// the runtime deleted its namespace first).
			p := n.newPod(t)
			n.add(t, p)
			kerneltest.Run(t, "ip", "netns", "del", p.ns)
			for range 2 {
				if err := n.cni.DelNetworkList(t.Context(), n.list, p.rt()); err != nil {
					t.Errorf("DEL after the namespace is gone: %v", err)
				}
			}
			assertGone(t, n, p)
		})
	}
}

// TestDelAfterIfNameClash: an ADD fails because CNI_IFNAME is taken in the
// pod (code 101), and the runtime then calls DEL for it, as the CNI spec
// asks after a failed ADD. That DEL must not remove the interface that
// was there first: it is not duet's (its peer is not this attachment's
// host end), and duet's own message tells the user to DEL "the attachment
// that holds it" instead.
func TestDelAfterIfNameClash(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	n := duetNetwork(t, map[string]any{"pools": testPools("dual", 0x1b)})
	p := n.newPod(t)
	kerneltest.Run(t, "ip", "-n", p.ns, "link", "add", p.ifName, "type", "veth", "peer", "name", "theirs")
	if err := n.tryAdd(p); errCode(err) != 101 {
		t.Fatalf("ADD over an existing %s: %v, want code 101", p.ifName, err)
	}
	n.del(t, p)
	if !linkExists(t, p.path, p.ifName) {
		t.Errorf("DEL after the failed ADD deleted the pod's pre-existing %s, which duet did not create", p.ifName)
	}
	assertHostClean(t, n, p)
}
