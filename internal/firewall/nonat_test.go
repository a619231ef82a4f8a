package firewall

import (
	"context"
	"fmt"
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
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, Table)
	own := []Pool{{CIDR: netip.MustParsePrefix("fd00:10:244:1::/64"), NAT: true}, {CIDR: netip.MustParsePrefix("10.244.1.0/24"), NAT: true}}
	run(t, fake, func(tx *knftables.Transaction) error { return AddPod(tx, pod1, own) })
	before := fake.Dump()
	want := prefixes("fd00:10:244:1::/64", "fd00:10:244:2::/64", "10.244.1.0/24", "10.244.2.0/24")
	set, changed, err := PeerPools(ctx, fake, want)
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
	// Into the fake, which does not parse scripts: the same elements.
	write := func(ps []netip.Prefix) {
		run(t, fake, func(tx *knftables.Transaction) error {
			for _, s := range []string{setPeers6, setPeers4} {
				tx.Flush(&knftables.Set{Family: knftables.InetFamily, Table: Table, Name: s})
			}
			for _, p := range ps {
				s := setPeers4
				if p.Addr().Is6() {
					s = setPeers6
				}
				tx.Add(&knftables.Element{Family: knftables.InetFamily, Table: Table, Set: s, Key: []string{p.String()}})
			}
			return nil
		})
	}
	write(set)
	after := fake.Dump()
	if !strings.Contains(after, "rules_"+rulesVersion) || strings.Count(after, "add rule") != strings.Count(before, "add rule") {
		t.Errorf("table changed beyond the peer sets:\n%s", after)
	}
	if _, changed, err := PeerPools(ctx, fake, want); err != nil || changed {
		t.Errorf("second pass: changed %v, %v; want nothing to do", changed, err)
	}
	less := prefixes("fd00:10:244:1::/64", "10.244.1.0/24")
	set, changed, err = PeerPools(ctx, fake, less)
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
	set, changed, err := PeerPools(context.Background(), knftables.NewFake(knftables.InetFamily, Table), prefixes("fd00:10:244:2::/64"))
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

type failingLister struct{}

func (failingLister) ListRules(context.Context, string) ([]*knftables.Rule, error) { return nil, nil }
func (failingLister) ListElements(context.Context, string, string) ([]*knftables.Element, error) {
	return nil, fmt.Errorf("nft: permission denied")
}

func TestPeerPoolsListError(t *testing.T) {
	if _, _, err := PeerPools(context.Background(), failingLister{}, prefixes("fd00::/64")); err == nil || !strings.Contains(err.Error(), "peer_pools6") {
		t.Errorf("got %v", err)
	}
}
