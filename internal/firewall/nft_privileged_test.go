// Privileged: run as root with `go test ./internal/firewall/`. Loads every
// rendered script into the real nft, in a namespace of its own, because
// knftables' fake does not parse rule expressions.
package firewall

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func nft(t *testing.T, netns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\nscript:\n%s", err, out, script)
	}
}

func TestScriptsLoadInRealNFT(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, bridged := range []bool{false, true} {
		ns := kerneltest.NetNSName(kerneltest.NetNS(t))
		p := Pod{HostIf: "dt1", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}, Bridged: bridged,
			Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("10.7.0.2")},
			// Covers the pod's own addresses: must not collide with them.
			AllowedSources: []netip.Prefix{netip.MustParsePrefix("fd00:1::/48"), netip.MustParsePrefix("10.7.0.0/16"), netip.MustParsePrefix("2001:db8:9::/64")}}
		other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 6}, Bridged: bridged, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::3")}}
		for _, pod := range []Pod{p, p, other} { // ADD twice is idempotent
			script, err := AddPodScript(pod, pool)
			if err != nil {
				t.Fatal(err)
			}
			nft(t, ns, script)
		}
		fast, err := AddPodElementsScript(other, pool) // the fast path on the table just written
		if err != nil {
			t.Fatal(err)
		}
		nft(t, ns, fast)
		for range 2 { // DEL's fallback, twice: it succeeds whatever is there
			script, err := RemovePodScript(p, pool)
			if err != nil {
				t.Fatal(err)
			}
			nft(t, ns, script)
		}
		nft(t, ns, PrunePoolsScript([]netip.Prefix{netip.MustParsePrefix("fd00:99::/48"), netip.MustParsePrefix("10.99.0.0/16")}))
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), `"dt1"`) || !strings.Contains(string(out), `"dt2"`) {
			t.Fatalf("bridged=%v: after removing dt1 the ruleset is:\n%s", bridged, out)
		}
	}
}

func listSets(t *testing.T, netns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

// TestNetlinkFastPathMatchesNFT: the raw elements the netlink fast path
// writes are exactly those nft writes, and its delete removes them.
func TestNetlinkFastPathMatchesNFT(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, bridged := range []bool{false, true} {
		path := kerneltest.NetNS(t)
		name := kerneltest.NetNSName(path)
		p := Pod{HostIf: "dt7", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 7}, Bridged: bridged,
			Addrs:          []netip.Addr{netip.MustParseAddr("fd00:1::7"), netip.MustParseAddr("10.7.0.7")},
			AllowedSources: []netip.Prefix{netip.MustParsePrefix("2001:db8:9::/64"), netip.MustParsePrefix("192.0.2.0/24")}}
		base := Pod{HostIf: "dt8", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 8}, Bridged: bridged, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::8")}}
		script, _ := AddPodScript(base, pool) // writes the table and its markers
		nft(t, name, script)
		empty := listSets(t, name)
		script, _ = AddPodScript(p, pool)
		nft(t, name, script)
		viaNFT := listSets(t, name)
		script, _ = RemovePodScript(p, pool)
		nft(t, name, script)
		if got := listSets(t, name); got != empty {
			t.Fatalf("nft remove did not restore the table")
		}
		r := nsReader{path}
		raw := func(els []RawElement) []kernel.NFTElement {
			var out []kernel.NFTElement
			for _, e := range els {
				out = append(out, kernel.NFTElement{Family: string(e.Family), Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd})
			}
			return out
		}
		apply := func(op FastOp) error {
			return r.in(func() error {
				return kernel.NFTApplyElements(kernel.NFTSetElements{Table: Table, Checks: raw(op.Checks), Add: op.Add, Elements: raw(op.Elements)})
			})
		}
		// Residue's delete, from what the kernel lists, for p alone.
		residue := func() (FastOp, []netip.Prefix) {
			have, err := r.List(ResidueSets(p.family()))
			if err != nil {
				t.Fatalf("bridged=%v: listing over netlink: %v", bridged, err)
			}
			return Residue(have, func(name string) bool { return name == p.HostIf })
		}
		add, _ := FastAddPod(p, pool)
		if err := apply(add); err != nil {
			t.Fatalf("bridged=%v: netlink add: %v", bridged, err)
		}
		if got := listSets(t, name); got != viaNFT {
			t.Fatalf("bridged=%v: netlink and nft wrote different elements:\n%s\n---\n%s", bridged, viaNFT, got)
		}
		del, pools := residue()
		if len(pools) != len(pool) {
			t.Fatalf("bridged=%v: the pools of dt7's network: %v", bridged, pools)
		}
		if err := apply(del); err != nil {
			t.Fatalf("bridged=%v: netlink delete: %v", bridged, err)
		}
		if got := listSets(t, name); got != empty {
			t.Fatalf("bridged=%v: netlink delete left:\n%s", bridged, got)
		}
		// Other pools than the table's: the fast path must refuse.
		other, _ := FastAddPod(p, []Pool{{CIDR: netip.MustParsePrefix("fd00:99::/48"), NAT: true}})
		if err := apply(other); err == nil {
			t.Fatalf("bridged=%v: fast path accepted pools the table has no NAT elements for", bridged)
		}
	}
}

// nsReader reads duet's tables in a namespace over netlink, as the
// plugin's CHECK does.
type nsReader struct{ path string }

func (r nsReader) in(fn func() error) error {
	h, err := ns.GetNS(r.path)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.Do(func(ns.NetNS) error { return fn() })
}

func (r nsReader) RuleComments(fam Family, chain string) (out []string, err error) {
	err = r.in(func() error {
		out, err = kernel.NFTRuleComments(string(fam), Table, chain)
		return err
	})
	return out, err
}

func (r nsReader) List(sets []RawElement) (out []RawElement, err error) {
	err = r.in(func() error {
		var refs []kernel.NFTSetRef
		for _, s := range sets {
			refs = append(refs, kernel.NFTSetRef{Family: string(s.Family), Set: s.Set})
		}
		els, err := kernel.NFTListElements(Table, refs)
		for _, e := range els {
			out = append(out, RawElement{Family: Family(e.Family), Set: e.Set, Key: e.Key, KeyEnd: e.KeyEnd})
		}
		return err
	})
	return out, err
}

// TestCheckPodInRealTable: CHECK reads the kernel's table over netlink
// (rule comments, raw elements) and finds a table nft wrote whole, a
// pod's own address, an allowed prefix and a neighbour-advertisement
// target that went missing, and a chain someone flushed.
func TestCheckPodInRealTable(t *testing.T) {
	kerneltest.RequireRoot(t)
	for _, bridged := range []bool{false, true} {
		path := kerneltest.NetNS(t)
		name := kerneltest.NetNSName(path)
		p := Pod{HostIf: "dt5", MAC: net.HardwareAddr{2, 1, 2, 3, 4, 5}, Bridged: bridged,
			Addrs:          []netip.Addr{netip.MustParseAddr("fd00:1::5"), netip.MustParseAddr("10.7.0.5")},
			AllowedSources: []netip.Prefix{netip.MustParsePrefix("2001:db8:9::/64"), netip.MustParsePrefix("192.0.2.0/24")}}
		r := nsReader{path}
		if err := CheckPod(r, p); err == nil {
			t.Fatalf("bridged=%v: CHECK passed with no table", bridged)
		}
		script, _ := AddPodScript(p, pool)
		nft(t, name, script)
		if err := CheckPod(r, p); err != nil {
			t.Fatalf("bridged=%v: CHECK after ADD: %v", bridged, err)
		}
		fam := p.family()
		for _, c := range []struct{ del, want string }{
			{"pod_addrs4 { dt5 . 10.7.0.5 }", "pod_addrs4 lacks dt5 . 10.7.0.5"},
			{"pod_prefixes6 { dt5 . 2001:db8:9::/64 }", "pod_prefixes6 lacks dt5 . 2001:db8:9::/64"},
			{"pod_nd_targets { dt5 . 0xfd000001000000000000000000000005 }", "pod_nd_targets lacks dt5 . fd00:1::5"},
		} {
			nft(t, name, "delete element "+string(fam)+" duet "+c.del)
			if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("bridged=%v: CHECK without %s = %v, want %q", bridged, c.del, err, c.want)
			}
			nft(t, name, script)
		}
		nft(t, name, "flush chain "+string(fam)+" duet "+chainUDP)
		if err := CheckPod(r, p); err == nil || !strings.Contains(err.Error(), "modified") || !strings.Contains(err.Error(), chainUDP) {
			t.Fatalf("bridged=%v: CHECK with %s flushed = %v", bridged, chainUDP, err)
		}
	}
}
