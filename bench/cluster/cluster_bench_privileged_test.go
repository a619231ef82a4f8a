// Package cluster benchmarks duet's multi-node figures on the lab (root
// only): how fast a new pod is reachable from another node, pod-to-pod
// throughput across nodes against node-to-node over the same underlay, and
// how long lab up takes. Run with `make bench`; figures are printed beside
// their reference, never asserted.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/connectivity"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/lab"
)

func buildBins(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/duetnet/duet/cmd/duet", "github.com/duetnet/duet/cmd/duetd").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// labUp brings a lab up; the returned func (also run at cleanup) takes
// it down, so a benchmark can measure one lab after another.
func labUp(b *testing.B, bins string, o lab.Options) (lab.State, time.Duration, func()) {
	b.Helper()
	datadir := filepath.Join(b.TempDir(), "lab")
	down := func() { _ = lab.Down(datadir, &bytes.Buffer{}) }
	b.Cleanup(down)
	start := time.Now()
	s, err := lab.Up(context.Background(), o, bins, datadir, &bytes.Buffer{})
	if err != nil {
		b.Fatalf("lab up: %v", err)
	}
	return s, time.Since(start), down
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkConvergence: from ADD returning on node1 until the pod answers
// an echo from node2, over 100 pods, per family.
func BenchmarkConvergence(b *testing.B) {
	kerneltest.RequireRoot(b)
	bins := buildBins(b)
	for _, routing := range []string{"direct", "vxlan"} {
		s, _, down := labUp(b, bins, lab.Options{Nodes: 2, PodsPerNode: 0, Family: "dual", Routing: routing})
		lat := map[bool][]time.Duration{}
		for i := 0; i < 100; i++ {
			p := lab.Pod{Name: fmt.Sprintf("node1-c%d", i), NetNS: fmt.Sprintf("%snode1-c%d", lab.Prefix, i), Node: "node1"}
			ips, err := lab.AddPod(context.Background(), s, bins, p)
			if err != nil {
				b.Fatal(err)
			}
			added := time.Now()
			// Both families at once, each timed from ADD's return.
			var wg sync.WaitGroup
			var mu sync.Mutex
			errs := make(chan error, len(ips))
			for _, ip := range ips {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := echoUntil(s.Nodes[1].NetNS, ip, 5*time.Second); err != nil {
						errs <- fmt.Errorf("pod %s %s never answered node2: %v", p.Name, ip, err)
						return
					}
					mu.Lock()
					lat[ip.Is6()] = append(lat[ip.Is6()], time.Since(added))
					mu.Unlock()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		}
		for _, v6 := range []bool{true, false} {
			fam := map[bool]string{true: "IPv6", false: "IPv4"}[v6]
			b.Logf("convergence %-6s %s over %d pods: p50 %v  p99 %v  (target p99 <= 200ms)", routing, fam, len(lat[v6]), pct(lat[v6], 0.5), pct(lat[v6], 0.99))
			b.ReportMetric(float64(pct(lat[v6], 0.99).Microseconds())/1000, routing+"-"+fam+"-p99-ms")
		}
		down()
	}
}

// BenchmarkBGPBlockConvergence: with BGP through BIRD, from the ADD of a
// pod that claims a new block on node1 until node2 gets an answer from
// it: the block has gone node1 -> BIRD -> node2 and been installed. Small
// IPv6 blocks (/126) make every second or fourth pod claim one.
func BenchmarkBGPBlockConvergence(b *testing.B) {
	kerneltest.RequireRoot(b)
	bins := buildBins(b)
	s, _, down := labUp(b, bins, lab.Options{Nodes: 2, PodsPerNode: 0, Family: "ipv6", Routing: "bgp", Topology: "routed", BlockSize6: 126})
	defer down()
	var lat []time.Duration
	blocks := map[netip.Prefix]bool{}
	for i := 0; len(lat) < 20 && i < 100; i++ {
		p := lab.Pod{Name: fmt.Sprintf("node1-b%d", i), NetNS: fmt.Sprintf("%snode1-b%d", lab.Prefix, i), Node: "node1"}
		ips, err := lab.AddPod(context.Background(), s, bins, p)
		if err != nil {
			b.Fatal(err)
		}
		added := time.Now()
		blk := netip.PrefixFrom(ips[0], 126).Masked()
		fresh := !blocks[blk]
		blocks[blk] = true
		if err := echoUntil(s.Nodes[1].NetNS, ips[0], 10*time.Second); err != nil {
			b.Fatalf("pod %s never answered node2: %v", ips[0], err)
		}
		if fresh {
			lat = append(lat, time.Since(added))
		}
	}
	b.Logf("BGP: new block's first pod ADD -> answer from the other node via BIRD, over %d blocks: p50 %v p99 %v (target p99 <= 1s)", len(lat), pct(lat, .5).Round(time.Millisecond), pct(lat, .99).Round(time.Millisecond))
	b.ReportMetric(float64(pct(lat, .99).Milliseconds()), "p99-ms")
}

// echoUntil pings dst from the namespace every 5 ms until it answers.
func echoUntil(netns string, dst netip.Addr, limit time.Duration) error {
	_, err := connectivity.EchoUntil("/var/run/netns/"+netns, dst, "", 5*time.Millisecond, limit)
	return err
}

// BenchmarkLabUp: the time for lab up with 3 nodes x 10 pods.
func BenchmarkLabUp(b *testing.B) {
	kerneltest.RequireRoot(b)
	bins := buildBins(b)
	_, d, _ := labUp(b, bins, lab.Options{Nodes: 3, PodsPerNode: 10, Family: "dual", Routing: "direct"})
	b.Logf("lab up, 3 nodes x 10 pods, dual-stack, direct: %v", d.Round(time.Millisecond))
	b.ReportMetric(d.Seconds(), "lab-up-s")
}
