// Package scale simulates a large cluster against real duetd agents (root
// only): one real etcd (the lab's), thousands of simulated nodes that
// register, heartbeat, claim blocks and allocate pods as the plugin does,
// pods churning at a steady rate, and the lab's three real duetd agents
// routing every block. It reports, at each size, the agents' CPU and
// memory, how fast a new block is routed (p50/p99), etcd's requests per
// second and database size, so the growth from one size to the next is
// visible. Nothing is asserted about speed.
//
//	make bench-scale                     # 100, 1,000 and 5,000 nodes
//	go test ./bench/scale/ -run TestScale # the 100-node version CI runs
package scale

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netns"

	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/lab"
	"github.com/duetnet/duet/internal/store"
)

var (
	sizes       = flag.String("scale.nodes", "100,1000,5000", "simulated cluster sizes (BenchmarkScale)")
	podsEach    = flag.Int("scale.pods", 30, "pods per simulated node (Kubernetes' envelope: 150,000 pods on 5,000 nodes)")
	churnRate   = flag.Int("scale.churn", 100, "pods created (and as many deleted) per second while measuring")
	window      = flag.Duration("scale.window", 20*time.Second, "how long to measure at each size")
	changes     = flag.Int("scale.changes", 20, "new blocks whose routing time is measured at each size")
	simPool6    = ipam.Pool{CIDR: netip.MustParsePrefix("fd00:5ca1:e000::/40"), BlockSize: 122}
	simPool4    = ipam.Pool{CIDR: netip.MustParsePrefix("10.64.0.0/11"), BlockSize: 26}
	simFamilies = []ipam.Family{ipam.IPv6, ipam.IPv4}
)

// report is one size's figures.
type report struct {
	nodes, pods        int
	populate, converge time.Duration
	cpu                []float64 // per agent, percent of one core
	rss                []float64 // per agent, MiB
	routeP50, routeP99 time.Duration
	routed             int
	etcdRPS            float64
	dbMiB              float64
	churned            int64
}

func (r report) String() string {
	return fmt.Sprintf("%5d nodes %6d pods: populate %s, all agents routed it in %s; under churn: agent CPU %s %% of a core, RSS %s MiB; a new block routed p50 %s p99 %s (%d samples); etcd %.0f req/s, db %.1f MiB; %d pods churned",
		r.nodes, r.pods, r.populate.Round(time.Millisecond), r.converge.Round(time.Millisecond), floats(r.cpu, "%.1f"), floats(r.rss, "%.0f"),
		r.routeP50.Round(time.Millisecond), r.routeP99.Round(time.Millisecond), r.routed, r.etcdRPS, r.dbMiB, r.churned)
}

func floats(fs []float64, f string) string {
	var out []string
	for _, x := range fs {
		out = append(out, fmt.Sprintf(f, x))
	}
	return strings.Join(out, "/")
}

// TestScale is the CI version: 100 simulated nodes, a short window. It
// checks that every agent routes every simulated block and every change,
// and logs the figures.
func TestScale(t *testing.T) {
	kerneltest.RequireRoot(t)
	s := upLab(t)
	r := simulate(t, s, 100, 10, 5*time.Second, 5)
	t.Log(r)
}

func BenchmarkScale(b *testing.B) {
	kerneltest.RequireRoot(b)
	var reports []report
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("-scale.nodes %q: %v", *sizes, err)
		}
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			s := upLab(b)
			for range b.N {
				r := simulate(b, s, n, *podsEach, *window, *changes)
				b.ReportMetric(float64(r.routeP50.Milliseconds()), "route-p50-ms")
				b.ReportMetric(float64(r.routeP99.Milliseconds()), "route-p99-ms")
				b.ReportMetric(r.etcdRPS, "etcd-req/s")
				reports = append(reports, r)
			}
		})
	}
	b.Logf("scale, each size against the one before it:\n%s", joinReports(reports))
}

func joinReports(rs []report) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}

func upLab(tb testing.TB) lab.State {
	tb.Helper()
	bins := tb.TempDir()
	if out, err := exec.Command("go", "build", "-o", bins+"/", "github.com/duetnet/duet/cmd/duet", "github.com/duetnet/duet/cmd/duetd").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	datadir := filepath.Join(tb.TempDir(), "lab")
	tb.Cleanup(func() { _ = lab.Down(datadir, &bytes.Buffer{}) })
	var out bytes.Buffer
	s, err := lab.Up(context.Background(), lab.Options{Nodes: 3, PodsPerNode: 1, Family: "dual", Routing: "direct"}, bins, datadir, &out)
	if err != nil {
		tb.Fatalf("lab up: %v\n%s", err, out.String())
	}
	return s
}

// simV4 simulated nodes have an IPv4 address too (.100-.189 of the lab's
// /24); the nodes added while measuring take .210 on.
const simV4 = 90

// simNode is a simulated node: an underlay address on the lab's switch
// (IPv6 for every node; IPv4 only for the first simV4, the /24 being
// small), so the agents route its blocks as a real node's.
type simNode struct {
	name  string
	addrs []netip.Addr
}

func simNodes(n int) []simNode {
	out := make([]simNode, n)
	for i := range out {
		a6 := lab.Underlay6.Addr().As16()
		id := 0x1000 + i
		a6[14], a6[15] = byte(id>>8), byte(id)
		out[i] = simNode{name: fmt.Sprintf("sim%05d", i), addrs: []netip.Addr{netip.AddrFrom16(a6)}}
		if i < simV4 {
			a4 := lab.Underlay4.Addr().As4()
			a4[3] = byte(100 + i)
			out[i].addrs = append(out[i].addrs, netip.AddrFrom4(a4))
		}
	}
	return out
}

func register(tx store.Tx, n simNode, now time.Time) error {
	return cluster.Register(tx, cluster.Node{Name: n.name, Addrs: n.addrs, Routing: "direct", Instance: "sim"}, now)
}

func allocate(tx store.Tx, n simNode, id string) error {
	_, err := ipam.Allocate(tx, ipam.Request{
		Handle: ipam.Handle{Network: "sim", ContainerID: id, IfName: "eth0"},
		Node:   n.name, Families: simFamilies, Pools: []ipam.Pool{simPool6, simPool4},
	})
	return err
}

func simulate(tb testing.TB, s lab.State, nodes, pods int, window time.Duration, samples int) report {
	tb.Helper()
	ctx := context.Background()
	st, err := lab.OpenStore(s, s.Nodes[0].Name)
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	sims := simNodes(nodes)
	r := report{nodes: nodes, pods: nodes * pods}

	// Register every node and give it its first pod, one node after the
	// other: claiming a block reads every claim and conflicts with every
	// other claim, so many nodes claiming at once only retry each other
	// (a bootstrap storm this simulator does not model). Then the rest of
	// the pods, from blocks the nodes hold, 8 nodes at a time.
	start := time.Now()
	parallel(tb, 1, len(sims), func(i int) error {
		err := st.Update(ctx, func(tx store.Tx) error {
			if err := register(tx, sims[i], time.Now()); err != nil {
				return err
			}
			return allocate(tx, sims[i], sims[i].name+"-0")
		})
		if err != nil {
			return fmt.Errorf("registering %s and its first pod: %w", sims[i].name, err)
		}
		return nil
	})
	parallel(tb, 8, len(sims), func(i int) error {
		err := st.Update(ctx, func(tx store.Tx) error {
			for k := 1; k < pods; k++ {
				if err := allocate(tx, sims[i], fmt.Sprintf("%s-%d", sims[i].name, k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s's other pods: %w", sims[i].name, err)
		}
		return nil
	})
	r.populate = time.Since(start)
	want := simBlocks(tb, st)
	waitRouted(tb, s, want)
	r.converge = time.Since(start)

	// Measure under load: heartbeats from every simulated node, pods
	// churning, and now and then a new node whose first block must be
	// routed by every agent.
	metrics0 := etcdMetrics(tb, s)
	cpu0 := agentCPU(tb, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churned atomic.Int64
	wg.Go(func() { heartbeats(ctx, st, sims, stop) })
	wg.Go(func() { churned.Store(churn(ctx, st, sims, stop)) })
	began := time.Now()
	var lat []time.Duration
	for k := range samples {
		// A node with both families: its two new blocks, each routed via
		// the node's address of its family, IPv6 first.
		n := simNodes(nodes + k + 1)[nodes+k]
		a4 := lab.Underlay4.Addr().As4()
		a4[3] = byte(210 + k%40)
		n.name, n.addrs = fmt.Sprintf("new%05d-%d", k, nodes), []netip.Addr{n.addrs[0], netip.AddrFrom4(a4)}
		committed, blocks := newNode(tb, st, n)
		var routed time.Time
		for i, b := range blocks {
			if t := waitRoute(tb, s, b, n.addrs[i]); t.After(routed) {
				routed = t
			}
		}
		lat = append(lat, routed.Sub(committed))
		time.Sleep(window / time.Duration(samples+1))
	}
	if rest := window - time.Since(began); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(began)
	cpu1 := agentCPU(tb, s)
	metrics1 := etcdMetrics(tb, s)
	for i := range cpu0 {
		r.cpu = append(r.cpu, 100*(cpu1[i]-cpu0[i])/elapsed.Seconds())
	}
	r.rss = agentRSS(tb, s)
	r.etcdRPS = (metrics1["requests"] - metrics0["requests"]) / elapsed.Seconds()
	r.dbMiB = metrics1["etcd_mvcc_db_total_size_in_bytes"] / (1 << 20)
	r.churned = churned.Load()
	slices.Sort(lat)
	r.routed = len(lat)
	r.routeP50, r.routeP99 = lat[len(lat)/2], lat[len(lat)*99/100]
	return r
}

// parallel runs f(0..n-1) on k goroutines and fails on the first error.
func parallel(tb testing.TB, k, n int, f func(int) error) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range k {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// simBlocks are the simulated nodes' blocks, each with the node address
// of its family the agents must route it through (none: not routable
// here, an IPv4 block of a node with only an IPv6 address).
func simBlocks(tb testing.TB, st store.Store) map[netip.Prefix]bool {
	tb.Helper()
	want := map[netip.Prefix]bool{}
	err := st.View(context.Background(), func(tx store.Tx) error {
		bs, err := ipam.Blocks(tx)
		for _, b := range bs {
			if strings.HasPrefix(b.Node, "sim") && (b.CIDR.Addr().Is6() || simIndex(b.Node) < simV4) {
				want[b.CIDR] = true
			}
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return want
}

func simIndex(name string) int {
	i, _ := strconv.Atoi(strings.TrimLeft(strings.TrimPrefix(name, "sim"), "0"))
	return i
}

// waitRouted waits until every agent has a route to every block in want.
func waitRouted(tb testing.TB, s lab.State, want map[netip.Prefix]bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for _, n := range s.Nodes {
		for {
			missing := 0
			have := routes(tb, n.NetNS)
			for p := range want {
				if !have[p] {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s still has no route to %d of %d simulated blocks", n.Name, missing, len(want))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// routes are the destinations of duet's routes (proto 201) in a node.
func routes(tb testing.TB, netnsName string) map[netip.Prefix]bool {
	tb.Helper()
	have := map[netip.Prefix]bool{}
	for _, fam := range []string{"-6", "-4"} {
		out, err := exec.Command("ip", "-n", netnsName, fam, "route", "show", "proto", "201").Output()
		if err != nil {
			tb.Fatalf("ip route in %s: %v", netnsName, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 0 {
				if p, err := netip.ParsePrefix(f[0]); err == nil {
					have[p] = true
				}
			}
		}
	}
	return have
}

// newNode registers n and gives it one pod, and returns when that
// committed and the blocks it claimed, IPv6 first.
func newNode(tb testing.TB, st store.Store, n simNode) (time.Time, []netip.Prefix) {
	tb.Helper()
	var blocks []netip.Prefix
	err := st.Update(context.Background(), func(tx store.Tx) error {
		blocks = nil // the store may run this again
		if err := register(tx, n, time.Now()); err != nil {
			return err
		}
		a, err := ipam.Allocate(tx, ipam.Request{
			Handle: ipam.Handle{Network: "sim", ContainerID: n.name, IfName: "eth0"},
			Node:   n.name, Families: simFamilies, Pools: []ipam.Pool{simPool6, simPool4},
		})
		for _, ip := range a.IPs {
			blocks = append(blocks, ip.Block)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return time.Now(), blocks
}

// waitRoute waits until every agent routes block through via, polling
// the kernel's own lookup (cheap whatever the table's size), and returns
// when the last one did.
func waitRoute(tb testing.TB, s lab.State, block netip.Prefix, via netip.Addr) time.Time {
	tb.Helper()
	var last time.Time
	for _, n := range s.Nodes {
		h := nodeHandle(tb, n.NetNS)
		deadline := time.Now().Add(time.Minute)
		for {
			rs, err := h.RouteGet(net.IP(block.Addr().AsSlice()))
			if err == nil && len(rs) > 0 && rs[0].Gw != nil && rs[0].Gw.Equal(net.IP(via.AsSlice())) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s did not route the new block %s via %s within a minute", n.Name, block, via)
			}
			time.Sleep(2 * time.Millisecond)
		}
		h.Close()
		last = time.Now()
	}
	return last
}

func nodeHandle(tb testing.TB, name string) netlinksafe.Handle {
	tb.Helper()
	nsh, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlinksafe.NewHandleAt(nsh)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// heartbeats rewrites every simulated node's record once per
// cluster.HeartbeatEvery, spread evenly, as their duetd would.
func heartbeats(ctx context.Context, st store.Store, sims []simNode, stop <-chan struct{}) {
	every := cluster.HeartbeatEvery / time.Duration(len(sims))
	t := time.NewTicker(max(every, time.Millisecond))
	defer t.Stop()
	for i := 0; ; i = (i + 1) % len(sims) {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		_ = st.Update(ctx, func(tx store.Tx) error { return register(tx, sims[i], time.Now()) })
	}
}

// churn creates a pod on a random node and deletes an older one, rate
// times a second each, and returns how many it created.
func churn(ctx context.Context, st store.Store, sims []simNode, stop <-chan struct{}) int64 {
	t := time.NewTicker(time.Second / time.Duration(*churnRate))
	defer t.Stop()
	var made int64
	var live []ipam.Handle
	for {
		select {
		case <-stop:
			for _, h := range live {
				_ = st.Update(ctx, func(tx store.Tx) error { _, _, err := ipam.Release(tx, h); return err })
			}
			return made
		case <-t.C:
		}
		n := sims[rand.IntN(len(sims))]
		id := fmt.Sprintf("churn-%s-%d", n.name, made)
		if st.Update(ctx, func(tx store.Tx) error { return allocate(tx, n, id) }) == nil {
			made++
			live = append(live, ipam.Handle{Network: "sim", ContainerID: id, IfName: "eth0"})
		}
		if len(live) > *churnRate { // each pod lives about a second
			h := live[0]
			live = live[1:]
			_ = st.Update(ctx, func(tx store.Tx) error { _, _, err := ipam.Release(tx, h); return err })
		}
	}
}

// agentCPU is each lab node's duetd CPU time so far, in seconds.
func agentCPU(tb testing.TB, s lab.State) []float64 {
	tb.Helper()
	var out []float64
	for _, pid := range s.PIDs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			tb.Fatal(err)
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out = append(out, (ut+st)/100) // USER_HZ
	}
	return out
}

func agentRSS(tb testing.TB, s lab.State) []float64 {
	tb.Helper()
	var out []float64
	for _, pid := range s.PIDs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			tb.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				out = append(out, kb/1024)
			}
		}
	}
	return out
}

// etcdMetrics reads etcd's /metrics: "requests" is every gRPC call it
// has answered (the JSON gateway's are gRPC calls too), and the database
// size.
func etcdMetrics(tb testing.TB, s lab.State) map[string]float64 {
	tb.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: lab.NetnsDial("/var/run/netns/" + s.Store.NetNS)}, Timeout: 10 * time.Second}
	resp, err := c.Get(s.EtcdEndpoints()[0] + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch {
		case strings.HasPrefix(l, "grpc_server_handled_total{"):
			out["requests"] += v
		case strings.HasPrefix(l, "etcd_mvcc_db_total_size_in_bytes "):
			out["etcd_mvcc_db_total_size_in_bytes"] = v
		}
	}
	return out
}
