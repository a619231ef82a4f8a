package doctor

// Privileged tests: the live-host checks against network namespaces set
// up wrong (and right) on purpose. Run as root:
//
//	go test -count=1 -run HostNamespaces ./internal/doctor/
//
// Without root they skip, or fail when CI is set.

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// TestGatherHelperProcess is not a test: the privileged test runs this
// test binary inside a namespace (ip netns exec NS <binary> -test.run=...)
// to gather that namespace's facts with the real Gatherer, exactly as
// `ip netns exec NS duetctl doctor --host` does, and print them as JSON.
func TestGatherHelperProcess(t *testing.T) {
	if os.Getenv("DUET_DOCTOR_GATHER") != "1" {
		t.Skip("helper process for TestHostNamespaces")
	}
	h, err := Gatherer{}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(h)
	os.Stdout.Write(append([]byte("FACTS "), append(b, '\n')...))
}

// gatherIn gathers the facts of namespace name from inside it.
func gatherIn(t *testing.T, name string) *HostFacts {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run=^TestGatherHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUET_DOCTOR_GATHER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gather in %s: %v\n%s", name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if js, ok := strings.CutPrefix(line, "FACTS "); ok {
			var h HostFacts
			if err := json.Unmarshal([]byte(js), &h); err != nil {
				t.Fatal(err)
			}
			return &h
		}
	}
	t.Fatalf("no facts from %s:\n%s", name, out)
	return nil
}

// hostNS builds a host namespace with an uplink veth to a router
// namespace, a bridge for containers and a second veth; wrong says
// whether to set it up wrong on purpose.
func hostNS(t *testing.T, wrong bool) string {
	host := kerneltest.NetNSName(kerneltest.NetNS(t))
	router := kerneltest.NetNSName(kerneltest.NetNS(t))
	in := func(args ...string) { kerneltest.Run(t, "ip", append([]string{"netns", "exec", host}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "link", "add", "up0", "type", "veth", "peer", "name", "r0", "netns", router)
	kerneltest.Run(t, "ip", "-n", router, "link", "set", "r0", "up")
	in("ip", "link", "set", "up0", "up")
	in("ip", "addr", "add", "2001:db8:7::2/64", "dev", "up0", "nodad")
	in("ip", "link", "add", "br-pods", "type", "bridge")
	in("ip", "link", "set", "br-pods", "up")
	in("ip", "link", "add", "vpod", "type", "veth", "peer", "name", "vpodr", "netns", router)
	in("ip", "link", "set", "vpod", "up")
	in("ip", "-6", "route", "add", "fd00:d0c::/64", "dev", "br-pods")
	in("ip", "-6", "route", "add", "2001:db8:7::100/128", "dev", "br-pods") // a pod address in up0's /64
	in("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	if wrong {
		// Seed 001's traps, and a few more.
		in("sysctl", "-qw", "net.ipv4.ip_forward=0")
		in("sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1")
		in("ip", "-6", "route", "add", "default", "via", "2001:db8:7::1", "dev", "up0", "proto", "ra")
		in("ip", "link", "set", "br-pods", "mtu", "9000")
		in("ip", "link", "set", "vpod", "mtu", "1200")
		in("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
		return host
	}
	in("sysctl", "-qw", "net.ipv4.ip_forward=1")
	in("sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=2")
	in("sysctl", "-qw", "net.ipv6.conf.up0.proxy_ndp=1")
	in("ip", "-6", "neigh", "add", "proxy", "2001:db8:7::100", "dev", "up0")
	in("ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
	in("ip", "-6", "route", "add", "default", "via", "2001:db8:7::1", "dev", "up0", "proto", "ra")
	in("ip", "route", "add", "default", "via", "192.0.2.1", "dev", "up0")
	in("ip", "route", "add", "10.77.0.0/24", "dev", "br-pods")
	in("nft", "add table inet nat; add chain inet nat post { type nat hook postrouting priority srcnat; }; "+
		"add rule inet nat post ip6 saddr fd00:d0c::/64 oifname up0 masquerade; "+
		"add rule inet nat post ip saddr 10.77.0.0/24 oifname up0 masquerade")
	return host
}

func TestHostNamespaces(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		wrong bool
		want  []string
	}{
		{"wrong", true, hostWants["bad"]},
		{"right", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := gatherIn(t, hostNS(t, tc.wrong))
			got := CheckHost(facts)
			if diff := cmp.Diff(sorted(tc.want...), codes(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
				for _, f := range got {
					t.Log(f.Code, f.What)
				}
			}
		})
	}
}
