package hardening

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// radvd's settings: RAs every 3-4 s, a default router lifetime of 30 s.
const (
	raMaxInterval  = 4 * time.Second
	raDefaultLife  = 30
	radvdConfigFmt = `interface rt0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval %d;
	AdvDefaultLifetime %d;
	prefix 2001:db8:ffff::/64 { AdvOnLink on; AdvAutonomous on; };
};
`
)

// raDefault returns the RA-learned default route's seconds to live on dev
// in n, or ok false when there is none.
func raDefault(t *testing.T, n *netNS, dev string) (expires int, ok bool) {
	t.Helper()
	var routes []struct {
		Dev, Protocol string
		Expires       int
	}
	out := n.ip(t, "-6", "-j", "route", "show", "default")
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		t.Fatalf("ip -6 -j route show default: %v: %s", err, out)
	}
	for _, r := range routes {
		if r.Dev == dev && r.Protocol == "ra" {
			return r.Expires, true
		}
	}
	return 0, false
}

// startRadvd runs radvd in router until the test ends.
func startRadvd(t *testing.T, router *netNS) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "radvd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(radvdConfigFmt, int(raMaxInterval/time.Second), raDefaultLife)), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command("ip", "netns", "exec", router.Name, "radvd", "--nodaemon", "--logmethod", "stderr",
		"--config", conf, "--pidfile", filepath.Join(dir, "radvd.pid"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("radvd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // "ip netns exec" execs radvd: this is radvd's pid
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("radvd's log:\n%s", logs.String())
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A host whose uplink learned its default route from router advertisements
// (radvd in a neighbour namespace) keeps that route when duet turns IPv6
// forwarding on for its first pod, and keeps refreshing it from later RAs.
// The control shows what duet prevents: forwarding on without accept_ra=2
// drops the route at once.
func TestRALearnedDefaultRouteSurvivesForwarding(t *testing.T) {
	for _, mode := range append([]string{"control without duet"}, modes...) {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "radvd")
			router := newNetNS(t, "router")
			up := fmt.Sprintf("dhr%s%d", token, seq.Add(1))
			e.host.vethTo(t, up, router, "rt0")
			router.setSysctl(t, "net.ipv6.conf.all.forwarding=1")
			router.ip(t, "addr", "add", "2001:db8:ffff::1/64", "dev", "rt0", "nodad")
			if f, ra := e.host.sysctl(t, "net.ipv6.conf.all.forwarding"), e.host.sysctl(t, "net.ipv6.conf."+up+".accept_ra"); f != "0" || ra != "1" {
				t.Fatalf("the host starts with forwarding=%s and %s accept_ra=%s; want 0 and 1", f, up, ra)
			}
			startRadvd(t, router)
			deadline := time.Now().Add(4 * raMaxInterval)
			for {
				if _, ok := raDefault(t, e.host, up); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no RA-learned default route on %s after %v:\n%s", up, 4*raMaxInterval, e.host.ip(t, "-6", "route"))
				}
				time.Sleep(100 * time.Millisecond)
			}

			if mode == "control without duet" {
				e.host.setSysctl(t, "net.ipv6.conf.all.forwarding=1")
				if _, ok := raDefault(t, e.host, up); ok {
					t.Fatalf("the kernel kept the RA default route when forwarding went on with accept_ra=1: this test's premise is wrong")
				}
				return
			}
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			e.add(t, nw)
			if f, ra := e.host.sysctl(t, "net.ipv6.conf.all.forwarding"), e.host.sysctl(t, "net.ipv6.conf."+up+".accept_ra"); f != "1" || ra != "2" {
				t.Errorf("after ADD: forwarding=%s, %s accept_ra=%s; want 1 and 2", f, up, ra)
			}
			left, ok := raDefault(t, e.host, up)
			if !ok {
				t.Fatalf("the RA-learned default route is gone after duet enabled forwarding:\n%s", e.host.ip(t, "-6", "route"))
			}
			// A later RA must refresh it: its expiry moves later than the
			// one it had, instead of running out.
			expiry := time.Now().Add(time.Duration(left) * time.Second)
			deadline = time.Now().Add(2*raMaxInterval + time.Second)
			for {
				left, ok := raDefault(t, e.host, up)
				if !ok {
					t.Fatalf("the RA-learned default route went away with forwarding on:\n%s", e.host.ip(t, "-6", "route"))
				}
				if time.Now().Add(time.Duration(left) * time.Second).After(expiry.Add(time.Second)) {
					t.Logf("a later RA refreshed the default route: it expires in %ds", left)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no RA refreshed the default route in %v with forwarding on (it expires in %ds)", 2*raMaxInterval+time.Second, left)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
