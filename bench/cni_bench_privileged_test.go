// Package bench compares the duet CNI plugin with the reference bridge +
// host-local plugins (Debian's containernetworking-plugins, with a
// dual-stack range pair) in one run, as root (issue 2):
//
//   - ADD and DEL latency, p50 and p99, over N pods (200 by default; set
//     DUET_BENCH_PODS to change it), run one after another (the plugins
//     taking turns pod by pod) and 16 at once (in halves: duet, reference,
//     reference, duet), so both see the same machine;
//   - for every pod of the sequential run, the time from ADD's return until
//     the pod's first ICMPv6 echo to its IPv6 gateway is answered: duet's
//     fe80::1 on eth0, the reference's bridge address fd00:bf::1; the echo
//     goes from the pod's own IPv6 address, every 10 ms, for up to 5 s;
//   - the same for the first pod of a freshly made network (duet's first
//     pod; the reference's first pod on a new bridge, whose gateway address
//     is still in duplicate address detection), five times per plugin.
//
// Each network lives in a private "host" namespace, so neither plugin
// touches the machine's own bridges, routes, nftables or sysctls, and
// deleting the namespace removes all of it. Figures are printed (a table,
// duet/reference ratios, and b.ReportMetric), never asserted. Run with
// `make bench`, or:
//
//	go test -run XXX -bench CNI -benchtime 1x -count 1 -timeout 30m ./bench/
package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

const (
	refPluginDir = "/usr/lib/cni"
	workers      = 16                    // the parallel runs' concurrency
	pingEvery    = 10 * time.Millisecond // echo request cadence
	pingLimit    = 5 * time.Second       // give up on a pod after this
	freshTrials  = 5                     // fresh networks per plugin
	podsEnv      = "DUET_BENCH_PODS"
)

// phase is one plugin's figures for one mode.
type phase struct {
	plugin   string
	mode     string
	n        int
	add, del dist
	addAll   time.Duration // sequential: sum of the ADDs; parallel: wall time
	delAll   time.Duration
	ping     dist // sequential only; the first pod (fresh network) left out
	atOnce   int  // pods whose first echo request was answered
	pinged   int  // pods with a ping measured
	pingFail int  // pods with no reply within pingLimit
}

// fresh is one plugin's first pods on fresh networks.
type fresh struct {
	add, ping dist
	tries     []int
	fail      int
}

func BenchmarkCNIAddDelFirstPing(b *testing.B) {
	kerneltest.RequireRoot(b)
	n := 200
	if s := os.Getenv(podsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 {
			b.Fatalf("%s=%q: want a number of pods, at least 2", podsEnv, s)
		}
		n = v
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(refPluginDir, p)); err != nil {
			b.Fatalf("reference plugin %s missing (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
	bins := b.TempDir()
	buildShipped(b, bins, "github.com/duetnet/duet/cmd/duet")
	duet := &plugin{name: "duet", conf: func(state string) string {
		return fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench-duet","plugins":[{"type":"duet","nodeName":"bench",
			"datastore":{"path":%q},"pools":[{"cidr":"fd00:be::/48"},{"cidr":"10.251.0.0/16"}]}]}`, filepath.Join(state, "duet.db"))
	}}
	ref := &plugin{name: "bridge+host-local", conf: func(state string) string {
		return fmt.Sprintf(`{"cniVersion":"1.0.0","name":"bench-ref","plugins":[{"type":"bridge","bridge":%q,"isGateway":true,
			"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"fd00:bf::/64"}],[{"subnet":"10.252.0.0/16"}]],
			"routes":[{"dst":"::/0"},{"dst":"0.0.0.0/0"}]}}]}`, kerneltest.Name("dbr"), filepath.Join(state, "hl"))
	}}
	prefix := kerneltest.Name("dbn")
	b.Logf("%d pods per run, %d-way parallel; pod namespaces %s-*; %d CPUs", n, workers, prefix, numCPU())

	// Fresh networks first: they also bring both plugins' binaries into
	// the page cache before anything is timed in bulk. The order
	// alternates.
	freshOf := map[*plugin]*fresh{duet: {}, ref: {}}
	for k := range freshTrials - 1 {
		order := []*plugin{duet, ref}
		if k%2 == 1 {
			order = []*plugin{ref, duet}
		}
		for _, p := range order {
			freshTrial(b, bins, p, fmt.Sprintf("%s-f%d%s", prefix, k, p.name[:1]), freshOf[p])
		}
	}

	// Then the bulk runs, interleaved so that both plugins see the same
	// machine (other work on it comes and goes): sequentially pod by pod,
	// alternating which plugin goes first; in parallel in two halves per
	// plugin, in the order duet, ref, ref, duet. Both sequential runs
	// start on fresh networks (their first pods are the fifth fresh
	// samples); the parallel runs reuse them, as pods on a busy node do.
	plugins := []*plugin{duet, ref}
	nets := map[*plugin]*network{}
	seq := map[*plugin]*phase{}
	par := map[*plugin]*phase{}
	for _, p := range plugins {
		nets[p] = newNetwork(b, bins, p)
		seq[p] = &phase{plugin: p.name, mode: "sequential", n: n}
		par[p] = &phase{plugin: p.name, mode: fmt.Sprintf("%d-way parallel", workers), n: n}
	}
	pods := map[*plugin]*pods{}
	for _, p := range plugins {
		pods[p] = makePods(b, fmt.Sprintf("%s-s%s", prefix, p.name[:1]), n)
	}
	runSequential(b, plugins, nets, pods, seq, freshOf)
	checkEmpty(b, plugins, nets, "sequential")
	for _, p := range plugins {
		pods[p].remove()
		pods[p] = makePods(b, fmt.Sprintf("%s-p%s", prefix, p.name[:1]), n)
	}
	runParallel(b, []*plugin{duet, ref, ref, duet}, nets, pods, par)
	checkEmpty(b, plugins, nets, "parallel")
	for _, p := range plugins {
		pods[p].remove()
	}
	phases := []*phase{seq[duet], seq[ref], par[duet], par[ref]}

	report(b, n, phases, freshOf[duet], freshOf[ref])
}

// freshTrial makes a new network, ADDs one pod, pings its gateway, DELs
// it and removes the network.
func freshTrial(b *testing.B, bins string, p *plugin, name string, f *fresh) {
	nw := newNetwork(b, bins, p)
	pods := makePods(b, name, 1)
	pod := pods.names[0]
	pr, err := openProbe(netnsPath(pod))
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	res, took, done, err := nw.add(pod)
	if err != nil {
		b.Fatal(err)
	}
	src, gw, err := gateway6(res)
	if err != nil {
		b.Fatalf("%s: %v", p.name, err)
	}
	r, perr := pr.firstReply(podIf, src, gw, done, pingEvery, pingLimit)
	f.add = append(f.add, took)
	if perr != nil {
		b.Logf("%s fresh network: %v", p.name, perr)
		f.fail++
	} else {
		f.ping = append(f.ping, r.after)
		f.tries = append(f.tries, r.tries)
	}
	if _, err := nw.del(pod); err != nil {
		b.Fatal(err)
	}
	pods.remove()
	kerneltest.Run(b, "ip", "netns", "del", nw.hostName)
}

// checkEmpty says when a network's host namespace still has veths after
// every pod's DEL.
func checkEmpty(b *testing.B, plugins []*plugin, nets map[*plugin]*network, mode string) {
	for _, p := range plugins {
		if left := nets[p].leftovers(); len(left) > 0 {
			b.Errorf("%s, %s run: veths left in the host namespace after every DEL: %v", p.name, mode, left)
		}
	}
}

// runSequential ADDs the pods one at a time, pinging each pod's gateway
// right after its ADD, then DELs them one at a time; pod i of each plugin
// follows pod i of the other, the two taking turns at going first.
func runSequential(b *testing.B, plugins []*plugin, nets map[*plugin]*network, pods map[*plugin]*pods, ph map[*plugin]*phase, fr map[*plugin]*fresh) {
	turn := func(i int) []*plugin {
		if i%2 == 0 {
			return plugins
		}
		return []*plugin{plugins[1], plugins[0]}
	}
	for i := range pods[plugins[0]].names {
		for _, p := range turn(i) {
			addAndPing(b, nets[p], pods[p].names[i], i == 0, ph[p], fr[p])
		}
	}
	for i := range pods[plugins[0]].names {
		for _, p := range turn(i) {
			took, err := nets[p].del(pods[p].names[i])
			if err != nil {
				b.Fatal(err)
			}
			ph[p].del = append(ph[p].del, took)
			ph[p].delAll += took
		}
	}
}

// addAndPing ADDs one pod and measures its first ping; the first pod of a
// fresh network counts in f rather than in ph's pings.
func addAndPing(b *testing.B, nw *network, pod string, first bool, ph *phase, f *fresh) {
	pr, err := openProbe(netnsPath(pod))
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	res, took, done, err := nw.add(pod)
	if err != nil {
		b.Fatal(err)
	}
	ph.add = append(ph.add, took)
	ph.addAll += took
	src, gw, err := gateway6(res)
	if err != nil {
		b.Fatalf("%s: %v", nw.plugin.name, err)
	}
	r, perr := pr.firstReply(podIf, src, gw, done, pingEvery, pingLimit)
	switch {
	case first:
		f.add = append(f.add, took)
		if perr != nil {
			b.Logf("%s fresh network: %v", nw.plugin.name, perr)
			f.fail++
		} else {
			f.ping = append(f.ping, r.after)
			f.tries = append(f.tries, r.tries)
		}
	case perr != nil:
		if ph.pingFail < 3 {
			b.Logf("%s %s: %v", nw.plugin.name, pod, perr)
		}
		ph.pingFail++
		ph.pinged++
	default:
		ph.ping = append(ph.ping, r.after)
		ph.pinged++
		if r.tries == 1 {
			ph.atOnce++
		}
	}
}

// runParallel ADDs every plugin's pods on `workers` goroutines, in as many
// consecutive chunks as order names the plugin (duet, ref, ref, duet: two
// halves each), then DELs them in the same order and chunks. A chunk's
// wall time adds to its phase's.
func runParallel(b *testing.B, order []*plugin, nets map[*plugin]*network, pods map[*plugin]*pods, ph map[*plugin]*phase) {
	chunks := map[*plugin]int{}
	for _, p := range order {
		chunks[p]++
		ph[p].add = make(dist, len(pods[p].names))
		ph[p].del = make(dist, len(pods[p].names))
	}
	run := func(del bool) {
		next := map[*plugin]int{}
		for _, p := range order {
			names := pods[p].names
			k := next[p]
			next[p]++
			lo, hi := k*len(names)/chunks[p], (k+1)*len(names)/chunks[p]
			out := ph[p].add
			if del {
				out = ph[p].del
			}
			start := time.Now()
			err := parallel(hi-lo, workers, func(i int) error {
				var took time.Duration
				var err error
				if del {
					took, err = nets[p].del(names[lo+i])
				} else {
					_, took, _, err = nets[p].add(names[lo+i])
				}
				out[lo+i] = took // each index has one writer
				return err
			})
			if del {
				ph[p].delAll += time.Since(start)
			} else {
				ph[p].addAll += time.Since(start)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	run(false)
	run(true)
}

// report prints the table and the ratios, and reports the metrics.
func report(b *testing.B, n int, phases []*phase, fd, fr *fresh) {
	var out strings.Builder
	fmt.Fprintf(&out, "\nCNI ADD/DEL latency and first IPv6 packet, duet vs reference bridge+host-local (dual-stack), N=%d pods per run, %d CPUs\n", n, numCPU())
	fmt.Fprintf(&out, "(first ping: from ADD's return until the pod's first ICMPv6 echo to its gateway is answered, sent from the pod's IPv6 address every %v)\n\n", pingEvery)
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "plugin\tmode\tN\tADD p50\tADD p99\tDEL p50\tDEL p99\tall ADDs\tall DELs\t1st ping p50\t1st ping p99\t1st echo answered\t")
	byKey := map[string]*phase{}
	for _, ph := range phases {
		byKey[ph.plugin+"/"+ph.mode] = ph
	}
	for _, mode := range []string{"sequential", fmt.Sprintf("%d-way parallel", workers)} {
		for _, name := range []string{"duet", "bridge+host-local"} {
			ph := byKey[name+"/"+mode]
			p50, p99, once := "-", "-", "-"
			if ph.pinged > 0 {
				p50, p99 = ms(ph.ping.pct(50)), ms(ph.ping.pct(99))
				once = fmt.Sprintf("%d/%d", ph.atOnce, ph.pinged)
				if ph.pingFail > 0 {
					p99 = fmt.Sprintf("%s (%d none in %v)", p99, ph.pingFail, pingLimit)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, mode, ph.n,
				ms(ph.add.pct(50)), ms(ph.add.pct(99)), ms(ph.del.pct(50)), ms(ph.del.pct(99)),
				ms(ph.addAll), ms(ph.delAll), p50, p99, once)
		}
	}
	tw.Flush()
	fmt.Fprintf(&out, "\nfirst pod on a fresh network (duet: a new datastore and host; reference: a new bridge), %d networks each:\n\n", freshTrials)
	tw = tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "plugin\tADD median\t1st ping median\t1st ping max\techo requests sent\teach 1st ping (ms)\t")
	for _, x := range []struct {
		name string
		f    *fresh
	}{{"duet", fd}, {"bridge+host-local", fr}} {
		var each []string
		for _, d := range x.f.ping {
			each = append(each, ms(d))
		}
		for range x.f.fail {
			each = append(each, fmt.Sprintf(">%v", pingLimit))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t\n", x.name, ms(x.f.add.pct(50)), ms(x.f.ping.pct(50)), ms(x.f.ping.max()), x.f.tries, strings.Join(each, " "))
	}
	tw.Flush()

	fmt.Fprintf(&out, "\nduet/reference (below 1 means duet is faster):\n")
	for _, mode := range []string{"sequential", fmt.Sprintf("%d-way parallel", workers)} {
		d, r := byKey["duet/"+mode], byKey["bridge+host-local/"+mode]
		fmt.Fprintf(&out, "  %-16s ADD p50 %s  ADD p99 %s  DEL p50 %s  DEL p99 %s  all ADDs %s  all DELs %s\n", mode+":",
			ratio(d.add.pct(50), r.add.pct(50)), ratio(d.add.pct(99), r.add.pct(99)),
			ratio(d.del.pct(50), r.del.pct(50)), ratio(d.del.pct(99), r.del.pct(99)),
			ratio(d.addAll, r.addAll), ratio(d.delAll, r.delAll))
	}
	d, r := byKey["duet/sequential"], byKey["bridge+host-local/sequential"]
	fmt.Fprintf(&out, "  %-16s p50 %s  p99 %s  fresh network (median) %s\n", "first IPv6 ping:",
		ratio(d.ping.pct(50), r.ping.pct(50)), ratio(d.ping.pct(99), r.ping.pct(99)), ratio(fd.ping.pct(50), fr.ping.pct(50)))
	fmt.Fprintf(&out, "\nper ADD, duet also: stores the allocation in bbolt, installs its nftables RA-guard/anti-spoofing set elements, sets\n"+
		"accept_dad/accept_ra/autoconf on both veth ends, adds permanent gateway neighbours in the pod and /128 + /32 host routes.\n")
	fmt.Print(out.String())

	for _, ph := range phases {
		key := "duet"
		if ph.plugin != "duet" {
			key = "ref"
		}
		key += "-" + map[bool]string{true: "seq", false: "par"}[ph.mode == "sequential"]
		b.ReportMetric(msf(ph.add.pct(50)), key+"-add-p50-ms")
		b.ReportMetric(msf(ph.add.pct(99)), key+"-add-p99-ms")
		b.ReportMetric(msf(ph.del.pct(50)), key+"-del-p50-ms")
		b.ReportMetric(msf(ph.del.pct(99)), key+"-del-p99-ms")
		if ph.pinged > 0 {
			b.ReportMetric(msf(ph.ping.pct(50)), key+"-ping-p50-ms")
			b.ReportMetric(msf(ph.ping.pct(99)), key+"-ping-p99-ms")
		}
	}
	b.ReportMetric(msf(fd.ping.pct(50)), "duet-fresh-ping-ms")
	b.ReportMetric(msf(fr.ping.pct(50)), "ref-fresh-ping-ms")
	b.ReportMetric(float64(n), "pods")
	b.ReportMetric(0, "ns/op") // the whole run's time says nothing
}

func numCPU() int { return runtime.NumCPU() }
