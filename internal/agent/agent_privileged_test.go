// Privileged: run as root with `go test ./internal/agent/`. Two node
// namespaces on one switch bridge; the agent of each must route the other's
// blocks via its address and blackhole its own, in both families, and a
// second pass must change nothing.
package agent

import (
	"context"
	"log/slog"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/routing"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

func TestAgentRoutesBetweenNodes(t *testing.T) {
	kerneltest.RequireRoot(t)
	sw := kerneltest.NetNS(t)
	kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(sw), "link", "add", "br0", "type", "bridge")
	kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(sw), "link", "set", "br0", "up")
	db := filepath.Join(t.TempDir(), "duet.db")
	pools := []ipam.Pool{}
	for _, c := range []string{"fd00:a6e::/48", "10.248.0.0/16"} {
		p, err := ipam.PoolSpec{CIDR: c}.Resolve("pools")
		if err != nil {
			t.Fatal(err)
		}
		pools = append(pools, p)
	}
	type node struct {
		name, ns string
		addrs    []netip.Addr
	}
	nodes := []node{
		{"n1", kerneltest.NetNS(t), []netip.Addr{netip.MustParseAddr("fd00:a6e:ffff::1"), netip.MustParseAddr("10.248.255.1")}},
		{"n2", kerneltest.NetNS(t), []netip.Addr{netip.MustParseAddr("fd00:a6e:ffff::2"), netip.MustParseAddr("10.248.255.2")}},
	}
	for i, n := range nodes {
		nsName := kerneltest.NetNSName(n.ns)
		port := kerneltest.Name("dtsw")
		kerneltest.Run(t, "ip", "link", "add", port, "netns", kerneltest.NetNSName(sw), "type", "veth", "peer", "name", "uplink", "netns", nsName)
		kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(sw), "link", "set", port, "master", "br0", "up")
		kerneltest.Run(t, "ip", "-n", nsName, "link", "set", "uplink", "up")
		kerneltest.Run(t, "ip", "-n", nsName, "addr", "add", n.addrs[0].String()+"/64", "dev", "uplink", "nodad")
		kerneltest.Run(t, "ip", "-n", nsName, "addr", "add", n.addrs[1].String()+"/24", "dev", "uplink")
		// Each node holds a block of each family.
		s, err := open.Store(config.Datastore{Type: config.DatastoreBolt, Path: db})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Update(context.Background(), func(tx store.Tx) error {
			_, err := ipam.Allocate(tx, ipam.Request{Handle: ipam.Handle{Network: "t", ContainerID: n.name, IfName: "eth0"}, Node: n.name,
				Families: []ipam.Family{ipam.IPv6, ipam.IPv4}, Pools: pools, Rand: rand.New(rand.NewSource(int64(i)))})
			return err
		})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	agents := map[string]*Agent{}
	for _, n := range nodes {
		path := n.ns
		agents[n.name] = New(Config{Node: n.name, Addrs: n.addrs, Routing: routing.Direct, Instance: n.name},
			func() (store.Store, error) { return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: db}) },
			func() (Kernel, func(), error) {
				ns, err := kernel.OpenNS(path)
				if err != nil {
					return nil, nil, err
				}
				return ns, func() { ns.Close() }, nil
			}, nil, log)
	}
	ctx := context.Background()
	for pass := 0; pass < 3; pass++ { // register, route, then a pass that must change nothing
		for _, n := range nodes {
			if err := agents[n.name].Sync(ctx); err != nil {
				t.Fatalf("%s pass %d: %v", n.name, pass, err)
			}
		}
	}
	for _, n := range nodes {
		if st := agents[n.name].Status(); st.Changed != 0 {
			t.Errorf("%s: the last pass changed %d routes", n.name, st.Changed)
		}
		out6 := kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(n.ns), "-6", "route", "show", "proto", "201")
		out4 := kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(n.ns), "-4", "route", "show", "proto", "201")
		other := nodes[0]
		if n.name == "n1" {
			other = nodes[1]
		}
		for _, want := range []string{"blackhole fd00:a6e::", "via " + other.addrs[0].String()} {
			if !strings.Contains(out6, want) {
				t.Errorf("%s: IPv6 routes lack %q:\n%s", n.name, want, out6)
			}
		}
		for _, want := range []string{"blackhole 10.248.", "via " + other.addrs[1].String()} {
			if !strings.Contains(out4, want) {
				t.Errorf("%s: IPv4 routes lack %q:\n%s", n.name, want, out4)
			}
		}
	}
	// A second duetd claiming n1's name is refused with a clear message.
	dup := New(Config{Node: "n1", Addrs: nodes[0].addrs, Instance: "other"},
		func() (store.Store, error) { return open.Store(config.Datastore{Type: config.DatastoreBolt, Path: db}) },
		nil, nil, log)
	if err := dup.Sync(ctx); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("duplicate node name: %v", err)
	}
}
