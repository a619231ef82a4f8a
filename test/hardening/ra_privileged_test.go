package hardening

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv6"
)

// routing is everything a router advertisement or a redirect could change
// in n: routes of every table, cached route exceptions, addresses, and the
// route n takes to the host's address.
func routing(t *testing.T, n *netNS) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-6", "route", "show", "table", "all"},
		{"-6", "route", "show", "cache"},
		{"-6", "addr", "show"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "get", hostAddr6.String()},
		{"-6", "route", "get", "2001:db8:bad::1"},
	} {
		// "route get" fails where nothing routes there: the error is state too.
		out, _ := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
		fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
	}
	return b.String()
}

// A pod sends router advertisements (a prefix, a default route) and
// redirects, through its own stack and hand-built, including a redirect
// forged from the gateway fe80::1: the host's and the other pod's routes
// and addresses do not change, and duet's RA guard counts the drops. The
// unprotected network is the control that the forged redirect works where
// pods share a link (bridge mode): the sysctls alone do not stop it.
func TestRouterAdvertisementsAndRedirects(t *testing.T) {
	for _, mode := range modes {
		for _, protected := range []bool{true, false} {
			name := mode + "/protected"
			if !protected {
				name = mode + "/unprotected control"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, map[string]any{"protections": protected})
				a, b := e.add(t, nw), e.add(t, nw)
				gwLL := netip.MustParseAddr("fe80::1")
				allNodes := netip.MustParseAddr("ff02::1")
				// Where b is reached from a: on-link in bridge mode, through the
				// host (which would forward, with the hop limit lowered) when routed.
				bDst, bMAC := b.addr(t, 6), a.GwMAC
				if mode == bridge {
					bDst, bMAC = b.LL, b.MAC
				}
				hostBefore, bBefore := routing(t, e.host), routing(t, b.NS)
				var guard uint64
				if protected {
					guard = dropCount(t, e.host, table(mode), "duet: RA guard")
				}

				ra := raBody(a.MAC)
				redirect := redirectBody(a.LL, hostAddr6, a.MAC)
				sendICMPv6(t, a.NS, a.IfName, a.LL, allNodes, ipv6.ICMPTypeRouterAdvertisement, ra)
				sendICMPv6(t, a.NS, a.IfName, a.LL, gwLL, ipv6.ICMPTypeRouterAdvertisement, ra)
				sendICMPv6(t, a.NS, a.IfName, a.LL, allNodes, ipv6.ICMPTypeRedirect, redirect)
				sendICMPv6(t, a.NS, a.IfName, a.LL, bDst, ipv6.ICMPTypeRedirect, redirect)
				sendFrames(t, a.NS, a.IfName,
					icmpv6Frame(frameHdr{SrcMAC: a.MAC, DstMAC: bMAC, Src: gwLL, Dst: bDst}, 137, redirect),
					icmpv6Frame(frameHdr{SrcMAC: a.MAC, DstMAC: a.GwMAC, Src: a.LL, Dst: allNodes}, 134, ra))
				time.Sleep(silence)

				if got := routing(t, e.host); got != hostBefore {
					t.Errorf("the host's routing changed:\n--- before\n%s--- after\n%s", hostBefore, got)
				}
				got := routing(t, b.NS)
				if changed := got != bBefore; changed != (mode == bridge && !protected) {
					if protected {
						t.Errorf("pod b's routing changed:\n--- before\n%s--- after\n%s", bBefore, got)
					} else if mode == bridge {
						t.Errorf("control without protections: the redirect forged from fe80::1 did not change pod b's route, so the protected case proves nothing:\n%s", got)
					} else {
						t.Errorf("routed pods share no link, yet pod b's routing changed:\n--- before\n%s--- after\n%s", bBefore, got)
					}
				}
				if protected {
					if n := dropCount(t, e.host, table(mode), "duet: RA guard") - guard; n < 6 {
						t.Errorf("the RA guard dropped %d packets, want at least the 6 sent", n)
					}
				}
			})
		}
	}
}
