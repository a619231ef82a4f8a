// Package policybench benchmarks duet's NetworkPolicy (root only; part of
// `make bench`), each figure beside the reference it is compared with,
// measured in the same run:
//
//   - BenchmarkPolicyEnforce: from a NetworkPolicy created (or a pod
//     labelled) until table inet duet-policy holds its effect in a real
//     kernel, p50/p99, with 100 and 1,000 policies in place; objects go
//     through the real controller (kube.Policies, over client-go's fake
//     clientset) and the real syncer.
//   - BenchmarkPolicyDataPath: single-flow TCP throughput (iperf3) and TCP
//     connection rate between two pods, both families, with no policy
//     table (the reference), with the server isolated by one policy, and
//     with 100 and 10,000 more policies selecting other pods: the figure
//     must stay flat, since a packet costs one map lookup and a few set
//     lookups however many policies there are.
//   - BenchmarkPolicyFullSync: the first sync of 10,000 policies over
//     5,000 pods (100 of them on this node), through the controller and a
//     real kernel table: time, heap, and the table's size.
//
// Figures are printed, never asserted.
package policybench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
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

	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/kube"
	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policy/netpol"
)

const (
	benchNS   = "bench"
	benchNode = "bench-node"
	iperfPort = 5201
	connPort  = 5202
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
	path := kerneltest.NetNS(b)
	n := &nodeNS{node: kerneltest.NetNSName(path)}
	for _, s := range []string{"net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"} {
		kerneltest.Run(b, "ip", "netns", "exec", n.node, "sysctl", "-qw", s)
	}
	kerneltest.Run(b, "ip", "-n", n.node, "link", "set", "lo", "up")
	var err error
	if n.nodeNS, err = ns.GetNS(path); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.nodeNS.Close() })
	n.client, n.server = n.pod(b, 1), n.pod(b, 2)
	return n
}

func (n *nodeNS) pod(b *testing.B, i int) kpod {
	path := kerneltest.NetNS(b)
	name := kerneltest.NetNSName(path)
	veth := fmt.Sprintf("vb%d", i)
	kerneltest.Run(b, "ip", "-n", n.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
	for _, c := range [][]string{
		{"-n", n.node, "addr", "add", fmt.Sprintf("fd00:be1:%d::1/64", i), "dev", veth, "nodad"},
		{"-n", n.node, "addr", "add", fmt.Sprintf("10.251.%d.1/24", i), "dev", veth},
		{"-n", n.node, "link", "set", veth, "up"},
		{"-n", name, "addr", "add", fmt.Sprintf("fd00:be1:%d::2/64", i), "dev", "eth0", "nodad"},
		{"-n", name, "addr", "add", fmt.Sprintf("10.251.%d.2/24", i), "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:be1:%d::1", i)},
		{"-n", name, "-4", "route", "add", "default", "via", fmt.Sprintf("10.251.%d.1", i)},
	} {
		kerneltest.Run(b, "ip", c...)
	}
	h, err := ns.GetNS(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	p := kpod{name: name, ns: h, addrs: []netip.Addr{
		netip.MustParseAddr(fmt.Sprintf("fd00:be1:%d::2", i)), netip.MustParseAddr(fmt.Sprintf("10.251.%d.2", i))}}
	// A veth's carrier comes up through linkwatch, up to a second late.
	for _, gw := range []string{fmt.Sprintf("fd00:be1:%d::1", i), fmt.Sprintf("10.251.%d.1", i)} {
		deadline := time.Now().Add(5 * time.Second)
		for exec.Command("ip", "netns", "exec", name, "ping", "-c1", "-W1", gw).Run() != nil {
			if time.Now().After(deadline) {
				b.Fatalf("pod %d cannot reach the node at %s", i, gw)
			}
		}
	}
	return p
}

// sink is the controller's sink in the benchmark: the real syncer and
// real nft, run inside the node namespace (a thread in the namespace
// execs nft, which inherits it). Each successful sync is handed to
// observe, after the kernel has taken the transaction.
type sink struct {
	node   ns.NetNS
	mu     sync.Mutex
	syncer *firewall.PolicySyncer
	// observe gets the pods of each sync and when the sync reached the
	// sink (the informers, the runner and the compile are before it; the
	// nft transaction after).
	observe func(pods []policy.PodRules, entered time.Time)
	syncs   int
	lastNFT time.Duration // the last successful sync's time in the sink
	nft     *timedNFT
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
			nft, err := knftables.New(knftables.InetFamily, firewall.PolicyTable)
			if err != nil {
				return err
			}
			s.nft = &timedNFT{Interface: nft}
			s.syncer = firewall.NewPolicySyncer(s.nft)
		}
		return s.syncer.Sync(ctx, pods)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.syncs++
	s.lastNFT = time.Since(entered)
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

// BenchmarkPolicyEnforce: create a policy that selects the server (or
// label a pod so that a policy selects it) and wait until a sync whose
// rules show it has been taken by the kernel.
func BenchmarkPolicyEnforce(b *testing.B) {
	n := newNode(b)
	const rounds = 50
	var report []string
	for _, size := range []int{100, 1000} {
		c := base(n)
		c.others(100, size)
		// A policy no pod matches yet: labelling others-K with probe=on
		// makes it select that pod, which then admits tcp/9999 from
		// anyone (new elements in that pod's sets).
		c.pols = append(c.pols, ingressPolicy(benchNS, "probe-label", map[string]string{"probe": "on"},
			netv1.NetworkPolicyIngressRule{Ports: []netv1.NetworkPolicyPort{tcp(9999)}}))
		s := &sink{node: n.nodeNS}
		// Each size starts from an empty table.
		kerneltest.Run(b, "ip", "netns", "exec", n.node, "sh", "-c", "nft delete table inet "+firewall.PolicyTable+" 2>/dev/null; true")
		client, _, stop := controller(b, c, s)
		ctx := context.Background()
		// wait returns the time from act to the kernel holding what
		// cond sees, and the part of it spent in the sink (nft).
		var inNFT, nftOnly []time.Duration
		var syncsBefore int
		wait := func(cond func([]policy.PodRules) bool, act func()) time.Duration {
			type seen struct {
				entered, done time.Time
				nft           time.Duration
			}
			s.mu.Lock()
			syncs0 := s.syncs
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				syncsBefore += s.syncs - syncs0 - 1
				s.mu.Unlock()
			}()
			got := make(chan seen, 1)
			s.mu.Lock()
			s.observe = func(pods []policy.PodRules, entered time.Time) {
				if cond(pods) {
					select {
					case got <- seen{entered, time.Now(), s.nft.last}:
					default:
					}
				}
			}
			s.mu.Unlock()
			start := time.Now()
			act()
			select {
			case t := <-got:
				inNFT = append(inNFT, t.done.Sub(t.entered))
				nftOnly = append(nftOnly, t.nft)
				return t.done.Sub(start)
			case <-time.After(time.Minute):
				b.Fatal("not enforced within a minute")
			}
			return 0
		}
		var created, labelled, nftCreated, nftLabelled, runCreated, runLabelled []time.Duration
		for k := range rounds {
			name := fmt.Sprintf("probe-%d", k)
			created = append(created, wait(func(pods []policy.PodRules) bool {
				return selects(pods, "server", benchNS+"/"+name)
			}, func() {
				p := ingressPolicy(benchNS, name, map[string]string{"app": "server"}, netv1.NetworkPolicyIngressRule{Ports: []netv1.NetworkPolicyPort{tcp(7000 + k)}})
				if _, err := client.NetworkingV1().NetworkPolicies(benchNS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
			}))
			nftCreated = append(nftCreated, inNFT[len(inNFT)-1])
			runCreated = append(runCreated, nftOnly[len(nftOnly)-1])
			target := fmt.Sprintf("others-%d", k)
			labelled = append(labelled, wait(func(pods []policy.PodRules) bool {
				return selects(pods, target, benchNS+"/probe-label")
			}, func() {
				p, err := client.CoreV1().Pods(benchNS).Get(ctx, target, metav1.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				p = p.DeepCopy()
				p.Labels["probe"] = "on"
				if _, err := client.CoreV1().Pods(benchNS).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
			}))
			nftLabelled = append(nftLabelled, inNFT[len(inNFT)-1])
			runLabelled = append(runLabelled, nftOnly[len(nftOnly)-1])
		}
		stop()
		report = append(report,
			fmt.Sprintf("policy created -> enforced, %5d policies: p50 %s  p99 %s  (syncer p50 %s, of which nft %s)", size+1, ms(pct(created, 50)), ms(pct(created, 99)), ms(pct(nftCreated, 50)), ms(pct(runCreated, 50))),
			fmt.Sprintf("pod labelled   -> enforced, %5d policies: p50 %s  p99 %s  (syncer p50 %s, of which nft %s)", size+1, ms(pct(labelled, 50)), ms(pct(labelled, 99)), ms(pct(nftLabelled, 50)), ms(pct(runLabelled, 50))),
			fmt.Sprintf("  %d rounds each; %d syncs ran without the change yet", rounds, syncsBefore))
	}
	b.Log("\n" + strings.Join(report, "\n") + "\n(reference: the issue's \"within milliseconds\"; the controller recompiles this node's pods after each change, coalesced)")
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

// BenchmarkPolicyDataPath: the same two pods, the same run; only the
// policy table changes between configurations.
func BenchmarkPolicyDataPath(b *testing.B) {
	n := newNode(b)
	stopConn := acceptAll(b, n.server, connPort)
	defer stopConn()
	type config struct {
		name     string
		policies int // -1: no table at all
	}
	// The reference runs first and last, so drift during the run shows.
	configs := []config{{"no policy table (reference)", -1}, {"server isolated, 1 policy", 0},
		{"+ 100 policies on other pods", 100}, {"+ 10,000 policies on other pods", 10000}, {"no policy table (reference, again)", -1}}
	type figures struct{ gbit, conns [2]float64 }
	results := make([]figures, len(configs))
	elements := make([]int, len(configs))
	for i, cf := range configs {
		kerneltest.Run(b, "ip", "netns", "exec", n.node, "sh", "-c", "nft delete table inet "+firewall.PolicyTable+" 2>/dev/null; true")
		if cf.policies >= 0 {
			c := base(n)
			c.others(100, cf.policies)
			_, _, stop := controller(b, c, &sink{node: n.nodeNS})
			stop() // the table stays; nothing changes it while measured
			_, elements[i] = tableSize(b, n.node)
		}
		for f := range 2 {
			var gbit []float64
			for range 3 {
				gbit = append(gbit, kerneltest.Iperf3(b, n.client.name, n.server.name, n.server.addrs[f].String(), iperfPort, 2))
			}
			results[i].gbit[f] = median(gbit)
			results[i].conns[f] = connRate(b, n.client, n.server.addrs[f], 5, 400*time.Millisecond)
		}
	}
	var out []string
	out = append(out, fmt.Sprintf("%-36s %12s %12s %12s %12s %9s", "", "IPv6 Gbit/s", "IPv4 Gbit/s", "IPv6 conn/s", "IPv4 conn/s", "elements"))
	for i, cf := range configs {
		r := results[i]
		out = append(out, fmt.Sprintf("%-36s %12.2f %12.2f %12.0f %12.0f %9d", cf.name, r.gbit[0], r.gbit[1], r.conns[0], r.conns[1], elements[i]))
	}
	first, last := results[0], results[len(results)-1]
	var ref figures
	for f := range 2 {
		ref.gbit[f] = (first.gbit[f] + last.gbit[f]) / 2
		ref.conns[f] = (first.conns[f] + last.conns[f]) / 2
	}
	for i := 1; i < len(configs)-1; i++ {
		r := results[i]
		out = append(out, fmt.Sprintf("%-36s %11.1f%% %11.1f%% %11.1f%% %11.1f%%  of the reference (mean of its two runs)", configs[i].name,
			100*r.gbit[0]/ref.gbit[0], 100*r.gbit[1]/ref.gbit[1], 100*r.conns[0]/ref.conns[0], 100*r.conns[1]/ref.conns[1]))
	}
	b.Log("\n" + strings.Join(out, "\n") + "\n(single flow: median of 3 iperf3 runs of 2 s; connection rate: median of 5 rounds of 400 ms, one connection at a time)")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPolicyFullSync: 10,000 policies over 5,000 pods in 50
// namespaces across 50 nodes; this node has 100 of the pods.
func BenchmarkPolicyFullSync(b *testing.B) {
	n := newNode(b)
	c := fullCluster(5000, 10000, 50, 100)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	s := &sink{node: n.nodeNS}
	_, first, _ := controller(b, c, s)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	chains, elements := tableSize(b, n.node)
	s.mu.Lock()
	inNFT := s.lastNFT
	s.mu.Unlock()
	b.Logf("\nfull sync, %d policies over %d pods (%d on this node): %s from start to the first sync in the kernel (informers' list, compile, the syncer (render, diff, one nft transaction) %s)\n"+
		"heap in use after sync: %.1f MiB (%.1f MiB before the controller, objects of the fake API server included)\n"+
		"table inet %s: %d chains, %d set and map elements",
		len(c.pols), len(c.pods), 100, first.Round(time.Millisecond), inNFT.Round(time.Millisecond), float64(after.HeapInuse)/(1<<20), float64(before.HeapInuse)/(1<<20),
		firewall.PolicyTable, chains, elements)
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
	out, err := exec.Command("ip", "netns", "exec", node, "nft", "-j", "list", "table", "inet", firewall.PolicyTable).Output()
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
