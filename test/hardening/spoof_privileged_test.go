package hardening

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// silence is how long a listener must stay quiet after an attack.
const silence = 500 * time.Millisecond

func hostAddr(fam int) netip.Addr {
	if fam == 4 {
		return hostAddr4
	}
	return hostAddr6
}

// probe is one crafted frame and the listener that must (or must not) get it.
type probe struct {
	what  string
	from  netip.Addr
	frame []byte
	to    *listener
}

// spoofTargets are the host and pod c, each with the destination MAC a
// frame from a needs to reach it.
func spoofTargets(t *testing.T, e *env, mode string, a, c *pod, fam, port int) []struct {
	name string
	ip   netip.Addr
	mac  net.HardwareAddr
	l    *listener
} {
	cMAC := a.GwMAC // routed: through the host
	if mode == bridge {
		cMAC = c.MAC // on-link
	}
	return []struct {
		name string
		ip   netip.Addr
		mac  net.HardwareAddr
		l    *listener
	}{
		{"the host", hostAddr(fam), a.GwMAC, listen(t, e.host, fam, port, false)},
		{"pod c", c.addr(t, fam), cMAC, listen(t, c.NS, fam, port, false)},
	}
}

// A pod (a) sends UDP with another pod's (b's) IPv6 and IPv4 address, with
// b's MAC, and from a DHCP server's port, to the host and to a third pod
// (c): nothing arrives, while the same frames with a's own address, MAC and
// an ordinary port do. The unprotected network
// is the control that the forged frames do arrive when duet does not drop
// them (no rp_filter or other check makes the test pass by accident).
func TestSpoofedSourcesNeverArrive(t *testing.T) {
	for _, mode := range modes {
		for _, protected := range []bool{true, false} {
			name := mode + "/protected"
			if !protected {
				name = mode + "/unprotected control"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, map[string]any{"protections": protected})
				a, b, c := e.add(t, nw), e.add(t, nw), e.add(t, nw)
				var attacks, controls []probe
				for _, fam := range []int{6, 4} {
					for _, tg := range spoofTargets(t, e, mode, a, c, fam, 7000+fam) {
						dhcpServer := map[int]uint16{6: 547, 4: 67}[fam]
						for _, at := range []struct {
							what  string
							mac   net.HardwareAddr
							src   netip.Addr
							sport uint16
						}{
							{"b's address", a.MAC, b.addr(t, fam), 40000},
							{"b's MAC", b.MAC, a.addr(t, fam), 40000},
							{"a DHCP server's source port", a.MAC, a.addr(t, fam), dhcpServer},
							{"its own address and MAC", a.MAC, a.addr(t, fam), 40000},
						} {
							h := frameHdr{SrcMAC: at.mac, DstMAC: tg.mac, Src: at.src, Dst: tg.ip}
							what := fmt.Sprintf("IPv%d UDP from a with %s to %s", fam, at.what, tg.name)
							p := probe{what, at.src, udpFrame(h, at.sport, uint16(7000+fam), what), tg.l}
							if at.what == "its own address and MAC" {
								controls = append(controls, p)
							} else {
								attacks = append(attacks, p)
							}
						}
					}
				}
				fam := table(mode)
				counters := []string{"duet: source MAC is not the pod's", "duet: IPv6 source is not the pod's", "duet: IPv4 source is not the pod's", "duet: DHCP server guard"}
				before := map[string]uint64{}
				if protected {
					for _, c := range counters {
						before[c] = dropCount(t, e.host, fam, c)
					}
				}
				for _, p := range attacks {
					sendFrames(t, a.NS, a.IfName, p.frame)
				}
				if protected {
					time.Sleep(silence)
					for _, p := range attacks {
						for _, got := range p.to.drain() {
							t.Errorf("%s received %q from %s: it must be dropped", p.to.Where, got.Payload, got.From)
						}
					}
				} else {
					for _, p := range attacks {
						p.to.want(t, 2*time.Second, p.what, "control without protections: "+p.what)
					}
				}
				for _, p := range controls {
					sendFrames(t, a.NS, a.IfName, p.frame)
					if got, ok := p.to.want(t, 2*time.Second, p.what, "control: "+p.what); ok && got.From != p.from {
						t.Errorf("control: %s arrived from %s, want %s", p.what, got.From, p.from)
					}
				}
				if protected {
					for c, want := range map[string]uint64{counters[0]: 4, counters[1]: 2, counters[2]: 2, counters[3]: 4} {
						if got := dropCount(t, e.host, fam, c) - before[c]; got < want {
							t.Errorf("rule %q dropped %d packets, want at least %d", c, got, want)
						}
					}
				}
			})
		}
	}
}

// The opt-out: a pod given DUET_ALLOWED_SOURCE_PREFIXES may send from
// them, and still not from another pod's address.
func TestAllowedSourcePrefixesOptOut(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			a := e.add(t, nw, allowedArg)
			b := e.add(t, nw)
			for _, fam := range []int{6, 4} {
				l := listen(t, e.host, fam, 7100+fam, false)
				allowed := map[int]netip.Addr{6: netip.MustParseAddr("2001:db8:9::7"), 4: netip.MustParseAddr("192.0.2.7")}[fam]
				h := frameHdr{SrcMAC: a.MAC, DstMAC: a.GwMAC, Src: b.addr(t, fam), Dst: hostAddr(fam)}
				sendFrames(t, a.NS, a.IfName, udpFrame(h, 40000, uint16(7100+fam), "from b's address"))
				l.none(t, silence, fmt.Sprintf("IPv%d from b's address with an opt-out elsewhere", fam))
				h.Src = allowed
				sendFrames(t, a.NS, a.IfName, udpFrame(h, 40000, uint16(7100+fam), "from the allowed prefix"))
				if got, ok := l.want(t, 2*time.Second, "from the allowed prefix", fmt.Sprintf("IPv%d from %s", fam, allowed)); ok && got.From != allowed {
					t.Errorf("arrived from %s, want %s", got.From, allowed)
				}
			}
		})
	}
}
