package hardening

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
)

var counters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// tables is duet's part of the host's ruleset, counters aside (a pod's
// router solicitations count as drops).
func tables(t *testing.T, e *env) string {
	t.Helper()
	var out []string
	for _, fam := range []string{"inet", "bridge"} {
		if hasTable(t, e.host, fam) {
			out = append(out, e.host.exec(t, "nft", "list", "table", fam, "duet"))
		}
	}
	return counters.ReplaceAllString(strings.Join(out, "\n"), "counter")
}

// releaseElsewhere frees p's allocation as `duetctl node remove --force`
// or another node's GC would: in the store, behind the plugin's back.
func releaseElsewhere(t *testing.T, e *env, nw *network, p *pod) {
	t.Helper()
	s, err := bolt.Open(nw.plugin["datastore"].(map[string]any)["path"].(string), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		_, ok, err := ipam.Release(tx, ipam.Handle{Network: nw.Name, ContainerID: p.ID, IfName: p.IfName})
		if err == nil && !ok {
			t.Errorf("%s had no allocation to release", p.ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestTableAsBeforeAfterEveryDel: after each way a pod can go (DEL; DEL
// after its allocation was freed elsewhere; DEL with its namespace gone;
// a pod on a network with pools of its own; a DEL that never came, left
// to GC; a failed ADD), duet's tables are exactly as they were before
// the pod's ADD: no element keyed by its interface, and no pool's
// elements that no remaining pod's network has.
func TestTableAsBeforeAfterEveryDel(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			keep := e.add(t, nw)
			before := tables(t, e)
			if !strings.Contains(before, keep.HostIf) {
				t.Fatalf("the first pod's elements are not in the tables:\n%s", before)
			}
			same := func(what string) {
				t.Helper()
				if got := tables(t, e); got != before {
					t.Errorf("%s: the tables differ from before the pod's ADD.\nbefore:\n%s\nafter:\n%s", what, before, got)
				}
			}

			p := e.add(t, nw, allowedArg)
			if err := e.del(t, nw, p); err != nil {
				t.Fatal(err)
			}
			same("DEL")

			p = e.add(t, nw)
			releaseElsewhere(t, e, nw, p)
			if err := e.del(t, nw, p); err != nil {
				t.Fatal(err)
			}
			same("DEL after the allocation was freed elsewhere")

			p = e.add(t, nw)
			p.NS.h.Close()
			p.NS.h = nil
			kerneltest.Run(t, "ip", "netns", "del", p.NS.Name)
			if err := e.del(t, nw, p); err != nil {
				t.Fatal(err)
			}
			same("DEL with the namespace gone")

			other := e.network(t, mode, "dual", []string{"fd00:4b:1::/48", "10.248.1.0/24"}, nil)
			p = e.add(t, other)
			if got := tables(t, e); !strings.Contains(got, "fd00:4b:1::/48") {
				t.Fatalf("the second network's pool is not in the tables:\n%s", got)
			}
			if err := e.del(t, other, p); err != nil {
				t.Fatal(err)
			}
			same("DEL of the last pod of a network with other pools")

			// A DEL that never came: the pod's interface and allocation
			// are gone (the runtime lost it), its elements are not. GC,
			// which keeps the first pod, removes them.
			p = e.add(t, nw)
			releaseElsewhere(t, e, nw, p)
			e.host.ip(t, "link", "del", p.HostIf)
			if err := e.gcSpec(t, nw, keep); err != nil {
				t.Fatal(err)
			}
			same("GC after a DEL that never came")
			if got := tables(t, e); !strings.Contains(got, keep.HostIf) {
				t.Fatalf("GC removed the elements of a live pod:\n%s", got)
			}

			podNS := newNetNS(t, "pod")
			podNS.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
			if _, err := e.tryAdd(t, nw, podNS); err == nil {
				t.Fatal("ADD into a namespace whose eth0 is taken worked")
			}
			same("a failed ADD")
		})
	}
}

// TestFailsClosedWhileItsInterfaceGoes: DEL removes a pod's elements while
// its interface is being deleted, at once. In between, the interface is
// still there and still in duet's interface group, so what the pod sends,
// even from its own address and MAC, is dropped rather than let through
// unchecked. The window is made here by removing the elements (as DEL's
// own code does) and not the interface.
func TestFailsClosedWhileItsInterfaceGoes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			a, c := e.add(t, nw), e.add(t, nw)
			fams := []firewall.Family{firewall.Inet}
			if mode == bridge {
				fams = append(fams, firewall.Bridge)
			}
			e.host.do(t, func() error {
				have, err := cni.KernelFirewall.List(firewall.ResidueSets(fams...))
				if err != nil {
					return err
				}
				del, _ := firewall.Residue(have, func(name string) bool { return name == a.HostIf })
				if len(del.Elements) == 0 {
					t.Fatalf("no elements of %s to remove", a.HostIf)
				}
				return cni.KernelFirewall.ApplyFast(del)
			})
			wantElems(t, e, mode, a.HostIf, false, false)
			before := dropCount(t, e.host, table(mode), "duet: source MAC is not the pod's")
			var sent []probe
			for _, fam := range []int{6, 4} {
				for _, tg := range spoofTargets(t, e, mode, a, c, fam, 7100+fam) {
					what := fmt.Sprintf("IPv%d UDP from a's own address and MAC to %s", fam, tg.name)
					h := frameHdr{SrcMAC: a.MAC, DstMAC: tg.mac, Src: a.addr(t, fam), Dst: tg.ip}
					p := probe{what, a.addr(t, fam), udpFrame(h, 40000, uint16(7100+fam), what), tg.l}
					sendFrames(t, a.NS, a.IfName, p.frame)
					sent = append(sent, p)
				}
			}
			time.Sleep(silence)
			for _, p := range sent {
				for _, got := range p.to.drain() {
					t.Errorf("%s received %q from %s: a pod whose elements are gone must send nothing", p.to.Where, got.Payload, got.From)
				}
			}
			if got := dropCount(t, e.host, table(mode), "duet: source MAC is not the pod's") - before; got < uint64(len(sent)) {
				t.Errorf("the MAC check dropped %d packets, want at least %d", got, len(sent))
			}
			// The same frames from c, whose elements are there, arrive.
			for _, fam := range []int{6, 4} {
				l := listen(t, e.host, fam, 7200+fam, false)
				what := fmt.Sprintf("IPv%d control from c", fam)
				h := frameHdr{SrcMAC: c.MAC, DstMAC: c.GwMAC, Src: c.addr(t, fam), Dst: hostAddr(fam)}
				sendFrames(t, c.NS, c.IfName, udpFrame(h, 40000, uint16(7200+fam), what))
				l.want(t, 2*time.Second, what, "control: "+what)
			}
		})
	}
}

// TestParallelDelsLeaveNothing: DELs at once share their removals (one
// queued batch per kernel transaction); every pod's elements still go,
// the queue is left empty, and a removal queued by a DEL that died never
// takes the elements of a later pod that reuses the interface name.
func TestParallelDelsLeaveNothing(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			keep := e.add(t, nw)
			before := tables(t, e)
			var pods []*pod
			for range 8 {
				pods = append(pods, e.add(t, nw))
			}
			errs := make(chan error, len(pods))
			for _, p := range pods {
				go func() { errs <- e.del(t, nw, p) }()
			}
			for range pods {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if got := tables(t, e); got != before {
				t.Errorf("after 8 parallel DELs the tables differ from before.\nbefore:\n%s\nafter:\n%s", before, got)
			}
			var dir string
			e.host.do(t, func() error { dir = cni.QueueDir(); return nil })
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d removals left queued in %s", len(ents), dir)
			}

			// A DEL that queued its removal and died: the runtime reuses
			// the name for a new ADD, which takes it off the queue.
			podNS := newNetNS(t, "pod")
			if err := os.WriteFile(filepath.Join(dir, hostIfName(nw, podNS)), []byte("inet"), 0o600); err != nil {
				t.Fatal(err)
			}
			reused, err := e.tryAdd(t, nw, podNS)
			if err != nil {
				t.Fatal(err)
			}
			other := e.add(t, nw)
			if err := e.del(t, nw, other); err != nil {
				t.Fatal(err)
			}
			if got := tables(t, e); !strings.Contains(got, reused.HostIf) || !strings.Contains(got, keep.HostIf) {
				t.Errorf("another pod's DEL removed the elements of %s, whose name a dead DEL had queued:\n%s", reused.HostIf, got)
			}
		})
	}
}
