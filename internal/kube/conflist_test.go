package kube

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/duetnet/duet/internal/ipam"
)

const wantDual = `{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0"],"name":"duet","plugins":[` +
	`{"type":"duet","families":"dual","nodeName":"node1","pools":[{"cidr":"fd00:10:244:1::/64","blockSize":64},{"cidr":"10.244.1.0/24","blockSize":24}],"datastore":{"type":"bolt","path":"/var/lib/duet/duet.db"}},` +
	`{"type":"portmap","capabilities":{"portMappings":true}}]}`

// TestConflist: the file libcni loads, whose duet entry the plugin's own
// parser accepts with the node's ranges as single-block pools, IPv6 first,
// and NAT as the plugin's defaults decide.
func TestConflist(t *testing.T) {
	got, err := Conflist(CNIConf{Node: "node1", Families: dual, DatastorePath: "/var/lib/duet/duet.db",
		PodCIDRs: []netip.Prefix{pfx("fd00:10:244:1::/64"), pfx("10.244.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != wantDual {
		t.Errorf("got  %s\nwant %s", got, wantDual)
	}
	list, err := libcni.ConfListFromBytes(got)
	if err != nil {
		t.Fatalf("libcni: %v", err)
	}
	if list.Name != "duet" || len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "duet" || list.Plugins[1].Network.Type != "portmap" {
		t.Errorf("libcni reads %+v", list)
	}
	n, err := PluginConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	if n.NodeName != "node1" || len(n.Families) != 2 || n.Families[0] != ipam.IPv6 || n.Datastore.Path != "/var/lib/duet/duet.db" || !n.Protections {
		t.Errorf("plugin reads %+v", n)
	}
	if len(n.Pools) != 2 {
		t.Fatalf("pools %+v", n.Pools)
	}
	for i, w := range []struct {
		cidr  string
		block int
	}{{"fd00:10:244:1::/64", 64}, {"10.244.1.0/24", 24}} {
		p := n.Pools[i]
		// ULA and private IPv4: masqueraded towards the outside.
		if p.CIDR != pfx(w.cidr) || p.BlockSize != w.block || !p.NATOutgoing {
			t.Errorf("pool %d: %+v, want %s in one /%d block, natOutgoing", i, p, w.cidr, w.block)
		}
	}
}

func TestConflistFamilies(t *testing.T) {
	for _, tc := range []struct {
		fams  []ipam.Family
		cidrs []string
		want  string // in the file
		nat   bool
	}{
		{only6, []string{"2001:db8:1:100::/56"}, `"families":"ipv6","nodeName":"n","pools":[{"cidr":"2001:db8:1:100::/56","blockSize":64}]`, false},
		{only6, []string{"fd00:10:244:1:0:1::/96"}, `"pools":[{"cidr":"fd00:10:244:1:0:1::/96","blockSize":96}]`, true},
		{only4, []string{"10.244.1.0/24"}, `"families":"ipv4","nodeName":"n","pools":[{"cidr":"10.244.1.0/24","blockSize":24}]`, true},
	} {
		var cidrs []netip.Prefix
		for _, c := range tc.cidrs {
			cidrs = append(cidrs, pfx(c))
		}
		got, err := Conflist(CNIConf{Node: "n", Families: tc.fams, PodCIDRs: cidrs, DatastorePath: "/d.db"})
		if err != nil {
			t.Errorf("%v: %v", tc.cidrs, err)
			continue
		}
		if !strings.Contains(string(got), tc.want) {
			t.Errorf("%v: got %s, want it to hold %s", tc.cidrs, got, tc.want)
		}
		if n, err := PluginConfig(got); err != nil || n.Pools[0].NATOutgoing != tc.nat {
			t.Errorf("%v: plugin reads %+v, %v; want natOutgoing %v", tc.cidrs, n, err, tc.nat)
		}
	}
}

// TestConflistRefused: a range the plugin cannot allocate from is refused
// here, before anything is written, naming the plugin's field.
func TestConflistRefused(t *testing.T) {
	_, err := Conflist(CNIConf{Node: "n", Families: only4, PodCIDRs: []netip.Prefix{pfx("10.244.1.0/31")}, DatastorePath: "/d.db"})
	if err == nil || !strings.Contains(err.Error(), "pools[0].blockSize") || !strings.Contains(err.Error(), "10.244.1.0/31") {
		t.Errorf("a /31: %v", err)
	}
	if _, err := Conflist(CNIConf{Node: "n", Families: dual, DatastorePath: "/d.db"}); err == nil {
		t.Error("no ranges: no error")
	}
}

func TestParseFamilies(t *testing.T) {
	for _, s := range []string{"dual", "ipv6", "ipv4"} {
		f, err := ParseFamilies(s)
		if err != nil || FamiliesFlag(f) != s {
			t.Errorf("%s: %v %v", s, f, err)
		}
	}
	if _, err := ParseFamilies("both"); err == nil || !strings.HasPrefix(err.Error(), "--families") {
		t.Errorf("both: %v", err)
	}
}

// TestWriteFile: the file appears whole, is left alone when unchanged
// (the runtime reloads on every write), and no temporary file remains.
func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	for i, tc := range []struct {
		data  string
		wrote bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		wrote, err := WriteFile(dir, "10-duet.conflist", []byte(tc.data))
		if err != nil || wrote != tc.wrote {
			t.Fatalf("write %d: wrote %v, %v; want %v", i, wrote, err, tc.wrote)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "10-duet.conflist")); string(b) != tc.data {
			t.Fatalf("write %d: file holds %q", i, b)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "10-duet.conflist")); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// A node whose datastore is not the host's default (a lab node) records
// its sysctl changes beside it; the default host leaves the key out.
func TestConflistSysctlLog(t *testing.T) {
	got, err := Conflist(CNIConf{Node: "node1", Families: dual, DatastorePath: "/run/duet-lab/kube/nodes/node1/lib/duet.db",
		PodCIDRs: []netip.Prefix{pfx("fd00:10:244:1::/64"), pfx("10.244.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := PluginConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	if n.SysctlLog != "/run/duet-lab/kube/nodes/node1/lib/sysctl-changes.jsonl" {
		t.Errorf("sysctlLog %q", n.SysctlLog)
	}
}
