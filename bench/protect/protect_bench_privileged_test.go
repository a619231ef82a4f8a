// Package protect benchmarks the cost of duet's protections (root only):
// ADD latency with protections on against off, measured in the same run;
// and single-flow throughput through a protected pod with 1, 100 and
// 1,000 pods on the host, to show the per-packet cost does not grow with
// pods (set lookups, not per-pod rules). Figures are printed, not asserted.
package protect

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

type env struct {
	b      *testing.B
	bins   string
	host   ns.NetNS
	cni    *libcni.CNIConfig
	prefix string
}

// setup builds the plugin and a private "host" namespace the plugin runs
// in, so the benchmark's nftables tables and routes never touch the
// machine's own.
func setup(b *testing.B) *env {
	kerneltest.RequireRoot(b)
	dir := b.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/duetnet/duet/cmd/duet").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	hostPath := kerneltest.NetNS(b)
	kerneltest.Run(b, "ip", "-n", kerneltest.NetNSName(hostPath), "link", "set", "lo", "up")
	h, err := ns.GetNS(hostPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return &env{b: b, bins: dir, host: h, cni: libcni.NewCNIConfigWithCacheDir([]string{dir}, filepath.Join(dir, "cache"), nil), prefix: kerneltest.Name("dpb")}
}

func (e *env) list(name string, protections bool) *libcni.NetworkConfigList {
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"duet","protections":%v,"nodeName":"bench",
		"datastore":{"path":%q},"pools":[{"cidr":"fd00:be7::/48"},{"cidr":"10.243.0.0/16"}]}]}`, name, protections, filepath.Join(e.bins, name+".db"))
	l, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		e.b.Fatal(err)
	}
	return l
}

// pod makes a namespace and ADDs it, returning the ADD's duration.
func (e *env) pod(list *libcni.NetworkConfigList, i int) (string, *current.Result, time.Duration) {
	name := fmt.Sprintf("%s-%s-%d", e.prefix, list.Name, i)
	kerneltest.Run(e.b, "ip", "netns", "add", name)
	e.b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	var res *current.Result
	var d time.Duration
	err := e.host.Do(func(ns.NetNS) error {
		start := time.Now()
		r, err := e.cni.AddNetworkList(context.Background(), list, &libcni.RuntimeConf{ContainerID: name, NetNS: "/var/run/netns/" + name, IfName: "eth0"})
		d = time.Since(start)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		e.b.Fatalf("ADD %s: %v", name, err)
	}
	return name, res, d
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkAddProtections: 100 ADDs with protections on and 100 off,
// alternating so neither gets a warmer machine.
func BenchmarkAddProtections(b *testing.B) {
	e := setup(b)
	on, off := e.list("on", true), e.list("off", false)
	var dOn, dOff []time.Duration
	for i := 0; i < 100; i++ {
		_, _, d := e.pod(on, i)
		dOn = append(dOn, d)
		_, _, d = e.pod(off, i)
		dOff = append(dOff, d)
	}
	b.Logf("ADD latency over 100 pods each: protections on p50 %v p99 %v; off p50 %v p99 %v; on/off p50 %+.1f%% (target <= +10%%)",
		pct(dOn, .5).Round(time.Microsecond), pct(dOn, .99).Round(time.Microsecond), pct(dOff, .5).Round(time.Microsecond), pct(dOff, .99).Round(time.Microsecond),
		100*(float64(pct(dOn, .5))/float64(pct(dOff, .5))-1))
	b.ReportMetric(float64(pct(dOn, .5).Microseconds())/1000, "on-p50-ms")
	b.ReportMetric(float64(pct(dOff, .5).Microseconds())/1000, "off-p50-ms")
}

// BenchmarkThroughputVsPods: one TCP stream between two protected pods on
// the host, with 1, 100 and 1,000 pods present (and protected).
func BenchmarkThroughputVsPods(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatal("iperf3 is missing: apt-get install iperf3 (hack/deps.sh does)")
	}
	e := setup(b)
	list := e.list("tp", true)
	srv, srvRes, _ := e.pod(list, 0)
	cli, _, _ := e.pod(list, 1)
	n := 2
	for _, want := range []int{2, 100, 1000} {
		for ; n < want; n++ {
			e.pod(list, n)
		}
		var best float64
		for _, ip := range srvRes.IPs {
			if ip.Address.IP.To4() != nil {
				continue // one family is enough for a per-packet cost; IPv6 it is
			}
			for r := 0; r < 2; r++ {
				best = max(best, kerneltest.Iperf3(b, cli, srv, ip.Address.IP.String(), 5201, 3))
			}
		}
		b.Logf("single TCP flow between two protected pods with %4d pods on the host: %.2f Gbit/s (best of 2)", want, best)
		b.ReportMetric(best, fmt.Sprintf("gbps-%dpods", want))
	}
}
