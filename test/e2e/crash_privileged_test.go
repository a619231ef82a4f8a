// ADDs killed with SIGKILL at random points, as a runtime timing out or an
// OOM kill would: the store never holds an address twice, a retried ADD
// works, and CNI GC frees what the killed ones left.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestKilledAdds(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	const iterations, fresh, rangeN = 30, 3, 0x11
	n := duetNetwork(t, map[string]any{"pools": testPools("dual", rangeN)})
	conf := jsonBytes(t, n.conf)

	typical := typicalAdd(t, n, conf)
	t.Logf("a typical ADD takes %s", typical)

	var killed, kept []*pod
	for i := range iterations {
		p := n.newPod(t)
		kerneltest.DeleteLinkOnCleanup(t, p.hostIf(n))
		cmd := execCmd("duet", "ADD", p.id, p.path, p.ifName, conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(typical))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		killed = append(killed, p)
		// The runtime retries some of them: ADD must converge on whatever
		// the killed one left.
		if i%5 == 0 {
			if err := n.tryAdd(p); err != nil {
				t.Errorf("ADD retried after a kill: %v", err)
				continue
			}
			kept = append(kept, p)
		}
	}
	for range fresh {
		p := n.newPod(t)
		n.add(t, p)
		kept = append(kept, p)
	}

	v := readStore(t, n.store)
	holders(t, v)
	t.Logf("after %d killed ADDs: %d allocations, %d kept", iterations, len(v.Allocations), len(kept))
	for _, p := range kept {
		if _, ok := v.allocation(p.handle(n)); !ok {
			t.Errorf("kept pod %s has no allocation", p.id)
		}
	}
	retried, newest := kept[0], kept[len(kept)-1]
	connectivity(t, []*pod{retried, newest}, nil, []bool{true, false})

	leftover := 0
	for _, p := range killed {
		if !slices.Contains(kept, p) && linkExists(t, "", p.hostIf(n)) {
			leftover++
		}
	}
	t.Logf("before GC: %d host ends left by killed ADDs", leftover)
	gc(t, n, kept)

	v = readStore(t, n.store)
	holders(t, v)
	var want, got []string
	for _, p := range kept {
		want = append(want, p.handle(n).String())
	}
	for _, a := range v.Allocations {
		got = append(got, a.Handle.String())
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("after GC the store holds\n%v\nwant exactly the kept ones\n%v", got, want)
	}
	for _, p := range killed {
		if slices.Contains(kept, p) {
			continue
		}
		if hostIf := p.hostIf(n); linkExists(t, "", hostIf) {
			t.Errorf("GC left the host end %s of killed %s", hostIf, p.id)
		} else if nftMentions(t, hostIf) {
			t.Errorf("GC left nftables elements of killed %s (%s)", p.id, hostIf)
		}
	}
	connectivity(t, []*pod{retried, newest}, nil, []bool{true, false})
}

// typicalAdd measures a few uninterrupted ADDs by exec, and removes them.
func typicalAdd(t *testing.T, n *network, conf []byte) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range 3 {
		p := n.newPod(t)
		start := time.Now()
		if out, err := execCmd("duet", "ADD", p.id, p.path, p.ifName, conf).CombinedOutput(); err != nil {
			t.Fatalf("ADD: %v: %s", err, out)
		}
		ds = append(ds, time.Since(start))
		if out, err := execCmd("duet", "DEL", p.id, p.path, p.ifName, conf).CombinedOutput(); err != nil {
			t.Fatalf("DEL: %v: %s", err, out)
		}
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// gc runs CNI GC through libcni, with the kept pods as valid attachments.
// libcni (>= 1.2) puts the valid attachments under both
// "cni.dev/valid-attachments" and the misspelt "cni.dev/attachments" of
// the 1.1.0 spec text, so a plugin must accept both. When that fails, the
// GC is run by exec with only the first key, so the rest of the test still
// says whether GC itself is right.
func gc(t *testing.T, n *network, kept []*pod) {
	t.Helper()
	var valid []types.GCAttachment
	for _, p := range kept {
		valid = append(valid, types.GCAttachment{ContainerID: p.id, IfName: p.ifName})
	}
	err := n.cni.GCNetworkList(t.Context(), n.list, &libcni.GCArgs{ValidAttachments: valid})
	if err == nil {
		return
	}
	t.Errorf("CNI GC through libcni (it sends the valid attachments as both \"cni.dev/valid-attachments\" and \"cni.dev/attachments\"): %v", err)
	conf := maps.Clone(n.conf)
	conf["cni.dev/valid-attachments"] = valid
	cmd := execCmd("duet", "GC", "", "", "", jsonBytes(t, conf))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GC by exec: %v: %s", err, out)
	}
}
