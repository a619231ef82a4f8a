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
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policynft"
)

const (
	benchNS   = "bench"
	benchNode = "bench-node"
	iperfPort = 5201
	connPort  = 5202
)

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
		kerneltest.Run(b, "ip", "netns", "exec", n.node, "sh", "-c", "nft delete table inet "+policynft.Table+" 2>/dev/null; true")
		client, _, stop := controller(b, c, s)
		ctx := context.Background()
		// wait returns the time from act to the kernel holding what
		// cond sees, and the part of it spent in the sink (nft).
		var inSyncer, inNFT []time.Duration
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
				inSyncer = append(inSyncer, t.done.Sub(t.entered))
				inNFT = append(inNFT, t.nft)
				return t.done.Sub(start)
			case <-time.After(time.Minute):
				b.Fatal("not enforced within a minute")
			}
			return 0
		}
		var created, labelled, syncerCreated, syncerLabelled, nftCreated, nftLabelled []time.Duration
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
			syncerCreated = append(syncerCreated, inSyncer[len(inSyncer)-1])
			nftCreated = append(nftCreated, inNFT[len(inNFT)-1])
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
			syncerLabelled = append(syncerLabelled, inSyncer[len(inSyncer)-1])
			nftLabelled = append(nftLabelled, inNFT[len(inNFT)-1])
		}
		stop()
		report = append(report,
			fmt.Sprintf("policy created -> enforced, %5d policies: p50 %s  p99 %s  (syncer p50 %s, of which nft %s)", size+1, ms(pct(created, 50)), ms(pct(created, 99)), ms(pct(syncerCreated, 50)), ms(pct(nftCreated, 50))),
			fmt.Sprintf("pod labelled   -> enforced, %5d policies: p50 %s  p99 %s  (syncer p50 %s, of which nft %s)", size+1, ms(pct(labelled, 50)), ms(pct(labelled, 99)), ms(pct(syncerLabelled, 50)), ms(pct(nftLabelled, 50))),
			fmt.Sprintf("  %d rounds each; %d syncs ran without the change yet", rounds, syncsBefore))
	}
	b.Log("\n" + strings.Join(report, "\n") + "\n(reference: the issue's \"within milliseconds\"; the controller recompiles this node's pods after each change, coalesced)")
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
		kerneltest.Run(b, "ip", "netns", "exec", n.node, "sh", "-c", "nft delete table inet "+policynft.Table+" 2>/dev/null; true")
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
	inSyncer := s.lastSync
	s.mu.Unlock()
	b.Logf("\nfull sync, %d policies over %d pods (%d on this node): %s from start to the first sync in the kernel (informers' list, compile, the syncer (render, diff, one nft transaction) %s)\n"+
		"heap in use after sync: %.1f MiB (%.1f MiB before the controller, objects of the fake API server included)\n"+
		"table inet %s: %d chains, %d set and map elements",
		len(c.pols), len(c.pods), 100, first.Round(time.Millisecond), inSyncer.Round(time.Millisecond), float64(after.HeapInuse)/(1<<20), float64(before.HeapInuse)/(1<<20),
		policynft.Table, chains, elements)
}
