package hardening

import (
	"context"
	"regexp"
	"strings"
	"testing"

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
