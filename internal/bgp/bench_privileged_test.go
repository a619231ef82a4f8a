package bgp_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/bgp"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/routing"
)

// figures are what BenchmarkLearn1000 measures, passed from the child in
// namespace A to the parent as JSON.
type figures struct {
	Routes      int
	Established time.Duration // Start until the session is up
	Learn       time.Duration // session up until Learned() has every route
	Install     time.Duration // one routing.Reconcile of them all into the kernel
	LearnedCall time.Duration // one Learned() call with every route in the RIB
	HeapBefore  uint64        // HeapInuse after GC, before Start
	HeapAfter   uint64        // HeapInuse after GC, with every route learned
	RSS         uint64        // the process's VmRSS then
}

// BenchmarkLearn1000 answers the two numbers: how long until
// 1,000 IPv6 and 1,000 IPv4 blocks a peer (BIRD) advertises are learned
// and installed in the kernel (target: 1 s), and how much memory duetd
// holds with them. It reports and never asserts: the figures depend on the
// machine.
func BenchmarkLearn1000(b *testing.B) {
	l, child := inLab(b, "-test.run=^$", "-test.bench=^BenchmarkLearn1000$", "-test.benchtime=1x")
	if !child {
		raw, err := os.ReadFile(filepath.Join(l.Dir, "figures.json"))
		if err != nil {
			b.Fatalf("the child wrote no figures: %v", err)
		}
		var f figures
		if err := json.Unmarshal(raw, &f); err != nil {
			b.Fatal(err)
		}
		report(b, f)
		return
	}
	const n = 1000
	static := append(blocks("fd00:1000::/122", n), blocks("10.128.0.0/26", n)...)
	startBIRD(b, l, birdConf(l.Dir, static))
	s := bgp.New(bgp.Config{
		ASN:             65001,
		RouterID:        a4,
		Peers:           []bgp.Peer{{Addr: b6, ASN: 65002, HoldTime: 9 * time.Second, Name: "bird"}},
		GracefulRestart: true,
	}, nil)
	if err := s.SetNextHops([]netip.Addr{a6, a4}); err != nil {
		b.Fatal(err)
	}
	if err := s.Advertise(append(blocks("fd00:10::/122", 1), blocks("10.244.0.0/26", 1)...)); err != nil {
		b.Fatal(err)
	}
	k, err := kernel.HostNS() // this process runs in namespace A
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()

	var f figures
	f.HeapBefore = heapInuse()
	b.ResetTimer()
	t0 := time.Now()
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	for peer(s, b6).State != "established" {
		if time.Since(t0) > time.Minute {
			b.Fatalf("no session: %+v", s.Peers())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t1 := time.Now()
	var learned []bgp.Route
	for len(learned) < len(static) {
		select {
		case <-s.Changed(): // what duetd's reconcile loop waits on
		case <-time.After(time.Minute):
			b.Fatalf("learned %d of %d routes", len(learned), len(static))
		}
		learned = s.Learned()
	}
	t2 := time.Now()
	want := make([]routing.Route, 0, len(learned))
	for _, r := range learned {
		want = append(want, routing.Route{Dst: r.Dst, Via: r.NextHop, Node: "bird"})
	}
	if _, err := routing.Reconcile(k, want); err != nil {
		b.Fatal(err)
	}
	t3 := time.Now()
	b.StopTimer()

	if have, err := k.NodeRoutes(); err != nil || len(have) != len(static) {
		b.Fatalf("kernel has %d duet routes (%v), want %d", len(have), err, len(static))
	}
	c0 := time.Now()
	s.Learned()
	f.LearnedCall = time.Since(c0)
	f.Routes, f.Established, f.Learn, f.Install = len(learned), t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	f.HeapAfter, f.RSS = heapInuse(), rss()
	runtime.KeepAlive(learned)
	report(b, f)
	raw, _ := json.Marshal(f)
	if err := os.WriteFile(filepath.Join(l.Dir, "figures.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
}

func report(b *testing.B, f figures) {
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	b.Logf("%d routes (IPv6+IPv4): session up %v after Start; all learned %v later; installed in the kernel %v later (learned+installed %v); Learned() call %v",
		f.Routes, f.Established, f.Learn, f.Install, f.Learn+f.Install, f.LearnedCall)
	b.Logf("Go heap in use: %.1f MiB before Start, %.1f MiB with the routes learned (+%.1f MiB); RSS %.1f MiB",
		mib(f.HeapBefore), mib(f.HeapAfter), mib(f.HeapAfter)-mib(f.HeapBefore), mib(f.RSS))
	b.ReportMetric(float64((f.Learn + f.Install).Nanoseconds()), "ns/op") // session up to routes in the kernel
	b.ReportMetric(f.Learn.Seconds(), "s-learn")
	b.ReportMetric(f.Install.Seconds(), "s-install")
	b.ReportMetric(f.Established.Seconds(), "s-session-up")
	b.ReportMetric(mib(f.HeapAfter), "MiB-heap-inuse")
	b.ReportMetric(mib(f.HeapAfter)-mib(f.HeapBefore), "MiB-heap-for-routes")
	b.ReportMetric(mib(f.RSS), "MiB-rss")
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// rss reads VmRSS from /proc/self/status, in bytes.
func rss() uint64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
