// 64 workers doing ADD and DEL at once on etcd, each plugin run killed
// with SIGKILL at a random point one time in four, 10,000 operations: no
// address is ever held twice, and CNI GC frees every allocation the
// killed runs left.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestKilledOnEtcd(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	const workers, ops, killOneIn = 64, 10000, 4
	endpoint, _ := startEtcd(t)
	pools := []any{
		map[string]any{"cidr": "fd00:e2e:e9::/64", "blockSize": 122},
		map[string]any{"cidr": "10.250.160.0/20", "blockSize": 26},
	}
	ds := map[string]any{"type": "etcd", "endpoints": []string{endpoint}}
	n := duetNetwork(t, map[string]any{"pools": pools, "datastore": ds, "nodeName": "e2e-kill"})
	conf := jsonBytes(t, n.conf)
	// Whatever a failure leaves, one GC with nothing valid frees it.
	t.Cleanup(func() {
		_ = n.cni.GCNetworkList(context.Background(), n.list, &libcni.GCArgs{})
	})

	k := &killer{t: t, n: n, conf: conf, held: map[netip.Addr]string{}}
	// The kill point: uniform over the time a run takes under this load,
	// learnt as the test goes (an uncontended ADD to start with), so kills
	// land before, during and after the allocation's commit alike.
	k.took = typicalAdd(t, n, conf)
	var done atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ns := kerneltest.NetNS(t)
			for done.Load() < ops && !t.Failed() {
				id := containerID()
				kill := rand.IntN(killOneIn) == 0
				res, killed := k.add(id, ns, kill)
				done.Add(1)
				if killed {
					switch rand.IntN(3) {
					case 0: // abandoned, as a runtime that lost its state: GC's job
						k.abandon(id)
						ns = kerneltest.NetNS(t) // eth0 may be left in the old one
						continue
					case 1: // retried, as kubelet does: ADD must converge
						if res, killed = k.add(id, ns, false); killed {
							t.Error("an ADD that was not to be killed was")
						}
						done.Add(1)
					}
				}
				if res != nil {
					k.hold(id, res)
				}
				// DEL, killed too sometimes, and retried until it succeeds.
				// From its start the address may be free again (a killed
				// DEL may have released it), so it is no longer held.
				k.release(id)
				for {
					killed := k.del(id, ns, rand.IntN(killOneIn) == 0)
					done.Add(1)
					if !killed {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d operations by %d workers in %s (%.0f/s): %d killed, %d abandoned, %d duplicates seen",
		done.Load(), workers, took.Round(time.Millisecond), float64(done.Load())/took.Seconds(), k.killed.Load(), len(k.abandoned), k.dups.Load())
	if t.Failed() {
		return
	}

	v := etcdView(t, endpoint)
	holders(t, v) // no address twice, blocks and allocations agreeing
	allocs := v.Allocations
	for _, a := range allocs {
		if !k.abandoned[a.Handle.ContainerID] {
			t.Errorf("allocation %s left by a pod that was deleted", a.Handle)
		}
	}
	t.Logf("before GC: %d allocations left by abandoned ADDs (a run took %s under load)", len(allocs), k.window().Round(time.Millisecond))

	if err := n.cni.GCNetworkList(t.Context(), n.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if allocs, _ := readEtcd(t, endpoint); len(allocs) != 0 {
		var hs []string
		for _, a := range allocs {
			hs = append(hs, a.Handle.String())
		}
		t.Errorf("after GC etcd still holds %d allocations: %v", len(allocs), hs)
	}
	for id := range k.abandoned {
		p := &pod{id: id, ifName: "eth0"}
		if hostIf := p.hostIf(n); linkExists(t, "", hostIf) || nftMentions(t, hostIf) {
			t.Errorf("GC left the host end %s (or its nftables elements) of abandoned %s", hostIf, id)
		}
	}
}

// killer runs the plugin by exec, kills it when told, and keeps the
// addresses live pods hold, to catch one given twice while held.
type killer struct {
	t      *testing.T
	n      *network
	conf   []byte
	killed atomic.Int64
	dups   atomic.Int64

	mu        sync.Mutex
	took      time.Duration // moving average of runs not killed
	held      map[netip.Addr]string
	owned     map[string][]netip.Addr
	abandoned map[string]bool
}

// add runs ADD; with kill it sends SIGKILL at a random point, and reports
// whether the kill came before the plugin finished.
func (k *killer) add(id, ns string, kill bool) (addrs []netip.Addr, killed bool) {
	out, killed, err := k.run("ADD", id, ns, kill)
	if killed {
		return nil, true
	}
	if err != nil {
		k.t.Errorf("ADD %s: %v: %s", id, err, out)
		return nil, false
	}
	var r struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		k.t.Errorf("ADD %s: result %q: %v", id, out, err)
	}
	for _, ip := range r.IPs {
		if p, err := netip.ParsePrefix(ip.Address); err == nil {
			addrs = append(addrs, p.Addr())
		}
	}
	if len(addrs) != 2 {
		k.t.Errorf("ADD %s gave %v, want an IPv6 and an IPv4 address", id, addrs)
	}
	return addrs, false
}

func (k *killer) del(id, ns string, kill bool) (killed bool) {
	out, killed, err := k.run("DEL", id, ns, kill)
	if !killed && err != nil {
		k.t.Errorf("DEL %s: %v: %s", id, err, out)
	}
	return killed
}

func (k *killer) run(command, id, ns string, kill bool) (out []byte, killed bool, err error) {
	cmd := execCmd("duet", command, id, ns, "eth0", k.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, false, err
	}
	exited := make(chan error, 1)
	started := time.Now()
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if !killed && err == nil {
			k.mu.Lock()
			k.took = (7*k.took + time.Since(started)) / 8
			k.mu.Unlock()
		}
	}()
	if kill {
		select {
		case err = <-exited:
		case <-time.After(rand.N(k.window())):
			_ = cmd.Process.Kill()
			err = <-exited
			if ee, ok := err.(interface{ ExitCode() int }); ok && ee.ExitCode() == -1 {
				k.killed.Add(1)
				return nil, true, nil
			}
		}
	} else {
		err = <-exited
	}
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), false, err
	}
	return stdout.Bytes(), false, nil
}

func (k *killer) window() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.took * 5 / 4
}

// hold records that id holds addrs; an address some other live pod holds
// is a duplicate.
func (k *killer) hold(id string, addrs []netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.owned == nil {
		k.owned = map[string][]netip.Addr{}
	}
	for _, a := range addrs {
		if other, ok := k.held[a]; ok && other != id {
			k.dups.Add(1)
			k.t.Errorf("%s given to %s while %s holds it", a, id, other)
		}
		k.held[a] = id
	}
	k.owned[id] = addrs
}

func (k *killer) release(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range k.owned[id] {
		if k.held[a] == id {
			delete(k.held, a)
		}
	}
	delete(k.owned, id)
}

func (k *killer) abandon(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.abandoned == nil {
		k.abandoned = map[string]bool{}
	}
	k.abandoned[id] = true
}
