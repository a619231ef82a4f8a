// Package docker compares duet's Docker driver with Docker's own bridge
// driver on the machine's Docker Engine, in one run, as root (issue 14):
//
//   - the time of `docker run --rm --network N busybox true` on a
//     dual-stack network of each, alternating, N rounds (DUET_BENCH_RUNS,
//     default 20), p50 and p99;
//   - the first IPv6 packet: the same run doing one `ping -W 1` of the
//     host's IPv6 address (the bridge's gateway; duet's host address,
//     through its gateway fe80::1), as the container's first command: how many
//     of those first echoes are answered, the first echo's round trip as
//     ping printed it (p50: an address still in DAD, or a neighbour to
//     resolve, shows here), and the whole run's time. Docker's bridge adds the container's address without DAD
//     (Docker 28; check the figure on older engines), duet always does.
//
// duetd runs in a namespace of its own (a Docker host's network, as in the
// lab); the bridge driver in the machine's. Figures are printed, never
// asserted:
//
//	go test -run XXX -bench Docker -benchtime 1x -count 1 ./bench/docker/
package docker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/docker"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

type series []time.Duration

func (s series) pct(p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(series(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[min(len(c)-1, len(c)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

type subject struct {
	name, network, gw6 string
	ping               []string
	run, first, rtt    series
	answered           int
}

func BenchmarkDockerRun(b *testing.B) {
	kerneltest.RequireRoot(b)
	if err := exec.Command("docker", "info").Run(); err != nil {
		b.Skipf("no Docker Engine: %v", err)
	}
	runs := 20
	if v, err := strconv.Atoi(os.Getenv("DUET_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "duetd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/duetd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	if err := docker.EnsureImage(docker.BusyboxImage); err != nil {
		b.Fatal(err)
	}
	hostNS := kerneltest.NetNS(b)
	kerneltest.Run(b, "ip", "-n", kerneltest.NetNSName(hostNS), "link", "set", "lo", "up")
	// The duet host's own address, one hop from its containers as the
	// bridge's gateway is from its: both first pings go to a global
	// address, from the container's global address.
	kerneltest.Run(b, "ip", "-n", kerneltest.NetNSName(hostNS), "addr", "add", "fd00:d0e7:be::1/128", "dev", "lo")
	name := "duet-bench-" + strings.TrimPrefix(kerneltest.NetNSName(hostNS), "duet-t-")
	duetd := exec.Command("nsenter", "--net="+hostNS, bin, "--docker", "--docker-name", name, "--node-name", "bench",
		"--address", "fd00:d0e7:be::1,10.252.1.1", "--datastore-path", filepath.Join(dir, "duet.db"), "--socket", filepath.Join(dir, "d.sock"), "--http", "")
	if err := duetd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = duetd.Process.Signal(os.Interrupt); _ = duetd.Wait() })
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(docker.SocketPath(name)); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	dk := func(args ...string) (string, error) {
		out, err := exec.Command("docker", args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	mk := func(args ...string) {
		if out, err := dk(append([]string{"network", "create"}, args...)...); err != nil {
			b.Fatalf("docker network create %v: %v %s", args, err, out)
		}
		b.Cleanup(func() { _, _ = dk("network", "rm", args[len(args)-1]) })
	}
	mk("-d", name, "--ipam-driver", name, "--ipv6", name)
	mk("--ipv6", "--subnet", "fd00:d0e7:bb::/64", "--subnet", "10.252.0.0/24", name+"-br")
	subjects := []*subject{
		{name: "duet", network: name, ping: []string{"ping", "-c", "1", "-W", "1", "fd00:d0e7:be::1"}},
		{name: "bridge", network: name + "-br", ping: []string{"ping", "-c", "1", "-W", "1", "fd00:d0e7:bb::1"}},
	}
	var lastOut string
	timed := func(s *subject, cmd ...string) (time.Duration, error) {
		start := time.Now()
		out, err := dk(append([]string{"run", "--rm", "--network", s.network, docker.BusyboxImage}, cmd...)...)
		lastOut = out
		return time.Since(start), err
	}
	for _, s := range subjects { // warm both: image layers, plugin activation
		_, _ = timed(s, "true")
	}
	b.ResetTimer()
	for r := 0; r < runs; r++ {
		order := subjects
		if r%2 == 1 {
			order = []*subject{subjects[1], subjects[0]}
		}
		for _, s := range order {
			d, err := timed(s, "true")
			if err != nil {
				b.Fatalf("%s: docker run: %v", s.name, err)
			}
			s.run = append(s.run, d)
			d, err = timed(s, s.ping...)
			if err == nil {
				s.answered++
				if rtt, ok := echoTime(lastOut); ok {
					s.rtt = append(s.rtt, rtt)
				}
			}
			s.first = append(s.first, d)
		}
	}
	b.StopTimer()
	fmt.Printf("\ndocker run --rm busybox, dual-stack network, %d runs each, alternating (Docker %s)\n", runs, engineVersion())
	fmt.Printf("%-8s %10s %10s %22s %20s %16s\n", "driver", "run p50", "run p99", "first ping answered", "first echo RTT p50", "run+ping p50")
	for _, s := range subjects {
		fmt.Printf("%-8s %10s %10s %16d of %-3d %17.3f ms %16s\n", s.name, ms(s.run.pct(50)), ms(s.run.pct(99)), s.answered, runs, float64(s.rtt.pct(50).Microseconds())/1000, ms(s.first.pct(50)))
	}
	d, br := subjects[0], subjects[1]
	fmt.Printf("duet/bridge: run p50 %.2fx, p99 %.2fx\n", ratio(d.run.pct(50), br.run.pct(50)), ratio(d.run.pct(99), br.run.pct(99)))
	b.ReportMetric(float64(d.run.pct(50).Milliseconds()), "duet-run-p50-ms")
	b.ReportMetric(float64(br.run.pct(50).Milliseconds()), "bridge-run-p50-ms")
	b.ReportMetric(float64(d.answered), "duet-first-ping-answered")
	b.ReportMetric(float64(br.answered), "bridge-first-ping-answered")
}

// echoTime is the RTT busybox ping printed for its first echo.
func echoTime(out string) (time.Duration, bool) {
	i := strings.Index(out, "time=")
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(out[i+len("time="):])
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(v * float64(time.Millisecond)), true
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func engineVersion() string {
	out, _ := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").Output()
	return strings.TrimSpace(string(out))
}
