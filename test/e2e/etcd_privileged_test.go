// The plugin on etcd: pods on two "nodes" sharing one real etcd (embedded
// in this test binary, never in the plugin), addresses from per-node
// blocks, no duplicates, DEL releasing them, and code 11 with nothing left
// behind while etcd is down.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/etcdserver"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/etcd"
)

func TestEtcdDatastore(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	endpoint, _ := startEtcd(t)
	pools := []any{
		map[string]any{"cidr": "fd00:e2e:e7::/64", "blockSize": 122},
		map[string]any{"cidr": "10.250.150.0/24", "blockSize": 28},
	}
	ds := map[string]any{"type": "etcd", "endpoints": []string{endpoint}}
	// Two networks with one name on two nodes: what two hosts' plugins
	// configured alike see (the test host plays both).
	a := duetNetwork(t, map[string]any{"pools": pools, "datastore": ds, "nodeName": "e2e-etcd-a"})
	b := newNetwork(t, "1.1.0", map[string]any{"type": "duet", "pools": pools, "datastore": ds, "nodeName": "e2e-etcd-b"}, "")
	b.name, b.list.Name, b.conf["name"] = a.name, a.name, a.name
	b.list.Plugins[0].Network.Name = a.name

	var pods []*pod
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 6 {
		n := a
		if i%2 == 1 {
			n = b
		}
		p := n.newPod(t)
		p.ifName = "eth0"
		pods = append(pods, p)
		wg.Go(func() {
			if err := n.tryAdd(p); err != nil {
				mu.Lock()
				defer mu.Unlock()
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	allocs, blocks := readEtcd(t, endpoint)
	seen := map[netip.Addr]bool{}
	for _, p := range pods {
		for _, v6 := range []bool{true, false} {
			addr, ok := p.addr(v6)
			if !ok {
				t.Errorf("pod %s has no %s address", p.id, famName(v6))
				continue
			}
			if seen[addr] {
				t.Errorf("duplicate address %s", addr)
			}
			seen[addr] = true
		}
	}
	if len(allocs) != len(pods) {
		t.Errorf("etcd holds %d allocations, want %d", len(allocs), len(pods))
	}
	if v := duetctlShowArgs(t, "--etcd-endpoints", endpoint); len(v.Allocations) != len(pods) || len(v.Blocks) != 4 {
		t.Errorf("duetctl ipam show --etcd-endpoints: %d allocations and %d blocks, want %d and 4", len(v.Allocations), len(v.Blocks), len(pods))
	}
	// gc on etcd frees only this node's allocations whose netns is gone:
	// the other node's pods live in namespaces this host cannot judge.
	out, err := exec.Command(filepath.Join(binDir, "duetctl"), "ipam", "gc", "--dry-run", "--etcd-endpoints", endpoint, "--node-name", "e2e-etcd-a").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to free") && !strings.Contains(string(out), "dry run") {
		t.Errorf("duetctl ipam gc --dry-run on etcd: %v: %s", err, out)
	}
	if strings.Contains("\n"+string(out), "\nfreed ") {
		t.Errorf("gc would free live pods: %s", out)
	}
	nodes := map[string]int{}
	for _, bl := range blocks {
		nodes[bl.Node]++
	}
	if nodes["e2e-etcd-a"] != 2 || nodes["e2e-etcd-b"] != 2 {
		t.Errorf("blocks per node = %v, want one block of each family for each node", nodes)
	}
	// Same-node pods reach each other in both families (routed mode).
	for _, v6 := range []bool{true, false} {
		dst, _ := pods[2].addr(v6)
		ping(t, pods[0].ns, dst)
	}
	if err := a.check(pods[0]); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	a.del(t, pods[0])
	if allocs, _ := readEtcd(t, endpoint); len(allocs) != len(pods)-1 {
		t.Errorf("after DEL etcd holds %d allocations, want %d", len(allocs), len(pods)-1)
	}
	// Node b is gone for good: `duetctl node remove` frees its pods'
	// addresses and its blocks; node a's stay.
	out, err = exec.Command(filepath.Join(binDir, "duetctl"), "node", "remove", "e2e-etcd-b", "--etcd-endpoints", endpoint).CombinedOutput()
	if err != nil {
		t.Errorf("duetctl node remove: %v: %s", err, out)
	}
	allocs, blocks = readEtcd(t, endpoint)
	for _, x := range allocs {
		if x.Node != "e2e-etcd-a" {
			t.Errorf("allocation of the removed node left: %+v", x)
		}
	}
	for _, bl := range blocks {
		if bl.Node != "e2e-etcd-a" {
			t.Errorf("block %s of the removed node left", bl.CIDR)
		}
	}
	if len(allocs) != 2 || len(blocks) != 2 {
		t.Errorf("after removing node b: %d allocations and %d blocks, want node a's 2 and 2", len(allocs), len(blocks))
	}
	for i, p := range pods[1:] {
		[]*network{b, a}[i%2].del(t, p) // b's: the kernel side only
	}
	if allocs, _ := readEtcd(t, endpoint); len(allocs) != 0 {
		t.Errorf("after every DEL etcd holds %d allocations: %+v", len(allocs), allocs)
	}

	// etcd down (a stopped member's port; the plugin is a new process
	// each time, so this is what it sees when etcd stops): ADD answers
	// code 11, quickly, and makes nothing.
	down, stop := startEtcd(t)
	stop()
	conf := maps.Clone(a.conf)
	conf["datastore"] = map[string]any{"type": "etcd", "endpoints": []string{down}}
	p := a.newPod(t)
	links, routes := dtLinks(t), testRoutes(t)
	start := time.Now()
	e := execFail(t, execCmd("duet", "ADD", p.id, p.path, p.ifName, jsonBytes(t, conf)))
	t.Logf("etcd down: code %d after %s: %s", e.Code, time.Since(start).Round(time.Millisecond), e.Msg)
	if e.Code != 11 || !contains(e.Msg+e.Details, strings.TrimPrefix(down, "http://"), "etcd is running") {
		t.Errorf("ADD with etcd down: code %d %q %q, want 11 naming the endpoint and the fix", e.Code, e.Msg, e.Details)
	}
	// n.store, the bolt path, was never created: no allocation there.
	nothingLeft(t, a, p, links, routes)
}

// readEtcd reads IPAM's allocations and blocks from etcd.
func readEtcd(t *testing.T, endpoint string) ([]ipam.Allocation, []ipam.Block) {
	t.Helper()
	s, err := etcd.Open(etcd.Config{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var allocs []ipam.Allocation
	var blocks []ipam.Block
	err = s.View(context.Background(), func(tx store.Tx) (err error) {
		if allocs, err = ipam.List(tx, ""); err != nil {
			return err
		}
		blocks, err = ipam.Blocks(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return allocs, blocks
}

// etcdView is readEtcd as a storeView, for holders.
func etcdView(t *testing.T, endpoint string) storeView {
	t.Helper()
	allocs, blocks := readEtcd(t, endpoint)
	return storeView{Allocations: allocs, Blocks: blocks}
}

// startEtcd runs a single-member etcd on [::1] with its data under
// t.TempDir(); stop (also run in cleanup) shuts it down.
func startEtcd(t *testing.T) (endpoint string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	srv, err := etcdserver.Start(t.Context(), etcdserver.Config{Dir: t.TempDir(), ListenClient: []url.URL{u}})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return u.String(), srv.Close
}
