// 64 ADDs at once on one network, as a runtime starting a node's pods
// does, then 64 DELs at once.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestConcurrentAddDel(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	const count, rangeN = 64, 0x10
	n := duetNetwork(t, map[string]any{"pools": testPools("dual", rangeN)})
	pods := make([]*pod, count)
	for i := range pods {
		pods[i] = n.newPod(t)
	}

	start := time.Now()
	errs := parallel(pods, n.tryAdd)
	t.Logf("%d concurrent ADDs took %s", count, time.Since(start))
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	v := readStore(t, n.store)
	held := holders(t, v)
	if len(v.Allocations) != count {
		t.Errorf("store holds %d allocations, want %d", len(v.Allocations), count)
	}
	for _, v6 := range []bool{true, false} {
		seen := map[netip.Addr]string{}
		for _, p := range pods {
			addr, ok := p.addr(v6)
			if !ok {
				t.Errorf("pod %s has no %s address", p.id, famName(v6))
				continue
			}
			if other, dup := seen[addr]; dup {
				t.Errorf("%s given to both %s and %s", addr, other, p.id)
			}
			seen[addr] = p.id
			if want := "handles/" + n.name + "/" + p.id + "/eth0"; held[addr] != want {
				t.Errorf("store says %s is held by %q, want %q", addr, held[addr], want)
			}
		}
		if len(seen) != count {
			t.Errorf("%d distinct %s addresses, want %d", len(seen), famName(v6), count)
		}
	}
	for _, p := range pods {
		if !linkExists(t, "", p.hostIf(n)) {
			t.Errorf("host end %s of %s missing", p.hostIf(n), p.id)
		}
	}
	// The first and the last pod, probably in different blocks, talk.
	connectivity(t, []*pod{pods[0], pods[count-1]}, nil, []bool{true, false})

	start = time.Now()
	errs = parallel(pods, func(p *pod) error { return n.cni.DelNetworkList(t.Context(), n.list, p.rt()) })
	t.Logf("%d concurrent DELs took %s", count, time.Since(start))
	for _, err := range errs {
		t.Error(err)
	}
	for _, p := range pods {
		assertGone(t, n, p)
	}
	v = readStore(t, n.store)
	if len(v.Allocations) != 0 {
		t.Errorf("allocations left after DEL: %d", len(v.Allocations))
	}
	for _, b := range v.Blocks {
		if len(b.Allocs) != 0 {
			t.Errorf("block %s still holds %v", b.CIDR, b.Allocs)
		}
	}
}

// parallel runs fn on every pod at once and returns the errors.
func parallel(pods []*pod, fn func(*pod) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	for i, p := range pods {
		wg.Go(func() { errs[i] = fn(p) })
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
