package firewall

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

var (
	mac1 = net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	pod1 = Pod{HostIf: "dt1", MAC: mac1, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("10.7.0.2")}}
	pool = []Pool{{CIDR: netip.MustParsePrefix("fd00:1::/48"), NAT: true}, {CIDR: netip.MustParsePrefix("2001:db8::/48"), NAT: false}, {CIDR: netip.MustParsePrefix("10.7.0.0/16"), NAT: true}}
)

func TestLinkLocal(t *testing.T) {
	ll, ok := LinkLocal(mac1)
	if !ok || ll.String() != "fe80::11:22ff:fe33:4455" {
		t.Fatalf("got %v", ll)
	}
}

func TestAddPodRenders(t *testing.T) {
	fake := knftables.NewFake("", "")
	run(t, fake, func(t *tx) error { return addPod(t, pod1, pool) })
	dump := fake.Dump()
	for _, want := range []string{
		`iifgroup 53479 jump from-pod`,
		`add element inet duet pod_pools6 { dt1 . fd00:1::/48 }`,
		`add element inet duet pod_macs { dt1 . 02:11:22:33:44:55 }`,
		`add element inet duet pod_addrs6 { dt1 . fd00:1::2 }`,
		`add element inet duet pod_addrs6 { dt1 . fe80::11:22ff:fe33:4455 }`,
		`add element inet duet pod_addrs4 { dt1 . 10.7.0.2 }`,
		`add element inet duet nat6 { fd00:1::/48 }`,
		`add element inet duet pools6 { 2001:db8::/48 }`,
		`add element inet duet nat4 { 10.7.0.0/16 }`,
		`icmpv6 type { nd-router-advert, nd-redirect } counter drop`,
		`type filter hook prerouting priority -300`,
		`type nat hook postrouting priority 100`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}
	// A global IPv6 pool is routed, never masqueraded.
	if strings.Contains(dump, "nat6 { 2001:db8::/48 }") {
		t.Errorf("global pool in nat6:\n%s", dump)
	}
	if strings.Contains(dump, "table bridge") {
		t.Errorf("a routed pod needs no bridge table:\n%s", dump)
	}
}

func TestSyncTwiceSameResult(t *testing.T) {
	for _, bridged := range []bool{false, true} {
		fake := knftables.NewFake("", "")
		p := pod1
		p.Bridged = bridged
		run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
		first := fake.Dump()
		run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
		if second := fake.Dump(); second != first {
			t.Fatalf("bridged=%v: second sync changed the ruleset:\n%s\n---\n%s", bridged, first, second)
		}
	}
}

func TestRemovePodIdempotent(t *testing.T) {
	for _, bridged := range []bool{false, true} {
		fake := knftables.NewFake("", "")
		p := pod1
		p.Bridged = bridged
		other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::3")}, Bridged: bridged}
		run(t, fake, func(t *tx) error { return addPod(t, other, pool) })
		empty := fake.Dump()
		run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
		for i := 0; i < 2; i++ { // DEL twice
			run(t, fake, func(t *tx) error { return removePod(t, p, pool) })
		}
		if got := fake.Dump(); got != empty {
			t.Fatalf("bridged=%v: remove left a different ruleset:\n%s\n---\n%s", bridged, empty, got)
		}
	}
}

func TestBridgedPodUsesBridgeTable(t *testing.T) {
	fake := knftables.NewFake("", "")
	p := pod1
	p.Bridged = true
	p.AllowedSources = []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/64")}
	run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
	dump := fake.Dump()
	for _, want := range []string{
		`add element bridge duet pod_addrs4 { dt1 . 10.7.0.2 }`,
		`add element bridge duet pod_prefixes6 { dt1 . 2001:db8:99::/64 }`,
		`ether type arp iifname . arp saddr ip != @pod_addrs4 iifname . arp saddr ip != @pod_prefixes4 counter drop`,
		`add element inet duet nat4 { 10.7.0.0/16 }`, // NAT is IP-level even for bridged pods
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}
}

// tableReader is a Reader of what a fake holds: its rules' comments, and
// as elements those FastAddPod makes (the kernel's own form), less the
// ones a test deleted.
type tableReader struct {
	fake    *knftables.Fake
	have    []RawElement
	listErr error
}

func (r *tableReader) RuleComments(fam Family, chain string) ([]string, error) {
	c := r.fake.Tables[knftables.Family(fam)][Table].Chains[chain]
	if c == nil {
		return nil, fmt.Errorf("no chain %s", chain)
	}
	var out []string
	for _, rule := range c.Rules {
		out = append(out, *rule.Comment)
	}
	return out, nil
}

func (r *tableReader) List([]RawElement) ([]RawElement, error) { return r.have, r.listErr }

func TestCheckPod(t *testing.T) {
	for _, bridged := range []bool{false, true} {
		p := pod1
		p.Bridged = bridged
		fam := p.family()
		fake := knftables.NewFake("", "")
		run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
		op, err := FastAddPod(p, pool)
		if err != nil {
			t.Fatal(err)
		}
		r := &tableReader{fake: fake, have: op.Elements}
		if err := CheckPod(r, p); err != nil {
			t.Fatalf("bridged=%v: CHECK after ADD: %v", bridged, err)
		}
		// Someone deletes the pod's IPv4 address element: CHECK names it.
		r.have = nil
		for _, e := range op.Elements {
			if e.Set != setAddrs4 {
				r.have = append(r.have, e)
			}
		}
		if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), "dt1 . 10.7.0.2") {
			t.Fatalf("bridged=%v: CHECK without the IPv4 element = %v, want it named", bridged, err)
		}
		// And its link-local address's neighbour-advertisement target.
		r.have = nil
		for _, e := range op.Elements {
			if e.Set != setNDTargets || !strings.HasPrefix(describe(e), "dt1 . fe80::") {
				r.have = append(r.have, e)
			}
		}
		if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), setNDTargets+" lacks dt1 . fe80::11:22ff:fe33:4455") {
			t.Fatalf("bridged=%v: CHECK without the ND target = %v, want it named", bridged, err)
		}
		r.have = op.Elements
		// Someone flushes the chain: CHECK says the table was modified.
		run(t, fake, func(t *tx) error { t.flush(object{kind: "chain", fam: fam, name: chainFromPod}); return nil })
		if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), "modified") {
			t.Fatalf("bridged=%v: got %v", bridged, err)
		}
		// The RA guard's chain, behind the verdict map, is checked too.
		run(t, fake, func(t *tx) error { return addPod(t, p, pool) })
		run(t, fake, func(t *tx) error { t.flush(object{kind: "chain", fam: fam, name: chainICMPv6}); return nil })
		if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), chainICMPv6) {
			t.Fatalf("bridged=%v: CHECK with the RA guard's chain flushed = %v, want it named", bridged, err)
		}
	}
}

func TestFastPathNeedsCurrentTable(t *testing.T) {
	fake := knftables.NewFake("", "")
	script := &tx{}
	if err := addPodElements(script, pod1, pool); err != nil {
		t.Fatal(err)
	}
	if err := fake.Run(context.Background(), knft(fake, script)); err == nil {
		t.Fatal("elements-only ADD succeeded on an empty ruleset; it must fail so the caller writes the table")
	}
	fake = knftables.NewFake("", "") // a failed Run leaves the fake unusable
	run(t, fake, func(t *tx) error { return addPod(t, pod1, pool) })
	run(t, fake, func(t *tx) error { return addPodElements(t, pod1, pool) }) // marks the table
	full := fake.Dump()
	p2 := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 7}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::9")}}
	run(t, fake, func(t *tx) error { return addPodElements(t, p2, pool) })
	run(t, fake, func(t *tx) error { return removePod(t, p2, pool) })
	if got := fake.Dump(); got != full {
		t.Fatalf("fast add then remove changed the table:\n%s\n---\n%s", full, got)
	}
}

// TestResidue: the elements of the gone pod alone go, whatever else the
// sets hold; its network's pools are named, and they are unreferenced
// once no other pod's network has them.
func TestResidue(t *testing.T) {
	other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::3"), netip.MustParseAddr("10.7.0.3")}}
	a, _ := FastAddPod(pod1, pool)
	b, _ := FastAddPod(other, pool)
	have := append(append([]RawElement{}, a.Elements...), b.Elements...)
	del, pools := Residue(have, func(name string) bool { return name == "dt1" })
	if len(del.Elements) != len(a.Elements) {
		t.Fatalf("removes %d elements, want dt1's %d", len(del.Elements), len(a.Elements))
	}
	for _, e := range del.Elements {
		if n, _ := keyIfname(e.Key); n != "dt1" {
			t.Errorf("removes %s's element in %s", n, e.Set)
		}
	}
	if len(pools) != len(pool) {
		t.Fatalf("pools %v, want %v", pools, pool)
	}
	for i, p := range pools {
		if p != pool[i].CIDR {
			t.Errorf("pool %d: %s, want %s", i, p, pool[i].CIDR)
		}
	}
	if left := Unreferenced(b.Elements, pools); len(left) != 0 {
		t.Errorf("dt2's network still has %v", left)
	}
	if left := Unreferenced(nil, pools); len(left) != len(pools) {
		t.Errorf("no pod left, unreferenced %v, want all of %v", left, pools)
	}
	if del, pools := Residue(have, func(string) bool { return false }); len(del.Elements) != 0 || len(pools) != 0 {
		t.Errorf("nothing gone, yet %d elements and pools %v", len(del.Elements), pools)
	}
}
