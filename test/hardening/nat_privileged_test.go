package hardening

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// The uplink between the host and "outside": benchmarking and documentation
// ranges, which exist only inside the test's namespaces.
var (
	uplinkHost6, uplinkOut6 = netip.MustParseAddr("2001:db8:ffff::1"), netip.MustParseAddr("2001:db8:ffff::2")
	uplinkHost4, uplinkOut4 = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
)

// outside makes a namespace reached through the host's uplink, with the
// host's default routes pointing at it, and returns it.
func outside(t *testing.T, e *env) *netNS {
	t.Helper()
	out := newNetNS(t, "out")
	up := fmt.Sprintf("dhu%s%d", token, seq.Add(1))
	e.host.vethTo(t, up, out, "out0")
	e.host.ip(t, "addr", "add", uplinkHost6.String()+"/64", "dev", up, "nodad")
	e.host.ip(t, "addr", "add", uplinkHost4.String()+"/24", "dev", up)
	out.ip(t, "addr", "add", uplinkOut6.String()+"/64", "dev", "out0", "nodad")
	out.ip(t, "addr", "add", uplinkOut4.String()+"/24", "dev", "out0")
	e.host.ip(t, "-6", "route", "add", "default", "via", uplinkOut6.String())
	e.host.ip(t, "-4", "route", "add", "default", "via", uplinkOut4.String())
	return out
}

// Egress from a pod to a listener outside the host is masqueraded to the
// host's uplink address for a ULA or private IPv4 pool, and keeps the pod's
// address for a global IPv6 pool (which outside routes back to the host);
// the replies come back either way. Pod-to-pod traffic on the host keeps
// the pod's address in every case.
func TestNATOutgoing(t *testing.T) {
	cases := []struct {
		name, families string
		pool           func(*env) string
		fam            int
		masqueraded    bool
	}{
		{"ULA IPv6", "ipv6", (*env).ula, 6, true},
		{"global IPv6", "ipv6", (*env).global6, 6, false},
		{"private IPv4", "ipv4", (*env).private4, 4, true},
	}
	for _, mode := range modes {
		for _, c := range cases {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				e := newEnv(t)
				out := outside(t, e)
				pool := c.pool(e)
				if !c.masqueraded {
					// The return route: only a routed, global pool has one.
					out.ip(t, "-6", "route", "add", pool, "via", uplinkHost6.String())
				}
				nw := e.network(t, mode, c.families, []string{pool}, nil)
				a, b := e.add(t, nw), e.add(t, nw)
				far, hostUp := uplinkOut6, uplinkHost6
				if c.fam == 4 {
					far, hostUp = uplinkOut4, uplinkHost4
				}
				want := a.addr(t, c.fam)
				if c.masqueraded {
					want = hostUp
				}

				l := listen(t, out, c.fam, 7200, true)
				if err := exchange(t, a.NS, netip.AddrPortFrom(far, 7200), "to outside"); err != nil {
					t.Errorf("pod a to outside %s: %v", far, err)
				}
				if got, ok := l.want(t, 2*time.Second, "to outside", "outside listener"); ok && got.From != want {
					t.Errorf("outside saw pod a (%s) as %s, want %s", a.addr(t, c.fam), got.From, want)
				}

				lb := listen(t, b.NS, c.fam, 7201, true)
				if err := exchange(t, a.NS, netip.AddrPortFrom(b.addr(t, c.fam), 7201), "to pod b"); err != nil {
					t.Errorf("pod a to pod b: %v", err)
				}
				if got, ok := lb.want(t, 2*time.Second, "to pod b", "pod b's listener"); ok && got.From != a.addr(t, c.fam) {
					t.Errorf("pod b saw pod a (%s) as %s: pod-to-pod traffic must keep its source", a.addr(t, c.fam), got.From)
				}
			})
		}
	}
}
