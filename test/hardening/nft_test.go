package hardening

import (
	"encoding/json"
	"strings"
	"testing"
)

// podSets are the sets of each duet table that hold per-pod elements.
var podSets = []string{"pod_macs", "pod_addrs6", "pod_addrs4", "pod_prefixes6", "pod_prefixes4", "pod_nd_targets"}

// table is the nftables family of duet's table for a mode's pods.
func table(mode string) string {
	if mode == bridge {
		return "bridge"
	}
	return "inet"
}

// nftObjects runs `nft -j list ...` in n and returns its objects.
func nftObjects(t *testing.T, n *netNS, args ...string) []map[string]json.RawMessage {
	t.Helper()
	out := n.exec(t, append([]string{"nft", "-j", "list"}, args...)...)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return doc.Nftables
}

// setElems lists a set's elements, each as its JSON text, e.g. "dt1…" or
// {"concat":["dt1…","02:…"]}.
func setElems(t *testing.T, n *netNS, family, set string) []string {
	t.Helper()
	var out []string
	for _, o := range nftObjects(t, n, "set", family, "duet", set) {
		var s struct {
			Elem []json.RawMessage `json:"elem"`
		}
		if raw, ok := o["set"]; ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			for _, e := range s.Elem {
				out = append(out, string(e))
			}
		}
	}
	return out
}

// elemsOf returns every element of the per-pod sets of family's duet table
// keyed by the host interface ifName.
func elemsOf(t *testing.T, n *netNS, family, ifName string) []string {
	t.Helper()
	var out []string
	for _, set := range podSets {
		for _, e := range setElems(t, n, family, set) {
			if strings.Contains(e, `"`+ifName+`"`) {
				out = append(out, set+": "+e)
			}
		}
	}
	return out
}

// hasTable reports whether n has duet's table of family.
func hasTable(t *testing.T, n *netNS, family string) bool {
	t.Helper()
	for _, o := range nftObjects(t, n, "tables") {
		var tb struct{ Family, Name string }
		if raw, ok := o["table"]; ok && json.Unmarshal(raw, &tb) == nil && tb.Family == family && tb.Name == "duet" {
			return true
		}
	}
	return false
}

// dropCount is the packet counter of the rule with comment in family's
// duet table, chain from-pod.
func dropCount(t *testing.T, n *netNS, family, comment string) uint64 {
	t.Helper()
	// The guards live in from-pod and the chains it jumps to.
	var objs []map[string]json.RawMessage
	for _, chain := range []string{"from-pod", "from-pod-icmpv6", "from-pod-udp"} {
		objs = append(objs, nftObjects(t, n, "chain", family, "duet", chain)...)
	}
	for _, o := range objs {
		raw, ok := o["rule"]
		if !ok {
			continue
		}
		var r struct {
			Comment string
			Expr    []map[string]json.RawMessage
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Comment != comment {
			continue
		}
		for _, e := range r.Expr {
			if c, ok := e["counter"]; ok {
				var cnt struct{ Packets uint64 }
				if err := json.Unmarshal(c, &cnt); err != nil {
					t.Fatal(err)
				}
				return cnt.Packets
			}
		}
	}
	t.Fatalf("no rule %q with a counter in %s duet from-pod", comment, family)
	return 0
}
