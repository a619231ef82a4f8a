// Package cni benchmarks the duet plugin against the reference bridge +
// host-local plugins with a dual-stack range pair (Debian's
// containernetworking-plugins), in one run (root only): ADD and DEL
// latency, sequential and 16-way parallel, over 200 containers each, and
// the time from ADD's return until the container's first IPv6 ping to its
// gateway succeeds. Figures are printed beside the reference and as
// ratios, never asserted. Run with `make bench`.
package cni

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/connectivity"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

const pods = 200

type plugin struct {
	name string
	conf string
	// gateway of a pod's IPv6 default route, and the zone to ping it in.
	gw   func(*current.Result) (netip.Addr, string)
	list *libcni.NetworkConfigList
}

type figures struct {
	add, del, ping []time.Duration
	firstPing      time.Duration
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func BenchmarkAddDelFirstPing(b *testing.B) {
	kerneltest.RequireRoot(b)
	dir := b.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/duetnet/duet/cmd/duet").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// A private host namespace for both plugins: their bridges, routes and
	// nftables stay out of the machine's own.
	hostPath := kerneltest.NetNS(b)
	kerneltest.Run(b, "ip", "-n", kerneltest.NetNSName(hostPath), "link", "set", "lo", "up")
	host, err := ns.GetNS(hostPath)
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	cni := libcni.NewCNIConfigWithCacheDir([]string{dir, "/usr/lib/cni"}, filepath.Join(dir, "cache"), nil)
	br := kerneltest.Name("bref")
	plugins := []*plugin{
		{name: "duet", conf: fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench-duet","plugins":[{"type":"duet","nodeName":"bench","datastore":{"path":%q},
			"pools":[{"cidr":"fd00:be::/48"},{"cidr":"10.251.0.0/16"}]}]}`, filepath.Join(dir, "duet.db")),
			gw: func(*current.Result) (netip.Addr, string) { return netip.MustParseAddr("fe80::1"), "eth0" }},
		{name: "bridge+host-local", conf: fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench-ref","plugins":[{"type":"bridge","bridge":%q,"isGateway":true,
			"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"fd00:bf::/64"}],[{"subnet":"10.252.0.0/16"}]],"routes":[{"dst":"::/0"},{"dst":"0.0.0.0/0"}]}}]}`, br, filepath.Join(dir, "hl")),
			gw: func(r *current.Result) (netip.Addr, string) {
				for _, ip := range r.IPs {
					if ip.Gateway != nil && ip.Gateway.To4() == nil {
						a, _ := netip.AddrFromSlice(ip.Gateway)
						return a, ""
					}
				}
				return netip.Addr{}, ""
			}},
	}
	for _, p := range plugins {
		if p.list, err = libcni.ConfListFromBytes([]byte(p.conf)); err != nil {
			b.Fatal(err)
		}
	}
	results := map[string]map[string]*figures{}
	for _, mode := range []string{"sequential", "parallel16"} {
		for _, p := range plugins { // both plugins in each mode, in the same run
			f := run(b, cni, host, p, mode)
			if results[p.name] == nil {
				results[p.name] = map[string]*figures{}
			}
			results[p.name][mode] = f
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d containers per plugin and mode, dual-stack; host %s\n", pods, hostPath)
	fmt.Fprintf(&out, "%-18s %-11s %9s %9s %9s %9s %14s %14s %16s\n", "plugin", "mode", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "1st ping6 p50", "1st ping6 p99", "fresh-network")
	for _, p := range plugins {
		for _, mode := range []string{"sequential", "parallel16"} {
			f := results[p.name][mode]
			fmt.Fprintf(&out, "%-18s %-11s %9s %9s %9s %9s %14s %14s %16s\n", p.name, mode, ms(pct(f.add, .5)), ms(pct(f.add, .99)), ms(pct(f.del, .5)), ms(pct(f.del, .99)),
				ms(pct(f.ping, .5)), ms(pct(f.ping, .99)), ms(f.firstPing))
		}
	}
	for _, mode := range []string{"sequential", "parallel16"} {
		d, r := results["duet"][mode], results["bridge+host-local"][mode]
		fmt.Fprintf(&out, "duet/reference %-11s ADD p50 %.2fx  DEL p50 %.2fx  first IPv6 ping p50 %.3fx\n", mode,
			float64(pct(d.add, .5))/float64(pct(r.add, .5)), float64(pct(d.del, .5))/float64(pct(r.del, .5)), float64(pct(d.ping, .5))/float64(max(pct(r.ping, .5), 1)))
		b.ReportMetric(float64(pct(d.add, .5).Microseconds())/1000, "duet-"+mode+"-add-p50-ms")
		b.ReportMetric(float64(pct(r.add, .5).Microseconds())/1000, "ref-"+mode+"-add-p50-ms")
	}
	b.Log(out.String())
}

// run ADDs pods containers (timing each), starts each one's first-ping
// probe the moment its ADD returns, then DELs them all (timing each).
func run(b *testing.B, cni *libcni.CNIConfig, host ns.NetNS, p *plugin, mode string) *figures {
	f := &figures{}
	var mu sync.Mutex
	var pings sync.WaitGroup
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", kerneltest.Name("bc"), i)
		kerneltest.Run(b, "ip", "netns", "add", names[i])
		name := names[i]
		b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	}
	rt := func(name string) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{ContainerID: name, NetNS: "/var/run/netns/" + name, IfName: "eth0"}
	}
	parallel := 1
	if mode == "parallel16" {
		parallel = 16
	}
	each := func(op func(i int)) {
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for i := range names {
			sem <- struct{}{}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-sem }(); op(i) }()
		}
		wg.Wait()
	}
	each(func(i int) {
		var res *current.Result
		var d time.Duration
		err := host.Do(func(ns.NetNS) error {
			start := time.Now()
			r, err := cni.AddNetworkList(context.Background(), p.list, rt(names[i]))
			d = time.Since(start)
			if err == nil {
				res, err = current.NewResultFromResult(r)
			}
			return err
		})
		if err != nil {
			b.Errorf("%s ADD %s: %v", p.name, names[i], err)
			return
		}
		gw, zone := p.gw(res)
		pings.Add(1)
		go func() { // from ADD's return
			defer pings.Done()
			t, err := connectivity.EchoUntil("/var/run/netns/"+names[i], gw, zone, 5*time.Millisecond, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				b.Errorf("%s %s: first IPv6 ping to %s: %v", p.name, names[i], gw, err)
				return
			}
			if i == 0 {
				f.firstPing = t // the network's first pod: a new bridge for the reference
			}
			f.ping = append(f.ping, t)
		}()
		mu.Lock()
		f.add = append(f.add, d)
		mu.Unlock()
	})
	pings.Wait()
	each(func(i int) {
		err := host.Do(func(ns.NetNS) error {
			start := time.Now()
			err := cni.DelNetworkList(context.Background(), p.list, rt(names[i]))
			mu.Lock()
			f.del = append(f.del, time.Since(start))
			mu.Unlock()
			return err
		})
		if err != nil {
			b.Errorf("%s DEL %s: %v", p.name, names[i], err)
		}
	})
	for _, n := range names {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
	return f
}
