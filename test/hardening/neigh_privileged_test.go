package hardening

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// neighMAC is the link-layer address n's neighbour table holds for ip on dev.
func neighMAC(t *testing.T, n *netNS, ip netip.Addr, dev string) string {
	t.Helper()
	f := strings.Fields(n.ip(t, "neigh", "show", "to", ip.String(), "dev", dev))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// In bridge mode pods share a link with each other and the host: a pod
// (a) that answers for an address that is not its own, by an ARP reply or
// an unsolicited IPv6 neighbour advertisement with the override flag, must
// not take over that address's traffic: another pod's (b's) from the host
// and from a third pod (c), or the gateway's from c. The unprotected
// network is the control that the forged answers would work.
func TestNeighbourSpoofing(t *testing.T) {
	for _, fam := range []int{6, 4} {
		for _, protected := range []bool{true, false} {
			name := fmt.Sprintf("IPv%d/protected", fam)
			if !protected {
				name = fmt.Sprintf("IPv%d/unprotected control", fam)
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				nw := e.network(t, bridge, "dual", []string{e.ula(), e.private4()}, map[string]any{"protections": protected})
				a, b, c := e.add(t, nw), e.add(t, nw), e.add(t, nw)
				hostIP, cIP := a.gw(t, fam), c.addr(t, fam) // the caches' owners, on the link
				if fam == 6 {
					hostIP, cIP = netip.MustParseAddr("fe80::1"), c.LL
				}
				entries := []struct {
					cache, victim string
					ns            *netNS
					dev           string
					owner         netip.Addr
					ownerMAC      net.HardwareAddr
					ip            netip.Addr
					mac           net.HardwareAddr // the right answer
				}{
					{"the host", "pod b", e.host, nw.Bridge, hostIP, a.GwMAC, b.addr(t, fam), b.MAC},
					{"pod c", "pod b", c.NS, c.IfName, cIP, c.MAC, b.addr(t, fam), b.MAC},
					{"pod c", "the gateway", c.NS, c.IfName, cIP, c.MAC, hostIP, a.GwMAC},
				}
				var frames [][]byte
				for _, en := range entries {
					// The owner already talks to the victim. Locktime 0: the kernel
					// takes an overriding ARP reply at once.
					en.ns.ip(t, "neigh", "replace", en.ip.String(), "lladdr", en.mac.String(), "dev", en.dev, "nud", "stale")
					en.ns.setSysctl(t, "net.ipv4.neigh."+en.dev+".locktime=0")
					h := frameHdr{SrcMAC: a.MAC, DstMAC: en.ownerMAC, Src: a.LL, Dst: en.owner}
					if fam == 4 {
						frames = append(frames, arpReply(h, a.MAC, en.ip, en.ownerMAC, en.owner))
					} else {
						frames = append(frames, icmpv6Frame(h, 136, naBody(en.ip, a.MAC)))
					}
				}
				time.Sleep(20 * time.Millisecond)
				sendFrames(t, a.NS, a.IfName, frames...)
				time.Sleep(silence)
				for _, en := range entries {
					got := neighMAC(t, en.ns, en.ip, en.dev)
					switch {
					case protected && got != en.mac.String():
						t.Errorf("%s now sends %s's (%s) traffic to %s, pod a's MAC: a's forged neighbour answer was not dropped", en.cache, en.victim, en.ip, got)
					case !protected && got != a.MAC.String():
						t.Errorf("control without protections: %s's entry for %s is %s, want a's %s: the forged answer does not work, so the protected case proves nothing", en.cache, en.ip, got, a.MAC)
					}
				}
			})
		}
	}
}
