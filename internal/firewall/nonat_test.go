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

func TestMissingPools(t *testing.T) {
	for _, tc := range []struct {
		name       string
		have, want []netip.Prefix
		add        []netip.Prefix
		skipped    int
	}{
		{"empty set", nil, prefixes("fd00:10:244:2::/64", "10.244.2.0/24"), prefixes("fd00:10:244:2::/64", "10.244.2.0/24"), 0},
		{"the plugin's own pool is there", prefixes("fd00:10:244:1::/64", "10.244.1.0/24"),
			prefixes("fd00:10:244:1::/64", "fd00:10:244:2::/64", "10.244.1.0/24", "10.244.2.0/24"), prefixes("fd00:10:244:2::/64", "10.244.2.0/24"), 0},
		{"inside a wider pool", prefixes("fd00:10:244::/56"), prefixes("fd00:10:244:2::/64"), nil, 0},
		{"duplicates and nested in want", nil, prefixes("fd00:10:244:2::/64", "fd00:10:244:2::/64", "fd00:10:244:2::/80"), prefixes("fd00:10:244:2::/64"), 0},
		{"wider than an element: left alone", prefixes("fd00:10:244:2::/64"), prefixes("fd00:10:244::/56"), nil, 1},
	} {
		add, skipped := missingPools(tc.have, tc.want)
		if !slices.Equal(add, tc.add) || len(skipped) != tc.skipped {
			t.Errorf("%s: add %v skipped %v, want %v and %d skipped", tc.name, add, skipped, tc.add, tc.skipped)
		}
	}
}

// TestNoNATPoolsScript: on a table the plugin wrote, only other nodes'
// ranges are added, to pools6/pools4 alone: no chain is touched, no NAT
// element added, and the plugin's marker stays, so its fast path holds.
func TestNoNATPoolsScript(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, Table)
	own := []Pool{{CIDR: netip.MustParsePrefix("fd00:10:244:1::/64"), NAT: true}, {CIDR: netip.MustParsePrefix("10.244.1.0/24"), NAT: true}}
	run(t, fake, func(tx *knftables.Transaction) error { return AddPod(tx, pod1, own) })
	before := fake.Dump()
	want := prefixes("fd00:10:244:1::/64", "fd00:10:244:2::/64", "10.244.1.0/24", "10.244.2.0/24")
	add, skipped, err := NoNATPools(ctx, fake, want)
	if err != nil || len(skipped) > 0 {
		t.Fatal(err, skipped)
	}
	script := NoNATPoolsScript(add)
	var elements []string
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		switch {
		case strings.HasPrefix(line, "add element"):
			elements = append(elements, line)
		case line == "add table inet duet", strings.HasPrefix(line, "add set inet duet pools"):
		default:
			t.Errorf("script line %q: only the table, the pools sets and their elements may be touched", line)
		}
	}
	wantEls := []string{"add element inet duet pools6 { fd00:10:244:2::/64 }", "add element inet duet pools4 { 10.244.2.0/24 }"}
	if !slices.Equal(elements, wantEls) {
		t.Errorf("elements %q, want %q", elements, wantEls)
	}
	// Into the fake, through the same elements.
	run(t, fake, func(tx *knftables.Transaction) error {
		for _, p := range prefixes("fd00:10:244:2::/64", "10.244.2.0/24") {
			for _, e := range poolElements(noNAT([]netip.Prefix{p})) {
				tx.Add(e)
			}
		}
		return nil
	})
	after := fake.Dump()
	if !strings.Contains(after, "rules_"+rulesVersion) || strings.Count(after, "add rule") != strings.Count(before, "add rule") {
		t.Errorf("table changed beyond the pools sets:\n%s", after)
	}
	if again, _, err := NoNATPools(ctx, fake, want); err != nil || len(again) != 0 {
		t.Errorf("second pass: %v %v, want nothing to do", again, err)
	}
}

// TestNoNATPoolsNoTable: before the first pod there is no table; the
// script makes it with the two sets only (no marker, so the plugin's
// first ADD writes the whole table).
func TestNoNATPoolsNoTable(t *testing.T) {
	add, _, err := NoNATPools(context.Background(), knftables.NewFake(knftables.InetFamily, Table), prefixes("fd00:10:244:2::/64"))
	if err != nil || len(add) != 1 {
		t.Fatal(add, err)
	}
	script := NoNATPoolsScript(add)
	for _, want := range []string{"add table inet duet", "add set inet duet pools6", "add set inet duet pools4", "add element inet duet pools6 { fd00:10:244:2::/64 }"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "rules_") || strings.Contains(script, "chain") || strings.Contains(script, "nat6") {
		t.Errorf("script does more than the pools sets:\n%s", script)
	}
}

type failingLister struct{}

func (failingLister) ListRules(context.Context, string) ([]*knftables.Rule, error) { return nil, nil }
func (failingLister) ListElements(context.Context, string, string) ([]*knftables.Element, error) {
	return nil, fmt.Errorf("nft: permission denied")
}

func TestNoNATPoolsListError(t *testing.T) {
	if _, _, err := NoNATPools(context.Background(), failingLister{}, prefixes("fd00::/64")); err == nil || !strings.Contains(err.Error(), "pools6") {
		t.Errorf("got %v", err)
	}
}
