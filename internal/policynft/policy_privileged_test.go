// Privileged: run as root with `go test -run PolicyInKernel ./internal/firewall/`.
// Loads table inet duet-policy into a throwaway node namespace that
// routes between three pod namespaces, then sends real packets: one check
// per rule shape (ports set, all-traffic set, egress then ingress,
// replies through established, the node's own traffic), across
// incremental syncs, the removal of every pod chain, and a full rewrite.
package policynft

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/policy"
)

// netnsNFT runs each transaction with the real nft inside a namespace
// and mirrors it into a fake, which answers List.
type netnsNFT struct {
	*knftables.Fake
	netns string
}

func (n *netnsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	cmd := exec.Command("ip", "netns", "exec", n.netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(tx.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %v\n%s\nscript:\n%s", err, out, tx)
	}
	return n.Fake.Run(ctx, tx)
}

// kpod is a pod namespace linked to the node namespace by a veth pair.
type kpod struct {
	path  string
	addrs []netip.Addr // IPv6 first
}

func TestPolicyInKernel(t *testing.T) {
	kerneltest.RequireRoot(t)
	nodePath := kerneltest.RouterNS(t)
	node := kerneltest.NetNSName(nodePath)
	mkPod := func(i int) kpod {
		path, addrs := kerneltest.RoutedPod(t, node, fmt.Sprintf("vp%d", i),
			netip.MustParsePrefix(fmt.Sprintf("fd00:%d::1/64", i)), netip.MustParsePrefix(fmt.Sprintf("10.0.%d.1/24", i)))
		return kpod{path: path, addrs: addrs}
	}
	a, b, c := mkPod(1), mkPod(2), mkPod(3)
	listen(t, a.path, 8080, 8081, 8082)
	listen(t, b.path, 9000)
	listen(t, c.path, 9000, 9001)

	hosts := func(p kpod) []netip.Prefix {
		return []netip.Prefix{netip.PrefixFrom(p.addrs[0], 128), netip.PrefixFrom(p.addrs[1], 32)}
	}
	ports := func(proto policy.Proto, port uint16) []policy.PortRange {
		return []policy.PortRange{{Proto: proto, From: port, To: port}}
	}
	// a's ingress: tcp/8080 from b; egress: tcp/9000 to c, udp/53 to anyone.
	s1 := []policy.PodRules{{Namespace: "t", Name: "a", Addrs: a.addrs,
		Ingress: &policy.Direction{Rules: []policy.Rule{{Peers: hosts(b), Ports: ports(policy.TCP, 8080)}}},
		Egress: &policy.Direction{Rules: []policy.Rule{
			{Peers: hosts(c), Ports: ports(policy.TCP, 9000)},
			{AnyPeer: true, Ports: ports(policy.UDP, 53)},
		}}}}
	// s2 adds all traffic from c's IPv6 subnet and tcp/8081 from anyone
	// (elements that overlap c's address on other ports), and isolates b:
	// tcp/9000 from a, which a's egress now allows too.
	s2 := clonePods(s1)
	s2[0].Ingress.Rules = append(s2[0].Ingress.Rules,
		policy.Rule{Peers: []netip.Prefix{netip.MustParsePrefix("fd00:3::/64")}},
		policy.Rule{AnyPeer: true, Ports: ports(policy.TCP, 8081)})
	s2[0].Egress.Rules = append(s2[0].Egress.Rules, policy.Rule{Peers: hosts(b), Ports: ports(policy.TCP, 9000)})
	s2 = append(s2, policy.PodRules{Namespace: "t", Name: "b", Addrs: b.addrs,
		Ingress: &policy.Direction{Rules: []policy.Rule{{Peers: hosts(a), Ports: ports(policy.TCP, 9000)}}}})

	nft := &netnsNFT{Fake: newPolicyFake(), netns: node}
	s := NewSyncer(nft)
	sync := func(pods []policy.PodRules) {
		t.Helper()
		if err := s.Sync(context.Background(), pods); err != nil {
			t.Fatal(err)
		}
	}
	type probe struct {
		from    kpod
		to      netip.Addr
		port    int
		allowed bool
	}
	check := func(state string, probes []probe) {
		t.Helper()
		for _, p := range probes {
			if got := connects(p.from.path, p.to, p.port); got != p.allowed {
				t.Errorf("%s: from %s to [%s]:%d: connected=%v, want %v", state, p.from.addrs[0], p.to, p.port, got, p.allowed)
			}
		}
	}
	s1probes := []probe{
		{b, a.addrs[0], 8080, true}, // ports set; a's SYN-ACK passes a's egress as established
		{b, a.addrs[1], 8080, true},
		{b, a.addrs[0], 8081, false},
		{b, a.addrs[1], 8081, false},
		{c, a.addrs[0], 8080, false},
		{a, c.addrs[0], 9000, true}, // a's egress returns, c is not isolated
		{a, c.addrs[1], 9000, true},
		{a, c.addrs[0], 9001, false},
		{a, b.addrs[1], 9000, false},
		{b, c.addrs[0], 9001, true}, // neither isolated
	}

	sync(s1)
	check("s1", s1probes)
	hostNS := kpod{path: nodePath, addrs: addrs("fd00:1::1")}
	check("s1, from the node", []probe{{hostNS, a.addrs[0], 8081, true}, {hostNS, a.addrs[1], 8082, true}})
	if pings(b.path, a.addrs[0]) { // echo is not tcp/8080
		t.Errorf("s1: ping from b to a passed")
	}

	sync(s2)
	check("s2", []probe{
		{c, a.addrs[0], 8082, true}, // all-traffic set
		{c, a.addrs[1], 8082, false},
		{c, a.addrs[1], 8081, true}, // any peer, IPv4 too
		{b, a.addrs[0], 8081, true},
		{b, a.addrs[0], 8082, false},
		{a, b.addrs[0], 9000, true}, // a's egress returns, then b's ingress accepts
		{a, b.addrs[1], 9000, true},
		{c, b.addrs[0], 9000, false}, // b's ingress
		{a, c.addrs[0], 9001, false},
	})
	if !pings(c.path, a.addrs[0]) {
		t.Errorf("s2: ping from c (all traffic) to a failed")
	}

	sync(nil) // a is no longer isolated: its chains and sets go
	check("none", []probe{{c, a.addrs[1], 8082, true}, {a, b.addrs[0], 9000, true}})
	out := kerneltest.Run(t, "ip", "netns", "exec", node, "nft", "list", "table", "inet", Table)
	if strings.Contains(out, "chain in-") || strings.Contains(out, "chain out-") || strings.Contains(out, "set ") {
		t.Errorf("pod chains or sets left:\n%s", out)
	}

	sync(s2)
	s = NewSyncer(nft) // a restarted agent rewrites the table whole
	sync(s1)
	check("s1 after a rewrite", s1probes[:5])
}

func clonePods(pods []policy.PodRules) []policy.PodRules {
	out := make([]policy.PodRules, len(pods))
	for i, p := range pods {
		out[i] = p
		for _, d := range []**policy.Direction{&out[i].Ingress, &out[i].Egress} {
			if *d != nil {
				c := **d
				c.Rules = append([]policy.Rule(nil), c.Rules...)
				*d = &c
			}
		}
	}
	return out
}

// listen accepts (and closes) TCP connections on ports, both families,
// in the namespace at path, until the test ends.
func listen(t *testing.T, path string, ports ...int) {
	t.Helper()
	h, err := ns.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, port := range ports {
		var l net.Listener
		if err := h.Do(func(ns.NetNS) (err error) {
			l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conn.Close()
			}
		}()
	}
}

// connects says whether a TCP connection from the namespace at path to
// addr:port completes; a dropped SYN times out.
func connects(path string, addr netip.Addr, port int) bool {
	h, err := ns.GetNS(path)
	if err != nil {
		return false
	}
	defer h.Close()
	var conn net.Conn
	err = h.Do(func(ns.NetNS) (err error) {
		conn, err = (&net.Dialer{Timeout: 700 * time.Millisecond}).Dial("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func pings(path string, addr netip.Addr) bool {
	return exec.Command("ip", "netns", "exec", kerneltest.NetNSName(path), "ping", "-c1", "-W1", addr.String()).Run() == nil
}
