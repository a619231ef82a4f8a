// CNI_NETNS left empty, through the real binary: ADD and CHECK fail with
// code 4 and say what the runtime must pass; DEL, which the spec lets run
// without it, removes the attachment.
//
// Privileged: run as root with
//
//	go test -run TestEmptyNetNS ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestEmptyNetNS(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	const rangeN = 0x1c
	n := duetNetwork(t, map[string]any{"pools": testPools("dual", rangeN)})
	conf := jsonBytes(t, n.conf)
	for _, cmd := range []string{"ADD", "CHECK"} {
		p := n.newPod(t)
		links, routes := dtLinks(t), testRoutes(t)
		e := execFail(t, execCmd("duet", cmd, p.id, "", p.ifName, conf))
		t.Logf("%s: code %d: %s", cmd, e.Code, e.Msg)
		if e.Code != 4 || !contains(e.Msg, "CNI_NETNS", "network namespace path", "/var/run/netns/") {
			t.Errorf("%s without CNI_NETNS: code %d %q, want 4 naming CNI_NETNS and the fix", cmd, e.Code, e.Msg)
		}
		nothingLeft(t, n, p, links, routes)
	}

	p := n.newPod(t)
	n.add(t, p)
	for range 2 {
		if out, err := execCmd("duet", "DEL", p.id, "", p.ifName, conf).CombinedOutput(); err != nil {
			t.Errorf("DEL without CNI_NETNS: %v: %s", err, out)
		}
	}
	assertGone(t, n, p)
}
