// Privileged: run as root with `go test ./internal/lab/`. Builds the real
// binaries, brings a lab up in each family, proves every path with the
// connectivity probe, and checks lab down leaves nothing behind.
package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/connectivity"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/lab"
)

func buildBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/duetnet/duet/cmd/duet", "github.com/duetnet/duet/cmd/duetd", "github.com/duetnet/duet/cmd/duetctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), lab.Prefix) {
			left = append(left, "netns "+e.Name())
		}
	}
	if _, err := exec.LookPath("docker"); err == nil {
		for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
			out, _ := exec.Command("docker", append(what, "--filter", "label="+lab.DockerLabel)...).Output()
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				left = append(left, fmt.Sprintf("docker %s %v", what[0], ids))
			}
		}
		if socks, _ := filepath.Glob("/run/docker/plugins/" + lab.Prefix + "*"); len(socks) > 0 {
			left = append(left, fmt.Sprint(socks))
		}
	}
	return left
}

func TestLabFamiliesAndRouting(t *testing.T) {
	kerneltest.RequireRoot(t)
	if l := leftovers(t); len(l) > 0 {
		t.Fatalf("a lab is already up on this machine (%v): run duetctl lab down", l)
	}
	bins := buildBins(t)
	for _, tc := range []struct{ fam, routing, topology, runtime string }{
		{"ipv6", "direct", "switched", ""}, {"dual", "direct", "switched", ""}, {"ipv4", "direct", "switched", ""},
		{"ipv6", "vxlan", "switched", ""}, {"dual", "vxlan", "switched", ""}, {"ipv4", "vxlan", "switched", ""},
		{"ipv6", "direct", "ndp-proxy", ""}, {"dual", "direct", "ndp-proxy", ""},
		{"ipv6", "bgp", "routed", ""}, {"dual", "bgp", "routed", ""},
		{"dual", "bgp", "switched", ""}, // the node-to-node iBGP mesh
		// Seed 001's three designs on Docker hosts: containers of the
		// machine's Docker Engine on each node's duet network.
		{"dual", "direct", "switched", "docker"}, {"dual", "bgp", "routed", "docker"}, {"dual", "direct", "ndp-proxy", "docker"},
	} {
		fam := tc.fam
		name := tc.topology + "/" + tc.fam + "/" + tc.routing
		if tc.runtime != "" {
			name += "/" + tc.runtime
		}
		t.Run(name, func(t *testing.T) {
			datadir := filepath.Join(t.TempDir(), "lab")
			hostLog, _ := os.ReadFile(cni.SysctlLogPath)
			var pids []int
			t.Cleanup(func() {
				var out bytes.Buffer
				if err := lab.Down(datadir, &out); err != nil {
					t.Errorf("lab down: %v\n%s", err, out.String())
				}
				if l := leftovers(t); len(l) > 0 {
					t.Errorf("lab down left %v", l)
				}
				// Down returns when its processes are gone, not 100 ms
				// after it signalled them.
				for _, pid := range pids {
					if pid > 0 && syscall.Kill(pid, 0) == nil {
						if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(stat), ") Z ") {
							t.Errorf("lab down returned with pid %d still running: %s", pid, stat)
						}
					}
				}
				// The nodes' sysctl changes went to the lab's directory,
				// not the machine's record.
				if now, _ := os.ReadFile(cni.SysctlLogPath); !bytes.Equal(now, hostLog) {
					t.Errorf("the lab wrote to the machine's %s: %q", cni.SysctlLogPath, bytes.TrimPrefix(now, hostLog))
				}
			})
			var out bytes.Buffer
			o := lab.Options{Nodes: 2, PodsPerNode: 2, Family: fam, Routing: tc.routing, Topology: tc.topology, Runtime: tc.runtime}
			s, err := lab.Up(context.Background(), o, bins, datadir, &out)
			pids = append(append(pids, s.PIDs...), s.StorePID, s.RouterPID)
			if err != nil {
				t.Fatalf("lab up: %v\n%s", err, out.String())
			}
			// Up again with the same options is a no-op; other options are refused.
			if _, err := lab.Up(context.Background(), o, bins, datadir, &out); err != nil {
				t.Fatalf("second lab up: %v", err)
			}
			o2 := o
			o2.PodsPerNode = 3 // valid in every topology, so "already up" answers
			if _, err := lab.Up(context.Background(), o2, bins, datadir, &out); err == nil || !strings.Contains(err.Error(), "lab down") {
				t.Fatalf("lab up with other options: %v", err)
			}
			if tc.runtime == "docker" {
				out, err := exec.Command("docker", "ps", "-q", "--filter", "label="+lab.DockerLabel).Output()
				if n := len(strings.Fields(string(out))); err != nil || n != len(s.Pods) {
					t.Fatalf("%d lab containers running (%v), want %d", n, err, len(s.Pods))
				}
			}
			for _, p := range s.Pods {
				want := map[string]int{"dual": 2, "ipv6": 1, "ipv4": 1}[fam]
				if len(p.IPs) != want || (fam != "ipv4" && !p.IPs[0].Is6()) {
					t.Errorf("pod %s has %v", p.Name, p.IPs)
				}
			}
			if tc.topology == "switched" && tc.routing == "direct" {
				inspectWithDuetctl(t, bins, s, fam)
			}
			results, err := connectivity.Run(s)
			if err != nil || len(results) == 0 {
				t.Fatalf("no checks ran: %v", err)
			}
			if tc.topology == "routed" {
				// The router (BIRD) learned every block over BGP; pods on
				// different nodes talk through it without NAT (checked by
				// connectivity's source expectations).
				if s.Underlay.Kind != "router" {
					t.Fatalf("underlay %+v", s.Underlay)
				}
				routes := kerneltest.Run(t, "ip", "-n", s.Underlay.NetNS, "-6", "route", "show", "proto", "bird")
				if !strings.Contains(routes, "fd00:d0e7::/122") || !strings.Contains(routes, "fd00:d0e7::40/122") {
					t.Fatalf("BIRD did not install both nodes' IPv6 blocks:\n%s", routes)
				}
			}
			if tc.topology == "ndp-proxy" {
				// The neighbour has no route for any pod: every pod it
				// reaches was answered for by its node's proxy entry.
				if s.Neighbour == nil || kerneltest.Run(t, "ip", "-n", s.Neighbour.NetNS, "-6", "route", "show", "proto", "static") != "" {
					t.Fatalf("neighbour %+v must have no static routes", s.Neighbour)
				}
				n := 0
				for _, r := range results {
					if strings.HasPrefix(r.Path, "neighbour to pod") {
						n++
					}
				}
				if n == 0 {
					t.Fatal("no neighbour checks ran")
				}
			}
			for _, r := range results {
				if !r.OK {
					t.Errorf("%s %s %s -> %s %s: %s", r.Family, r.Path, r.From, r.To, r.Proto, r.Error)
				}
			}
		})
	}
}

func TestLabDownAfterInterruptedUp(t *testing.T) {
	kerneltest.RequireRoot(t)
	bins := buildBins(t)
	datadir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // interrupted before the first pod
	var out bytes.Buffer
	if _, err := lab.Up(ctx, lab.Options{Nodes: 2, PodsPerNode: 2, Family: "dual", Routing: "direct"}, bins, datadir, &out); err == nil {
		t.Fatal("an interrupted up reported success")
	}
	if _, err := lab.Up(context.Background(), lab.Options{Nodes: 2, PodsPerNode: 2, Family: "dual", Routing: "direct"}, bins, datadir, &out); err == nil || !strings.Contains(err.Error(), "lab down") {
		t.Fatalf("up after an interrupted up: %v", err)
	}
	if err := lab.Down(datadir, &out); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t); len(l) > 0 {
		t.Fatalf("lab down after an interrupted up left %v", l)
	}
	if _, err := os.Stat(datadir); !os.IsNotExist(err) {
		t.Fatalf("datadir left: %v", err)
	}
}

// TestDuetdRestartKeepsFlows: an established TCP flow across nodes keeps
// working while both nodes' duetd are stopped and restarted, and the
// routes stay in place throughout.
func TestDuetdRestartKeepsFlows(t *testing.T) {
	kerneltest.RequireRoot(t)
	bins := buildBins(t)
	for _, o := range []lab.Options{
		{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: "direct"},
		{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: "bgp", Topology: "routed"},
	} {
		t.Run(o.Routing, func(t *testing.T) {
			datadir := filepath.Join(t.TempDir(), "lab")
			t.Cleanup(func() { _ = lab.Down(datadir, &bytes.Buffer{}) })
			var out bytes.Buffer
			s, err := lab.Up(context.Background(), o, bins, datadir, &out)
			if err != nil {
				t.Fatalf("lab up: %v\n%s", err, out.String())
			}
			for _, dst := range s.Pods[1].IPs {
				flow, err := connectivity.OpenFlow("/var/run/netns/"+s.Pods[0].NetNS, "/var/run/netns/"+s.Pods[1].NetNS, dst)
				if err != nil {
					t.Fatalf("open flow to %s: %v", dst, err)
				}
				routesBefore := kerneltest.Run(t, "ip", "-n", s.Nodes[0].NetNS, "-6", "route", "show", "proto", "201")
				for _, n := range s.Nodes {
					restarted := time.Now()
					if s, err = lab.RestartDuetd(s, bins, n.Name); err != nil {
						t.Fatal(err)
					}
					// After the new duetd's first sync, before its BGP
					// sessions are back: the routes must still be there.
					waitSynced(t, s, n, restarted)
					if err := flow.Exchange(); err != nil {
						t.Fatalf("flow to %s broke while %s's duetd restarted: %v", dst, n.Name, err)
					}
				}
				if after := kerneltest.Run(t, "ip", "-n", s.Nodes[0].NetNS, "-6", "route", "show", "proto", "201"); after != routesBefore {
					t.Errorf("routes changed across restarts:\n%s\n---\n%s", routesBefore, after)
				}
				flow.Close()
			}
		})
	}
}

// TestPodsWhileDuetdDown: the plugin talks to etcd itself, so a pod comes
// up on a node whose duetd is stopped; once duetd is back, the other node
// routes to it, in both families.
func TestPodsWhileDuetdDown(t *testing.T) {
	kerneltest.RequireRoot(t)
	bins := buildBins(t)
	datadir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _ = lab.Down(datadir, &bytes.Buffer{}) })
	var out bytes.Buffer
	s, err := lab.Up(context.Background(), lab.Options{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: "direct"}, bins, datadir, &out)
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out.String())
	}
	node2 := s.Nodes[1]
	if err := lab.StopDuetd(s, node2.Name); err != nil {
		t.Fatal(err)
	}
	p := lab.Pod{Name: "node2-late", NetNS: lab.Prefix + "node2-late", Node: node2.Name}
	ips, err := lab.AddPod(context.Background(), s, bins, p)
	if err != nil {
		t.Fatalf("ADD on %s with its duetd stopped: %v", node2.Name, err)
	}
	if len(ips) != 2 || !ips[0].Is6() || !ips[1].Is4() {
		t.Fatalf("ADD with duetd stopped gave %v, want an IPv6 and an IPv4 address", ips)
	}
	restarted := time.Now()
	if s, err = lab.StartDuetd(s, bins, node2.Name); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, s, node2, restarted)
	for _, dst := range ips {
		out, err := exec.Command("ip", "netns", "exec", s.Pods[0].NetNS, "ping", "-c", "1", "-W", "2", dst.String()).CombinedOutput()
		if err != nil {
			t.Errorf("%s -> %s (added while duetd was down): %v\n%s", s.Pods[0].Name, dst, err, out)
		}
	}
}

// waitSynced waits until node n's duetd has finished a sync after since.
func waitSynced(t *testing.T, s lab.State, n lab.Node, since time.Time) {
	t.Helper()
	var last any
	for i := 0; i < 150; i++ {
		st, err := lab.NodeStatus(s, n)
		if err == nil {
			if ls, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["lastSync"])); err == nil && ls.After(since) {
				return
			}
			last = st["lastSync"]
		} else {
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s's duetd did not sync after its restart at %s (last: %v)", n.Name, since.Format(time.RFC3339Nano), last)
}

// inspectWithDuetctl asks a running lab's node what duet's own commands
// ask a host: duetd's status over the node's socket, the node's sysctls
// and their record, and the lab's IPAM.
func inspectWithDuetctl(t *testing.T, bins string, s lab.State, fam string) {
	t.Helper()
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(filepath.Join(bins, "duetctl"), append(args, "--lab-datadir", s.Datadir, "--json")...).CombinedOutput()
		if err != nil {
			t.Fatalf("duetctl %v: %v\n%s", args, err, out)
		}
		return out
	}
	for _, n := range s.Nodes {
		var st struct {
			Node   struct{ Name string }
			Routes []string
		}
		if err := json.Unmarshal(run("node", "status", "--lab", n.Name), &st); err != nil || st.Node.Name != n.Name || len(st.Routes) == 0 {
			t.Errorf("node status --lab %s: %+v %v", n.Name, st, err)
		}
		var sys struct {
			Sysctls []struct {
				Name, Value string
			}
			Changes []struct{ Name, New string }
		}
		if err := json.Unmarshal(run("node", "sysctls", "--lab", n.Name), &sys); err != nil {
			t.Fatal(err)
		}
		// The node's own namespace: its uplink is listed, and forwarding
		// on. With IPv6 pods the plugin turned IPv6 forwarding on there,
		// and recorded it; the lab's nodes have IPv4 forwarding on already.
		seen := map[string]string{}
		for _, r := range sys.Sysctls {
			seen[r.Name] = r.Value
		}
		if seen["net.ipv4.ip_forward"] != "1" || seen["net.ipv6.conf.uplink.accept_ra"] == "" ||
			(fam != "ipv4" && seen["net.ipv6.conf.all.forwarding"] != "1") {
			t.Errorf("node sysctls --lab %s: %+v", n.Name, sys.Sysctls)
		}
		if fam != "ipv4" && len(sys.Changes) == 0 {
			t.Errorf("node sysctls --lab %s: no recorded changes in %s", n.Name, s.NodeSysctlLog(n.Name))
		}
	}
	var ipamOut struct {
		Allocations []struct{ Node string }
	}
	want := len(s.Pods)
	if s.Options.Runtime == "docker" {
		// Docker's IPAM driver asks for each address alone.
		want = len(s.Pods) * map[string]int{"dual": 2, "ipv6": 1, "ipv4": 1}[fam]
	}
	if err := json.Unmarshal(run("ipam", "show", "--lab", s.Nodes[0].Name), &ipamOut); err != nil || len(ipamOut.Allocations) != want {
		t.Errorf("ipam show --lab: %d allocations for %d pods (%v)", len(ipamOut.Allocations), len(s.Pods), err)
	}
}

// TestDuetdKilledUnderChurn: duetd is SIGKILLed and started again, over
// and over, on both nodes, while pods come and go on both: a UDP stream
// in each family between pods on the two nodes never stops for more than
// a second, and every pod that was reachable from the other node stays
// reachable after every restart (no route lost for a live pod). With BGP
// the restarted agent keeps its routes until every peer's End-of-RIB.
//
// Each kill comes once the previous start has recovered: its first sync
// done and, with BGP, End-of-RIB exchanged with every peer. A speaker
// killed again in the middle of its graceful restart gets no more help:
// BIRD then flushes its routes at once ("graceful restart detected -
// already pending"), as any router may.
func TestDuetdKilledUnderChurn(t *testing.T) {
	kerneltest.RequireRoot(t)
	bins := buildBins(t)
	const kills, maxGap = 12, time.Second
	for _, o := range []lab.Options{
		{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: "direct"},
		{Nodes: 2, PodsPerNode: 1, Family: "dual", Routing: "bgp", Topology: "routed"},
	} {
		t.Run(o.Routing, func(t *testing.T) {
			datadir := filepath.Join(t.TempDir(), "lab")
			t.Cleanup(func() { _ = lab.Down(datadir, &bytes.Buffer{}) })
			var out bytes.Buffer
			s, err := lab.Up(context.Background(), o, bins, datadir, &out)
			if err != nil {
				t.Fatalf("lab up: %v\n%s", err, out.String())
			}
			a, b := s.Pods[0], s.Pods[1]
			var streams []*connectivity.Stream
			var names []string
			for _, pair := range [][2]lab.Pod{{a, b}, {b, a}} {
				for _, dst := range pair[1].IPs { // IPv6 first
					st, err := connectivity.OpenStream("/var/run/netns/"+pair[0].NetNS, "/var/run/netns/"+pair[1].NetNS, dst, 10*time.Millisecond)
					if err != nil {
						t.Fatalf("stream to %s: %v", dst, err)
					}
					streams = append(streams, st)
					names = append(names, fmt.Sprintf("%s -> %s", pair[0].Name, dst))
				}
			}
			c := startChurn(t, s, bins)
			for i := range kills {
				n := s.Nodes[rand.IntN(len(s.Nodes))]
				if err := lab.KillDuetd(s, n.Name); err != nil {
					t.Fatal(err)
				}
				time.Sleep(rand.N(300 * time.Millisecond))
				restarted := time.Now()
				if s, err = lab.StartDuetd(s, bins, n.Name); err != nil {
					t.Fatal(err)
				}
				c.setState(s)
				waitSynced(t, s, n, restarted)
				if o.Routing == "bgp" {
					waitEndOfRIB(t, s, n)
				}
				c.hold.Lock()
				for _, p := range c.reachable() {
					if err := pingFrom(s, p); err != nil {
						t.Errorf("kill %d (%s): %s was reachable before and is not now: %v\n%s", i+1, n.Name, p.Name, err, diagnose(s, p))
					}
				}
				c.hold.Unlock()
			}
			added, deleted := c.stop()
			t.Logf("%d kills; churn: %d pods added, %d deleted", kills, added, deleted)
			for i, st := range streams {
				r := st.Stop()
				t.Logf("%s: %d sent, %d received, longest gap %s", names[i], r.Sent, r.Received, r.MaxGap.Round(time.Millisecond))
				if r.MaxGap > maxGap {
					t.Errorf("%s: nothing got through for %s (ended %s); want at most %s", names[i], r.MaxGap.Round(time.Millisecond), r.GapEnded.Format(time.StampMilli), maxGap)
				}
			}
		})
	}
}

// waitEndOfRIB waits until every BGP peer of n's duetd has sent its
// End-of-RIB on the current session (duetd sends its own right after).
func waitEndOfRIB(t *testing.T, s lab.State, n lab.Node) {
	t.Helper()
	var last any
	for range 500 {
		st, err := lab.NodeStatus(s, n)
		if err == nil {
			peers, _ := st["peers"].([]any)
			all := len(peers) > 0
			for _, p := range peers {
				m, _ := p.(map[string]any)
				all = all && m["endOfRIB"] == true
			}
			if all {
				time.Sleep(50 * time.Millisecond) // ours follows theirs
				return
			}
			last = peers
		} else {
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s's BGP peers gave no End-of-RIB within 10s: %v", n.Name, last)
}

// churn adds and deletes pods on every node of a lab until stopped, and
// knows which of its pods have been reached from another node.
type churn struct {
	t    *testing.T
	bins string
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	// hold is held while the test checks the reachable pods, so none of
	// them is deleted under its ping.
	hold sync.Mutex

	mu             sync.Mutex
	s              lab.State
	live           []lab.Pod
	reached        map[string]bool
	added, deleted int
}

func startChurn(t *testing.T, s lab.State, bins string) *churn {
	c := &churn{t: t, bins: bins, s: s, done: make(chan struct{}), reached: map[string]bool{}}
	c.wg.Add(1)
	go c.run()
	t.Cleanup(func() { c.stop() }) // before the lab goes down, if the test fails early
	return c
}

func (c *churn) setState(s lab.State) {
	c.mu.Lock()
	c.s = s
	c.mu.Unlock()
}

func (c *churn) run() {
	defer c.wg.Done()
	ctx := context.Background()
	for i := 0; ; i++ {
		select {
		case <-c.done:
			return
		default:
		}
		c.mu.Lock()
		s, live := c.s, slices.Clone(c.live)
		c.mu.Unlock()
		if len(live) >= 4 { // the oldest goes
			p := live[0]
			c.hold.Lock()
			c.mu.Lock()
			c.live = c.live[1:]
			delete(c.reached, p.Name)
			c.mu.Unlock()
			c.hold.Unlock()
			if err := lab.DelPod(ctx, s, c.bins, p); err != nil {
				c.t.Errorf("churn: %v", err)
			}
			c.mu.Lock()
			c.deleted++
			c.mu.Unlock()
			continue
		}
		n := s.Nodes[i%len(s.Nodes)]
		p := lab.Pod{Name: fmt.Sprintf("churn%d", i), NetNS: fmt.Sprintf("%schurn%d", lab.Prefix, i), Node: n.Name}
		ips, err := lab.AddPod(ctx, s, c.bins, p)
		if err != nil {
			c.t.Errorf("churn: %v", err)
			continue
		}
		p.IPs = ips
		c.mu.Lock()
		c.live = append(c.live, p)
		c.added++
		c.mu.Unlock()
		// Reached once from the other node, it must stay reachable.
		for range 50 {
			if pingFrom(s, p) == nil {
				c.mu.Lock()
				c.reached[p.Name] = true
				c.mu.Unlock()
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// reachable are the live pods that have been reached from another node.
func (c *churn) reachable() []lab.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []lab.Pod
	for _, p := range c.live {
		if c.reached[p.Name] {
			out = append(out, p)
		}
	}
	return out
}

func (c *churn) stop() (added, deleted int) {
	c.once.Do(func() { close(c.done) })
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.added, c.deleted
}

// pingFrom pings every address of p once from the lab's first pod on
// another node.
func pingFrom(s lab.State, p lab.Pod) error {
	var src lab.Pod
	for _, q := range s.Pods {
		if q.Node != p.Node {
			src = q
			break
		}
	}
	for _, dst := range p.IPs {
		if out, err := exec.Command("ip", "netns", "exec", src.NetNS, "ping", "-c", "1", "-W", "1", dst.String()).CombinedOutput(); err != nil {
			return fmt.Errorf("ping %s from %s: %v: %s", dst, src.Name, err, lastLine(out))
		}
	}
	return nil
}

// diagnose says how long p took to become reachable again, and what the
// nodes' routes and nftables say about its addresses.
func diagnose(s lab.State, p lab.Pod) string {
	var b strings.Builder
	start := time.Now()
	for time.Since(start) < 5*time.Second && pingFrom(s, p) != nil {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(&b, "reachable again after %s (5s: not)\n", time.Since(start).Round(time.Millisecond))
	for _, n := range s.Nodes {
		for _, a := range p.IPs {
			out, _ := exec.Command("ip", "-n", n.NetNS, "route", "get", a.String()).CombinedOutput()
			fmt.Fprintf(&b, "%s: route get %s: %s", n.Name, a, out)
		}
		out, _ := exec.Command("ip", "netns", "exec", n.NetNS, "nft", "list", "ruleset").CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			for _, a := range p.IPs {
				if strings.Contains(l, a.String()) {
					fmt.Fprintf(&b, "%s: nft: %s\n", n.Name, strings.TrimSpace(l))
				}
			}
		}
	}
	return b.String()
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
