// The benchmarks' setup (root only): a node namespace routing between a
// client and a server pod, the sink that runs the real syncer inside it,
// the cluster objects the controller is fed, and the measuring helpers.

package policybench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/kube"
	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policy/netpol"
	"github.com/duetnet/duet/internal/policynft"
)

// nodeNS is a throwaway node namespace routing between a client and a
// server pod namespace, each joined to it by a veth pair.
type nodeNS struct {
	node           string // name for ip netns exec
	nodeNS         ns.NetNS
	client, server kpod
}

type kpod struct {
	name  string
	ns    ns.NetNS
	addrs []netip.Addr // IPv6 first
}

func newNode(b *testing.B) *nodeNS {
	kerneltest.RequireRoot(b)
	path := kerneltest.RouterNS(b)
	n := &nodeNS{node: kerneltest.NetNSName(path), nodeNS: getNS(b, path)}
	n.client, n.server = n.pod(b, 1), n.pod(b, 2)
	return n
}

func (n *nodeNS) pod(b *testing.B, i int) kpod {
	path, addrs := kerneltest.RoutedPod(b, n.node, fmt.Sprintf("vb%d", i),
		netip.MustParsePrefix(fmt.Sprintf("fd00:be1:%d::1/64", i)), netip.MustParsePrefix(fmt.Sprintf("10.251.%d.1/24", i)))
	return kpod{name: kerneltest.NetNSName(path), ns: getNS(b, path), addrs: addrs}
}

// getNS opens the namespace at path until the benchmark ends.
func getNS(b *testing.B, path string) ns.NetNS {
	h, err := ns.GetNS(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// sink is the controller's sink in the benchmark: the real syncer and
// real nft, run inside the node namespace (a thread in the namespace
// execs nft, which inherits it). Each successful sync is handed to
// observe, after the kernel has taken the transaction.
type sink struct {
	node   ns.NetNS
	mu     sync.Mutex
	syncer *policynft.Syncer
	// observe gets the pods of each sync and when the sync reached the
	// sink (the informers, the runner and the compile are before it; the
	// nft transaction after).
	observe  func(pods []policy.PodRules, entered time.Time)
	syncs    int
	lastSync time.Duration // the last successful sync's time in the sink (render, diff, nft)
	nft      *timedNFT
}

// timedNFT times each transaction: nft's own share of a sync.
type timedNFT struct {
	knftables.Interface
	last time.Duration
}

func (t *timedNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	start := time.Now()
	err := t.Interface.Run(ctx, tx)
	t.last = time.Since(start)
	return err
}

func (s *sink) Sync(ctx context.Context, pods []policy.PodRules) error {
	entered := time.Now()
	if s.nft != nil {
		s.nft.last = 0
	}
	err := s.node.Do(func(ns.NetNS) error {
		if s.syncer == nil {
			nft, err := knftables.New(knftables.InetFamily, policynft.Table)
			if err != nil {
				return err
			}
			s.nft = &timedNFT{Interface: nft}
			s.syncer = policynft.NewSyncer(s.nft)
		}
		return s.syncer.Sync(ctx, pods)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.syncs++
	s.lastSync = time.Since(entered)
	f := s.observe
	s.mu.Unlock()
	if f != nil {
		f(pods, entered)
	}
	return nil
}

// cluster is the objects a benchmark starts from.
type cluster struct {
	pods []*corev1.Pod
	pols []*netv1.NetworkPolicy
	nss  []*corev1.Namespace
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name, "team": name}}}
}

func pod(ns, name, node string, labels map[string]string, ips ...netip.Addr) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0].String()
	}
	return p
}

func tcp(port int) netv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	p := intstr.FromInt32(int32(port))
	return netv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func named(name string) netv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	p := intstr.FromString(name)
	return netv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func ingressPolicy(ns, name string, sel map[string]string, rules ...netv1.NetworkPolicyIngressRule) *netv1.NetworkPolicy {
	return &netv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: netv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress}, Ingress: rules},
	}
}

// base is the measured pair: a client and a server pod on this node, the
// server isolated by one policy that lets the client reach the iperf3
// and connection ports.
func base(n *nodeNS) cluster {
	return cluster{
		nss: []*corev1.Namespace{namespace(benchNS)},
		pods: []*corev1.Pod{
			pod(benchNS, "client", benchNode, map[string]string{"app": "client"}, n.client.addrs...),
			pod(benchNS, "server", benchNode, map[string]string{"app": "server"}, n.server.addrs...),
		},
		pols: []*netv1.NetworkPolicy{ingressPolicy(benchNS, "allow-client", map[string]string{"app": "server"},
			netv1.NetworkPolicyIngressRule{
				From:  []netv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []netv1.NetworkPolicyPort{tcp(iperfPort), tcp(connPort)},
			})},
	}
}

// others adds local pods others-0 .. others-(pods-1) (addresses no packet
// of the benchmark uses) and policies selecting them, each admitting its
// own peers: an ipBlock with an except, a pod selector over another
// namespace, a port by number and a named port. So the table grows in
// chains, sets and elements with the policies, and the measured pods'
// chains do not change.
func (c *cluster) others(pods, policies int) {
	if pods == 0 {
		return
	}
	c.nss = append(c.nss, namespace("peers"))
	for i := range pods {
		c.pods = append(c.pods, pod(benchNS, fmt.Sprintf("others-%d", i), benchNode, map[string]string{"app": "other", "slot": fmt.Sprint(i)},
			netip.MustParseAddr(fmt.Sprintf("fd00:be1:ff::%x", i+1)), netip.MustParseAddr(fmt.Sprintf("10.251.%d.%d", 200+i/250, 1+i%250))))
	}
	for j := range 20 { // remote peers, on another node
		c.pods = append(c.pods, pod("peers", fmt.Sprintf("peer-%d", j), "elsewhere", map[string]string{"role": fmt.Sprintf("r%d", j%5)},
			netip.MustParseAddr(fmt.Sprintf("fd00:be1:ee::%x", j+1)), netip.MustParseAddr(fmt.Sprintf("10.251.250.%d", j+1))))
	}
	for i := range policies {
		slot := fmt.Sprint(i % pods)
		c.pols = append(c.pols, ingressPolicy(benchNS, fmt.Sprintf("other-%d", i), map[string]string{"app": "other", "slot": slot},
			netv1.NetworkPolicyIngressRule{
				From: []netv1.NetworkPolicyPeer{
					{IPBlock: &netv1.IPBlock{CIDR: fmt.Sprintf("fd00:%x::/48", 0x1000+i%0xe000), Except: []string{fmt.Sprintf("fd00:%x:0:1::/64", 0x1000+i%0xe000)}}},
					{IPBlock: &netv1.IPBlock{CIDR: fmt.Sprintf("172.%d.%d.0/24", 16+i/65536%16, i/256%256), Except: []string{fmt.Sprintf("172.%d.%d.128/25", 16+i/65536%16, i/256%256)}}},
				},
				Ports: []netv1.NetworkPolicyPort{tcp(1000 + i%30000)},
			},
			netv1.NetworkPolicyIngressRule{
				From: []netv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "peers"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": fmt.Sprintf("r%d", i%5)}},
				}},
				Ports: []netv1.NetworkPolicyPort{named("http")},
			}))
	}
}

func (c cluster) objects() []k8sruntime.Object {
	var out []k8sruntime.Object
	for _, o := range c.nss {
		out = append(out, o)
	}
	for _, o := range c.pods {
		out = append(out, o)
	}
	for _, o := range c.pols {
		out = append(out, o)
	}
	return out
}

// controller runs the real NetworkPolicy controller over a fake
// clientset holding c, into s, until the benchmark ends; it returns when
// the first sync is in the kernel, and how long that took.
func controller(b *testing.B, c cluster, s *sink) (*fake.Clientset, time.Duration, func()) {
	// A fixture duet cannot render would measure less than it claims.
	if _, probs := netpol.CompileFor(c.pols, c.pods, c.nss, func(string, string) bool { return false }); len(probs) > 0 {
		b.Fatalf("the benchmark's own policies have %d problems, the first: %v", len(probs), probs[0])
	}
	client := fake.NewClientset(c.objects()...)
	first := make(chan struct{})
	var once sync.Once
	s.observe = func([]policy.PodRules, time.Time) { once.Do(func() { close(first) }) }
	pol, err := kube.NewPolicies(client, kube.PolicyConfig{Node: benchNode, Sink: s, Log: discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); pol.Run(ctx, time.Second) }()
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { cancel(); <-done }) }
	b.Cleanup(stop)
	select {
	case <-first:
	case <-time.After(5 * time.Minute):
		b.Fatal("no first sync in 5 minutes")
	}
	return client, time.Since(start), stop
}

// selects says whether pod's ingress lists policy.
func selects(pods []policy.PodRules, pod, pol string) bool {
	for _, p := range pods {
		if p.Name == pod && p.Ingress != nil {
			return slices.Contains(p.Ingress.Policies, pol)
		}
	}
	return false
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// fullCluster: pods spread over nodes (local on benchNode) and
// namespaces; every namespace has policies of several shapes.
func fullCluster(pods, policies, namespaces, local int) cluster {
	var c cluster
	for i := range namespaces {
		c.nss = append(c.nss, namespace(fmt.Sprintf("ns-%d", i)))
	}
	for i := range pods {
		node := fmt.Sprintf("node-%d", i%50)
		if i < local {
			node = benchNode
		}
		ns := fmt.Sprintf("ns-%d", i%namespaces)
		c.pods = append(c.pods, pod(ns, fmt.Sprintf("pod-%d", i), node, map[string]string{"app": fmt.Sprintf("app-%d", i%100), "tier": fmt.Sprintf("t%d", i%3)},
			netip.AddrFrom16([16]byte{0xfd, 0x00, 0x0b, 0xe1, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}),
			netip.AddrFrom4([4]byte{10, 252, byte(i >> 8), byte(i)})))
	}
	for i := range policies {
		ns := fmt.Sprintf("ns-%d", i%namespaces)
		sel := map[string]string{"app": fmt.Sprintf("app-%d", i%100)}
		var rule netv1.NetworkPolicyIngressRule
		switch i % 4 {
		case 0: // pods of one tier in the same namespace, a port
			rule = netv1.NetworkPolicyIngressRule{From: []netv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprintf("t%d", i%3)}}}},
				Ports: []netv1.NetworkPolicyPort{tcp(1000 + i%5000)}}
		case 1: // every pod of another namespace, a named port
			rule = netv1.NetworkPolicyIngressRule{From: []netv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("ns-%d", (i+1)%namespaces)}}}},
				Ports: []netv1.NetworkPolicyPort{named("http")}}
		case 2: // ipBlocks with excepts, both families
			rule = netv1.NetworkPolicyIngressRule{From: []netv1.NetworkPolicyPeer{
				{IPBlock: &netv1.IPBlock{CIDR: fmt.Sprintf("2001:db8:%x::/48", i), Except: []string{fmt.Sprintf("2001:db8:%x:1::/64", i)}}},
				{IPBlock: &netv1.IPBlock{CIDR: fmt.Sprintf("172.%d.%d.0/24", 16+i/65536%16, i/256%256), Except: []string{fmt.Sprintf("172.%d.%d.0/26", 16+i/65536%16, i/256%256)}}},
			}}
		default: // pods of one app in namespaces with a label
			rule = netv1.NetworkPolicyIngressRule{From: []netv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"ns-1", "ns-2", "ns-3"}}}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", (i+7)%100)}},
			}}}
		}
		c.pols = append(c.pols, ingressPolicy(ns, fmt.Sprintf("pol-%d", i), sel, rule))
	}
	return c
}

// tableSize counts the chains of the node's policy table and the
// elements of its sets and maps, from nft's JSON.
func tableSize(b *testing.B, node string) (chains, elements int) {
	out, err := exec.Command("ip", "netns", "exec", node, "nft", "-j", "list", "table", "inet", policynft.Table).Output()
	if err != nil {
		b.Fatalf("nft -j list table: %v", err)
	}
	var doc struct {
		Nftables []map[string]struct {
			Elem []json.RawMessage `json:"elem"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		b.Fatalf("nft -j: %v", err)
	}
	for _, o := range doc.Nftables {
		for kind, v := range o {
			switch kind {
			case "chain":
				chains++
			case "set", "map":
				elements += len(v.Elem)
			}
		}
	}
	return chains, elements
}

// acceptAll accepts TCP connections on port in p, both families, and
// closes them at once.
func acceptAll(b *testing.B, p kpod, port int) func() {
	var l net.Listener
	if err := p.ns.Do(func(ns.NetNS) (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return func() { l.Close() }
}

// connRate is the median, over rounds, of TCP connections completed per
// second from p to dst:connPort, one at a time (connect, then close with
// a reset so that TIME_WAIT does not exhaust the ports).
func connRate(b *testing.B, p kpod, dst netip.Addr, rounds int, each time.Duration) float64 {
	addr := netip.AddrPortFrom(dst, connPort).String()
	var rates []float64
	for range rounds {
		var n int
		err := p.ns.Do(func(ns.NetNS) error {
			d := net.Dialer{Timeout: time.Second}
			start := time.Now()
			for time.Since(start) < each {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					return err
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
				n++
			}
			rates = append(rates, float64(n)/time.Since(start).Seconds())
			return nil
		})
		if err != nil {
			b.Fatalf("connect to %s: %v", addr, err)
		}
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
