package hardening

import (
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// allowedArg is a pod's own opt-out, outside every pool.
var allowedArg = [2]string{"DUET_ALLOWED_SOURCE_PREFIXES", "2001:db8:9::/64,192.0.2.0/24"}

// wantElems checks that ifName has elements in every per-pod set (and the
// opt-out prefixes when asked), or none at all.
func wantElems(t *testing.T, e *env, mode, ifName string, present, allowed bool) {
	t.Helper()
	got := elemsOf(t, e.host, table(mode), ifName)
	if !present {
		if len(got) > 0 {
			t.Errorf("%s's elements are still in table %s duet:\n  %s", ifName, table(mode), strings.Join(got, "\n  "))
		}
		return
	}
	all := strings.Join(got, "\n")
	for _, set := range podSets {
		if strings.HasPrefix(set, "pod_prefixes") && !allowed {
			continue // only allowedSourcePrefixes go there
		}
		if !strings.Contains(all, set+": ") {
			t.Errorf("set %s lacks an element for %s; it has:\n%s", set, ifName, all)
		}
	}
	if allowed && (!strings.Contains(all, "2001:db8:9::") || !strings.Contains(all, "192.0.2.0")) {
		t.Errorf("%s's DUET_ALLOWED_SOURCE_PREFIXES are not in its sets:\n%s", ifName, all)
	}
}

func hostHasLink(t *testing.T, e *env, name string) bool {
	t.Helper()
	return strings.Contains(e.host.ip(t, "-o", "link", "show"), ": "+name+"@")
}

// DEL removes exactly the pod's elements (with its CNI_ARGS prefixes), is
// idempotent, and works when the runtime deleted the namespace first.
func TestDelRemovesElements(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			a := e.add(t, nw, allowedArg)
			b := e.add(t, nw)
			pods := strings.Join(setElems(t, e.host, table(mode), "pod_macs"), " ")
			if !strings.Contains(pods, a.HostIf) || !strings.Contains(pods, b.HostIf) {
				t.Fatalf("nft -j list set %s duet pod_macs: %s; want %s and %s", table(mode), pods, a.HostIf, b.HostIf)
			}
			wantElems(t, e, mode, a.HostIf, true, true)
			for i := range 2 {
				if err := e.del(t, nw, a); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
				wantElems(t, e, mode, a.HostIf, false, false)
				wantElems(t, e, mode, b.HostIf, true, false)
			}
			// The runtime removed the namespace first.
			b.NS.h.Close()
			b.NS.h = nil
			kerneltest.Run(t, "ip", "netns", "del", b.NS.Name)
			if err := e.del(t, nw, b); err != nil {
				t.Fatalf("DEL with the namespace gone: %v", err)
			}
			wantElems(t, e, mode, b.HostIf, false, false)
			if hostHasLink(t, e, b.HostIf) {
				t.Errorf("host end %s is still there", b.HostIf)
			}
		})
	}
}

// A failed ADD removes the elements it installed before creating the
// interface.
func TestFailedAddRemovesElements(t *testing.T) {
	for _, mode := range modes {
		for _, taken := range []string{"pod end", "host end"} {
			t.Run(mode+"/"+taken+" name taken", func(t *testing.T) {
				e := newEnv(t)
				nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
				podNS := newNetNS(t, "pod")
				if taken == "pod end" {
					podNS.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
				} else {
					e.host.ip(t, "link", "add", hostIfName(nw, podNS), "type", "veth", "peer", "name", "dhpeer"+token)
				}
				p, err := e.tryAdd(t, nw, podNS, allowedArg)
				if err == nil || !strings.Contains(err.Error(), "already") {
					t.Fatalf("ADD with the %s's name taken: got %v, want an \"already exists\" error", taken, err)
				}
				if !hasTable(t, e.host, table(mode)) {
					t.Fatalf("no table %s duet: the ADD failed before installing protections, so this proves nothing", table(mode))
				}
				wantElems(t, e, mode, p.HostIf, false, false)
			})
		}
	}
}

// GC removes the elements of every attachment it frees, as a runtime using
// libcni issues it and as the CNI spec writes it.
func TestGCRemovesElements(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode+"/libcni", func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			a, b := e.add(t, nw), e.add(t, nw)
			if err := e.gcLibcni(t, nw, b); err != nil {
				t.Errorf("libcni GCNetworkList: %v", err)
			}
			wantElems(t, e, mode, a.HostIf, false, false)
			wantElems(t, e, mode, b.HostIf, true, false)
		})
		t.Run(mode+"/spec", func(t *testing.T) {
			e := newEnv(t)
			nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, nil)
			a, b := e.add(t, nw, allowedArg), e.add(t, nw)
			if err := e.gcSpec(t, nw, b); err != nil {
				t.Fatalf("GC: %v", err)
			}
			if hostHasLink(t, e, a.HostIf) {
				t.Errorf("GC left %s's host end", a.ID)
			}
			wantElems(t, e, mode, a.HostIf, false, false)
			wantElems(t, e, mode, b.HostIf, true, false)
		})
	}
}

// Allowed source prefixes that cover the pod's own addresses (an appliance
// network allowed to use its whole pool) are a valid opt-out: ADD and DEL
// work.
func TestAllowedPrefixCoveringOwnAddress(t *testing.T) {
	for _, mode := range modes {
		for _, via := range []string{"config", "CNI_ARGS"} {
			t.Run(mode+"/"+via, func(t *testing.T) {
				e := newEnv(t)
				var extra map[string]any
				var args [][2]string
				if via == "config" {
					extra = map[string]any{"allowedSourcePrefixes": []string{e.ula(), e.private4()}}
				} else {
					args = append(args, [2]string{"DUET_ALLOWED_SOURCE_PREFIXES", e.ula() + "," + e.private4()})
				}
				nw := e.network(t, mode, "dual", []string{e.ula(), e.private4()}, extra)
				p, err := e.tryAdd(t, nw, newNetNS(t, "pod"), args...)
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if err := e.del(t, nw, p); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				wantElems(t, e, mode, p.HostIf, false, false)
			})
		}
	}
}
