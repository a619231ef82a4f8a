// The plugin on a three-member etcd losing its members: with one member
// down (the leader) allocations go on; with two down ADD answers code 11
// within the plugin's request timeout and leaves nothing behind; once the
// members are back, everything converges: retried ADDs work, the store
// holds exactly the live pods, no address twice.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/etcdserver"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/store/etcd"
)

func TestEtcdLosingMembers(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	c := startCluster(t, 3)
	pools := []any{
		map[string]any{"cidr": "fd00:e2e:e8::/64", "blockSize": 122},
		map[string]any{"cidr": "10.250.151.0/24", "blockSize": 28},
	}
	ds := map[string]any{"type": "etcd", "endpoints": c.endpoints()}
	n := duetNetwork(t, map[string]any{"pools": pools, "datastore": ds, "nodeName": "e2e-etcd3"})

	var live []*pod
	addSome := func(what string, k int) {
		t.Helper()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range k {
			p := n.newPod(t)
			wg.Go(func() {
				err := n.tryAdd(p)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("%s: ADD: %v", what, err)
					return
				}
				live = append(live, p)
			})
		}
		wg.Wait()
	}
	addSome("three members", 4)

	leader := c.leader(t)
	c.stop(leader)
	t.Logf("stopped the leader, %s", c.names[leader])
	addSome("the leader stopped", 4)
	n.del(t, live[0])
	live = live[1:]

	other := (leader + 1) % 3
	c.stop(other)
	t.Logf("stopped %s too: one member of three left, no quorum", c.names[other])
	links, routes := dtLinks(t), testRoutes(t)
	p := n.newPod(t)
	start := time.Now()
	e := execFail(t, execCmd("duet", "ADD", p.id, p.path, p.ifName, jsonBytes(t, n.conf)))
	took := time.Since(start)
	t.Logf("no quorum: code %d after %s: %s (%s)", e.Code, took.Round(time.Millisecond), e.Msg, e.Details)
	if e.Code != 11 {
		t.Errorf("ADD without quorum: code %d %q, want 11 (try again later)", e.Code, e.Msg)
	}
	// The plugin's own deadline: one request timeout per etcd round trip
	// it is waiting on, and it gives up at the first.
	if limit := etcd.DefaultDialTimeout + etcd.DefaultRequestTimeout + 2*time.Second; took > limit {
		t.Errorf("ADD without quorum took %s, beyond the plugin's request timeout (%s)", took, limit)
	}
	kernelUntouched(t, n, p, links, routes)
	// DEL without quorum: the kernel side goes, the store's part is for
	// later (the runtime retries DEL until it succeeds).
	if err := n.cni.DelNetworkList(t.Context(), n.list, live[0].rt()); err == nil {
		t.Log("DEL without quorum succeeded (nothing to release in the store?)")
	} else if errCode(err) != 11 {
		t.Errorf("DEL without quorum: %v, want code 11", err)
	}

	c.start(t, leader, other)
	t.Logf("both members back")
	n.del(t, live[0]) // the retried DEL
	live = live[1:]
	if err := n.tryAdd(p); err != nil {
		t.Errorf("the ADD that failed without quorum, retried: %v", err)
	} else {
		live = append(live, p)
	}
	addSome("recovered", 2)

	v := etcdView(t, c.endpoints()[0])
	allocs := v.Allocations
	var got, want []string
	for _, a := range allocs {
		got = append(got, a.Handle.String())
	}
	for _, p := range live {
		want = append(want, p.handle(n).String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after recovery etcd holds\n%v\nwant exactly the live pods\n%v", got, want)
	}
	seen := holders(t, v) // no address twice, blocks and allocations agreeing
	for _, v6 := range []bool{true, false} {
		dst, _ := live[len(live)-1].addr(v6)
		ping(t, live[0].ns, dst)
	}
	t.Logf("%d live pods, %d addresses, no duplicates", len(live), len(seen))
}

// cluster is a three-member etcd run in this test binary, on [::1].
type cluster struct {
	names   []string
	dirs    []string
	clients []url.URL
	peers   []url.URL
	mu      sync.Mutex
	srvs    []*etcdserver.Server
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{srvs: make([]*etcdserver.Server, n)}
	for i := range n {
		c.names = append(c.names, fmt.Sprintf("m%d", i))
		c.dirs = append(c.dirs, t.TempDir())
		c.clients = append(c.clients, freeURL(t))
		c.peers = append(c.peers, freeURL(t))
	}
	t.Cleanup(func() {
		for i := range c.srvs {
			c.stop(i)
		}
	})
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	c.start(t, all...)
	return c
}

// start starts members together: each waits for a leader, which takes a
// quorum of them.
func (c *cluster) start(t *testing.T, which ...int) {
	t.Helper()
	var members []etcdserver.Member
	for i := range c.names {
		members = append(members, etcdserver.Member{Name: c.names[i], Peer: c.peers[i]})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(which))
	for k, i := range which {
		wg.Go(func() {
			s, err := etcdserver.Start(t.Context(), etcdserver.Config{
				Dir: c.dirs[i], Name: c.names[i], ListenClient: []url.URL{c.clients[i]}, Cluster: members,
			})
			errs[k] = err
			c.mu.Lock()
			c.srvs[i] = s
			c.mu.Unlock()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("start etcd member: %v", err)
		}
	}
}

func (c *cluster) stop(i int) {
	c.mu.Lock()
	s := c.srvs[i]
	c.srvs[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, u := range c.clients {
		out = append(out, u.String())
	}
	return out
}

// leader is the index of the member that leads now.
func (c *cluster) leader(t *testing.T) int {
	t.Helper()
	for range 100 {
		c.mu.Lock()
		srvs := slices.Clone(c.srvs)
		c.mu.Unlock()
		for i, s := range srvs {
			if s != nil && s.IsLeader() {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no etcd member leads")
	return -1
}

func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}
