// Root only. Run just this one with
//
//	go test -run XXX -bench Throughput -benchtime 1x -count 1 ./bench/cluster/ [-args -throughput.rounds 30]

package cluster

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/lab"
)

var throughputRounds = flag.Int("throughput.rounds", 20, "BenchmarkThroughput: rounds of one node-to-node and one pod-to-pod run (1 s each) per routing mode and family")

// BenchmarkThroughput: one TCP stream pod to pod across nodes, against
// node to node over the same underlay, per routing mode and family.
//
// A single veth flow on a small, shared VM swings 10-50 % from one second
// to the next with whatever else runs, so one or two runs per path prove
// nothing. The two paths are measured in alternation (A B B A A B ...,
// which cancels a steady drift), for many short rounds; the figures are
// the median of each path with its range, the ratio of the medians, and
// the median of the per-round ratios. Both paths use the same iperf3
// command, the same direction and, on two CPUs or more, the same CPU
// affinity (client on CPU 0, server on CPU 1: a veth hands a packet on in
// the sender's softirq, so every hop of either path is paid on CPU 0). The
// MTUs and the MSS of both paths are printed: with direct routing they
// must be equal for the ratio to mean anything; with vxlan the pod's MTU
// is smaller by the encapsulation, a cost the ratio is meant to show.
func BenchmarkThroughput(b *testing.B) {
	kerneltest.RequireRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatal("iperf3 is missing: apt-get install iperf3 (hack/deps.sh does)")
	}
	bins := buildBins(b)
	for _, routing := range []string{"direct", "vxlan"} {
		s, _, down := labUp(b, bins, lab.Options{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: routing})
		n1, n2 := s.Nodes[0], s.Nodes[1]
		p1, p2 := s.Pods[0], s.Pods[1]
		stopN := iperfServer(b, n2.NetNS)
		stopP := iperfServer(b, p2.NetNS)
		b.Logf("throughput %-6s MTU: node uplink %s, pod eth0 %s; %d rounds of 1 s per path and family, iperf3 %s",
			routing, sysNet(b, n1.NetNS, "uplink", "mtu"), sysNet(b, p1.NetNS, "eth0", "mtu"), *throughputRounds, strings.Join(affinity(), " "))
		for _, ip := range p2.IPs {
			fam := map[bool]string{true: "IPv6", false: "IPv4"}[ip.Is6()]
			i := slices.IndexFunc(n2.Addrs, func(a netip.Addr) bool { return a.Is6() == ip.Is6() })
			node := iperfPath{src: n1.NetNS, dst: n2.Addrs[i]}
			pod := iperfPath{src: p1.NetNS, dst: ip}
			for r := 0; r < *throughputRounds; r++ {
				if r%2 == 0 {
					node.run(b)
					pod.run(b)
				} else {
					pod.run(b)
					node.run(b)
				}
			}
			ref, got := median(node.gbps), median(pod.gbps)
			ratios := make([]float64, len(pod.gbps))
			for k := range ratios {
				ratios[k] = pod.gbps[k] / node.gbps[k]
			}
			b.Logf("throughput %-6s %s: pod-to-pod %s, node-to-node %s Gbit/s (median [min-max]); ratio of medians %.1f%%, median per-round ratio %.1f%% (target direct >= 95%%)",
				routing, fam, pod.summary(), node.summary(), 100*got/ref, 100*median(ratios))
			if pod.mss != node.mss {
				b.Logf("throughput %-6s %s: MSS pod-to-pod %d, node-to-node %d", routing, fam, pod.mss, node.mss)
			}
			b.ReportMetric(100*got/ref, routing+"-"+fam+"-pct-of-node")
		}
		stopP()
		stopN()
		down()
	}
}

// iperfPath is one direction of measurement: a client in src, a server
// (from iperfServer) listening on dst.
type iperfPath struct {
	src  string
	dst  netip.Addr
	gbps []float64
	mss  int
}

func (p *iperfPath) run(b *testing.B) {
	b.Helper()
	args := append([]string{"netns", "exec", p.src, "iperf3", "-J", "-t", "1", "-c", p.dst.String()}, affinity()...)
	var out []byte
	var err error
	for try := 0; try < 50; try++ { // the first run waits for the server to listen
		if out, err = exec.Command("ip", args...).Output(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatalf("iperf3 %s -> %s: %v\n%s", p.src, p.dst, err, out)
	}
	var r struct {
		Error string `json:"error"`
		Start struct {
			MSS int `json:"tcp_mss_default"`
		} `json:"start"`
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatal(err)
	}
	if r.Error != "" || r.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("iperf3 %s -> %s: %q\n%s", p.src, p.dst, r.Error, out)
	}
	p.gbps = append(p.gbps, r.End.SumReceived.BitsPerSecond/1e9)
	p.mss = r.Start.MSS
}

func (p *iperfPath) summary() string {
	return fmt.Sprintf("%.2f [%.2f-%.2f]", median(p.gbps), slices.Min(p.gbps), slices.Max(p.gbps))
}

// iperfServer runs `iperf3 -s` (both families) in netns until the
// returned func stops it.
func iperfServer(b *testing.B, netns string) func() {
	b.Helper()
	srv := exec.Command("ip", "netns", "exec", netns, "iperf3", "-s")
	if err := srv.Start(); err != nil {
		b.Fatalf("iperf3 server in %s: %v", netns, err)
	}
	stop := func() { _ = srv.Process.Kill(); _ = srv.Wait() }
	b.Cleanup(stop)
	return stop
}

// affinity pins the client to CPU 0 and the server to CPU 1, the same
// for every path; on one CPU there is nothing to choose.
func affinity() []string {
	if runtime.NumCPU() < 2 {
		return nil
	}
	return []string{"-A", "0,1"}
}

// sysNet reads /sys/class/net/<dev>/<attr> as seen from netns.
func sysNet(b *testing.B, netns, dev, attr string) string {
	b.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "cat", "/sys/class/net/"+dev+"/"+attr).Output()
	if err != nil {
		b.Fatalf("%s %s %s: %v", netns, dev, attr, err)
	}
	return strings.TrimSpace(string(out))
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
