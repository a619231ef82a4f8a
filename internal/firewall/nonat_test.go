package firewall

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// elementLister is what peerKeys reads through: knftables' fake, or nft.
type elementLister interface {
	ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error)
}

// peerKeys lists the peer sets' elements as duetd does, for PeerPools.
func peerKeys(t *testing.T, l elementLister) []string {
	t.Helper()
	var out []string
	for _, name := range PeerPoolSets {
		els, err := l.ListElements(context.Background(), "set", name)
		if err != nil && !knftables.IsNotFound(err) {
			t.Fatalf("listing %s: %v", name, err)
		}
		for _, e := range els {
			out = append(out, strings.Join(e.Key, " . "))
		}
	}
	return out
}

func TestCanonical(t *testing.T) {
	got := canonical(prefixes("fd00:10:244:2::/64", "10.244.2.0/24", "fd00:10:244:2::/64", "fd00:10:244:2::/80", "fd00:10:244:1::/64"))
	want := prefixes("10.244.2.0/24", "fd00:10:244:1::/64", "fd00:10:244:2::/64")
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestPeerPoolsScript: on a table the plugin wrote, the peer sets alone
// are written (flushed, then filled): no chain is touched, no pool or
// NAT element of the plugin's, and the plugin's markers stay, so its fast
// path holds. A second pass has nothing to do; a node that goes leaves
// the sets with it.
func TestPeerPoolsScript(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, Table)
	own := []Pool{{CIDR: netip.MustParsePrefix("fd00:10:244:1::/64"), NAT: true}, {CIDR: netip.MustParsePrefix("10.244.1.0/24"), NAT: true}}
	run(t, fake, func(t *tx) error { return addPod(t, pod1, own) })
	before := fake.Dump()
	want := prefixes("fd00:10:244:1::/64", "fd00:10:244:2::/64", "10.244.1.0/24", "10.244.2.0/24")
	set, changed, err := PeerPools(peerKeys(t, fake), want)
	if err != nil || !changed || len(set) != 4 {
		t.Fatal(set, changed, err)
	}
	script := PeerPoolsScript(set)
	var elements []string
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		switch {
		case strings.HasPrefix(line, "add element"):
			elements = append(elements, line)
		case line == "add table inet duet", strings.HasPrefix(line, "add set inet duet peer_pools"), strings.HasPrefix(line, "flush set inet duet peer_pools"):
		default:
			t.Errorf("script line %q: only the table, the peer sets and their elements may be touched", line)
		}
	}
	wantEls := []string{"add element inet duet peer_pools4 { 10.244.1.0/24 }", "add element inet duet peer_pools4 { 10.244.2.0/24 }",
		"add element inet duet peer_pools6 { fd00:10:244:1::/64 }", "add element inet duet peer_pools6 { fd00:10:244:2::/64 }"}
	if !slices.Equal(elements, wantEls) {
		t.Errorf("elements %q, want %q", elements, wantEls)
	}
	// Into the fake: the same script.
	write := func(ps []netip.Prefix) {
		run(t, fake, func(t *tx) error { *t = *peerPools(ps); return nil })
	}
	write(set)
	after := fake.Dump()
	if !strings.Contains(after, "rules_"+rulesVersion) || strings.Count(after, "add rule") != strings.Count(before, "add rule") {
		t.Errorf("table changed beyond the peer sets:\n%s", after)
	}
	if _, changed, err := PeerPools(peerKeys(t, fake), want); err != nil || changed {
		t.Errorf("second pass: changed %v, %v; want nothing to do", changed, err)
	}
	less := prefixes("fd00:10:244:1::/64", "10.244.1.0/24")
	set, changed, err = PeerPools(peerKeys(t, fake), less)
	if err != nil || !changed || !slices.Equal(set, canonical(less)) {
		t.Fatalf("a node gone: %v %v %v", set, changed, err)
	}
	write(set)
	if got := fake.Dump(); strings.Contains(got, "fd00:10:244:2::/64") {
		t.Errorf("the gone node's range is still there:\n%s", got)
	}
}

// TestPeerPoolsNoTable: before the first pod there is no table; the
// script makes it with the two peer sets only (no marker, so the
// plugin's first ADD writes the whole table).
func TestPeerPoolsNoTable(t *testing.T) {
	set, changed, err := PeerPools(peerKeys(t, knftables.NewFake(knftables.InetFamily, Table)), prefixes("fd00:10:244:2::/64"))
	if err != nil || !changed || len(set) != 1 {
		t.Fatal(set, changed, err)
	}
	script := PeerPoolsScript(set)
	for _, want := range []string{"add table inet duet", "add set inet duet peer_pools6", "add set inet duet peer_pools4", "add element inet duet peer_pools6 { fd00:10:244:2::/64 }"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "rules_") || strings.Contains(script, "chain") || strings.Contains(script, "nat6") || strings.Contains(script, " pools6") {
		t.Errorf("script does more than the peer sets:\n%s", script)
	}
}

func TestPeerPoolsBadElement(t *testing.T) {
	if _, _, err := PeerPools([]string{"fd00:10:244:2::/64", "dt1"}, prefixes("fd00::/64")); err == nil || !strings.Contains(err.Error(), "peer_pools6") || !strings.Contains(err.Error(), `"dt1"`) {
		t.Errorf("got %v, want the set and the element named", err)
	}
}
