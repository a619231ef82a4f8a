package kerneltest

import (
	"net/netip"
	"os/exec"
	"testing"
	"time"
)

// RouterNS creates a namespace (as NetNS) that forwards both families,
// loopback up: a node that routes between the pods RoutedPod joins to
// it. It returns the path, as NetNS does.
func RouterNS(t testing.TB) string {
	t.Helper()
	path := NetNS(t)
	node := NetNSName(path)
	for _, s := range []string{"net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"} {
		Run(t, "ip", "netns", "exec", node, "sysctl", "-qw", s)
	}
	Run(t, "ip", "-n", node, "link", "set", "lo", "up")
	return path
}

// RoutedPod creates a pod namespace joined to node (a name for ip netns
// exec) by a veth pair (veth
// on the node's side, eth0 in the pod). Each gateway, such as
// fd00:1::1/64 or 10.0.1.1/24, goes on veth; the pod takes the next
// address of its prefix and a default route through it. RoutedPod
// returns once the pod reaches every gateway (a veth's carrier comes up
// through linkwatch, up to a second late, and drops what it is given
// until then), with the pod's path and addresses in the gateways' order.
func RoutedPod(t testing.TB, node, veth string, gateways ...netip.Prefix) (string, []netip.Addr) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		// Without it every gateway looks unreachable.
		t.Fatal("ping is missing (Debian's iputils-ping): run hack/deps.sh")
	}
	path := NetNS(t)
	pod := NetNSName(path)
	Run(t, "ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
	var addrs []netip.Addr
	for _, gw := range gateways {
		a := netip.PrefixFrom(gw.Addr().Next(), gw.Bits())
		addrs = append(addrs, a.Addr())
		var nodad []string
		if gw.Addr().Is6() {
			nodad = []string{"nodad"}
		}
		Run(t, "ip", append([]string{"-n", node, "addr", "add", gw.String(), "dev", veth}, nodad...)...)
		Run(t, "ip", append([]string{"-n", pod, "addr", "add", a.String(), "dev", "eth0"}, nodad...)...)
	}
	Run(t, "ip", "-n", node, "link", "set", veth, "up")
	Run(t, "ip", "-n", pod, "link", "set", "eth0", "up")
	Run(t, "ip", "-n", pod, "link", "set", "lo", "up")
	for _, gw := range gateways {
		Run(t, "ip", "-n", pod, "route", "add", "default", "via", gw.Addr().String())
	}
	for _, gw := range gateways {
		deadline := time.Now().Add(5 * time.Second)
		for exec.Command("ip", "netns", "exec", pod, "ping", "-c1", "-W1", gw.Addr().String()).Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("pod %s cannot reach the node at %s", pod, gw.Addr())
			}
		}
	}
	return path, addrs
}
