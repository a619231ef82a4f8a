package kube

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/routing"
)

var (
	dual  = []ipam.Family{ipam.IPv6, ipam.IPv4}
	only6 = []ipam.Family{ipam.IPv6}
	only4 = []ipam.Family{ipam.IPv4}
)

// node builds a Node; addrs are InternalIPs unless written "TYPE=addr".
func node(name string, podCIDRs []string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	for _, a := range addrs {
		typ := corev1.NodeInternalIP
		if t, v, ok := strings.Cut(a, "="); ok {
			typ, a = corev1.NodeAddressType(t), v
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	return n
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func block(cidr, node string) ipam.Block {
	return ipam.Block{CIDR: pfx(cidr), Pool: pfx(cidr), Node: node}
}

var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestConvert(t *testing.T) {
	n1 := node("node1", []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, "fd00:ff::1", "10.255.0.1", "Hostname=node1")
	// IPv4 listed first by the API, an ExternalIP beside: IPv6 first
	// anyway, external addresses not used.
	n2 := node("node2", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, "10.255.0.2", "ExternalIP=2001:db8::2", "fd00:ff::2")
	for _, tc := range []struct {
		name  string
		self  string
		nodes []*corev1.Node
		fams  []ipam.Family
		want  State
	}{
		{"dual", "node1", []*corev1.Node{n2, n1}, dual, State{
			Self:   cluster.Node{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")},
			Nodes:  []cluster.Node{{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")}, {Name: "node2", Addrs: addrs("fd00:ff::2", "10.255.0.2")}},
			Blocks: []ipam.Block{block("fd00:10:244:1::/64", "node1"), block("10.244.1.0/24", "node1"), block("fd00:10:244:2::/64", "node2"), block("10.244.2.0/24", "node2")},
			Own:    []netip.Prefix{pfx("fd00:10:244:1::/64"), pfx("10.244.1.0/24")},
		}},
		{"ipv6 of a dual cluster", "node1", []*corev1.Node{n1, n2}, only6, State{
			Self:   cluster.Node{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")},
			Nodes:  []cluster.Node{{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")}, {Name: "node2", Addrs: addrs("fd00:ff::2", "10.255.0.2")}},
			Blocks: []ipam.Block{block("fd00:10:244:1::/64", "node1"), block("fd00:10:244:2::/64", "node2")},
			Own:    []netip.Prefix{pfx("fd00:10:244:1::/64")},
		}},
		{"ipv6 only, a node without ranges yet", "a", []*corev1.Node{node("a", []string{"2001:db8:1:1::/64"}, "2001:db8::a"), node("b", nil, "2001:db8::b")}, only6, State{
			Self:   cluster.Node{Name: "a", Addrs: addrs("2001:db8::a")},
			Nodes:  []cluster.Node{{Name: "a", Addrs: addrs("2001:db8::a")}, {Name: "b", Addrs: addrs("2001:db8::b")}},
			Blocks: []ipam.Block{block("2001:db8:1:1::/64", "a")},
			Own:    []netip.Prefix{pfx("2001:db8:1:1::/64")},
		}},
		{"ipv4 only", "node1", []*corev1.Node{node("node1", []string{"10.244.1.0/24"}, "10.255.0.1")}, only4, State{
			Self:   cluster.Node{Name: "node1", Addrs: addrs("10.255.0.1")},
			Nodes:  []cluster.Node{{Name: "node1", Addrs: addrs("10.255.0.1")}},
			Blocks: []ipam.Block{block("10.244.1.0/24", "node1")},
			Own:    []netip.Prefix{pfx("10.244.1.0/24")},
		}},
		{"a bad range elsewhere is skipped", "node1", []*corev1.Node{n1, node("node3", []string{"fd00:10:244:3::1/64", "10.244.3.0/24"})}, dual, State{
			Self:     cluster.Node{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")},
			Nodes:    []cluster.Node{{Name: "node1", Addrs: addrs("fd00:ff::1", "10.255.0.1")}, {Name: "node3"}},
			Blocks:   []ipam.Block{block("fd00:10:244:1::/64", "node1"), block("10.244.1.0/24", "node1"), block("10.244.3.0/24", "node3")},
			Own:      []netip.Prefix{pfx("fd00:10:244:1::/64"), pfx("10.244.1.0/24")},
			Problems: []string{`node "node3": spec.podCIDRs entry fd00:10:244:3::1/64 has host bits set (fd00:10:244:3::/64 is meant?)`},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Convert(tc.nodes, tc.self, tc.fams)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpOpts); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

// TestConvertRefuses: what keeps this node from being served names the
// fix, and nothing of the state is returned.
func TestConvertRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []*corev1.Node
		fams  []ipam.Family
		want  []string
	}{
		{"not registered", []*corev1.Node{node("other", []string{"fd00:10:244:1::/64"})}, only6,
			[]string{`node "node1" is not in the Kubernetes API`, "--node-name", "NODE_NAME"}},
		{"no ranges", []*corev1.Node{node("node1", nil, "fd00:ff::1")}, dual,
			[]string{"kube-controller-manager is not allocating pod ranges: run it with --allocate-node-cidrs and a --cluster-cidr of both families, or set spec.podCIDRs"}},
		{"no ranges, ipv6", []*corev1.Node{node("node1", nil, "fd00:ff::1")}, only6,
			[]string{"--cluster-cidr of IPv6"}},
		{"IPv4 only, dual asked", []*corev1.Node{node("node1", []string{"10.244.1.0/24"})}, dual,
			[]string{"spec.podCIDRs 10.244.1.0/24 but no IPv6 range", "--families dual", "--families ipv4"}},
		{"IPv6 only, dual asked", []*corev1.Node{node("node1", []string{"fd00:10:244:1::/64"})}, dual,
			[]string{"no IPv4 range", "--families ipv6"}},
		{"IPv6 only, ipv4 asked", []*corev1.Node{node("node1", []string{"fd00:10:244:1::/64"})}, only4,
			[]string{"no IPv4 range", "--families ipv4 asks"}},
		{"unparsable own range", []*corev1.Node{node("node1", []string{"fd00:10:244:1::/640"})}, only6,
			[]string{`"fd00:10:244:1::/640" is not a prefix`, "fix the node's spec.podCIDRs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Convert(tc.nodes, "node1", tc.fams)
			if err == nil {
				t.Fatalf("no error; got %+v", st)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if st.Nodes != nil || st.Blocks != nil {
				t.Errorf("half a state returned: %+v", st)
			}
		})
	}
}

// TestDeletedNodeLosesRoutes: the planner routes what the Node objects
// say, so a node gone from the API takes its routes with it.
func TestDeletedNodeLosesRoutes(t *testing.T) {
	n1 := node("node1", []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, "fd00:ff::1", "10.255.0.1")
	n2 := node("node2", []string{"fd00:10:244:2::/64", "10.244.2.0/24"}, "fd00:ff::2", "10.255.0.2")
	plan := func(nodes ...*corev1.Node) []string {
		st, err := Convert(nodes, "node1", dual)
		if err != nil {
			t.Fatal(err)
		}
		routes, problems := routing.Plan("node1", st.Nodes, st.Blocks, nil)
		if len(problems) > 0 {
			t.Fatalf("problems: %v", problems)
		}
		var out []string
		for _, r := range routes {
			out = append(out, r.String())
		}
		return out
	}
	want := []string{"blackhole fd00:10:244:1::/64", "fd00:10:244:2::/64 via fd00:ff::2 (node2)", "blackhole 10.244.1.0/24", "10.244.2.0/24 via 10.255.0.2 (node2)"}
	if d := cmp.Diff(want, plan(n1, n2)); d != "" {
		t.Errorf("both nodes: -want +got:\n%s", d)
	}
	if d := cmp.Diff([]string{want[0], want[2]}, plan(n1)); d != "" {
		t.Errorf("node2 deleted: -want +got:\n%s", d)
	}
}

func TestRelevant(t *testing.T) {
	base := node("n", []string{"fd00:10:244:1::/64"}, "fd00:ff::1")
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	heartbeat.ResourceVersion = "2"
	moved := base.DeepCopy()
	moved.Status.Addresses[0].Address = "fd00:ff::9"
	ranged := base.DeepCopy()
	ranged.Spec.PodCIDRs = append(ranged.Spec.PodCIDRs, "10.244.1.0/24")
	for _, tc := range []struct {
		name string
		cur  *corev1.Node
		want bool
	}{{"status heartbeat", heartbeat, false}, {"new address", moved, true}, {"new pod range", ranged, true}} {
		if got := Relevant(base, tc.cur); got != tc.want {
			t.Errorf("%s: Relevant = %v, want %v", tc.name, got, tc.want)
		}
	}
}
