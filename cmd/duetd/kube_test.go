package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/agent"
	"github.com/duetnet/duet/internal/cluster"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kube"
)

func TestKubeFlags(t *testing.T) {
	f := kubeFlags{enabled: true, families: "dual", confName: "10-duet.conflist"}
	if err := f.check(map[string]bool{"kubernetes": true}, "/var/lib/duet/duet.db"); err != nil {
		t.Fatal(err)
	}
	if f.cniDatastore != "/var/lib/duet/duet.db" || len(f.fams) != 2 || f.fams[0] != ipam.IPv6 {
		t.Errorf("defaults: %+v", f)
	}
	for _, c := range []struct {
		f    kubeFlags
		set  string
		flag string // the error names it
		fix  string // and says this
	}{
		{kubeFlags{families: "dual"}, "families", "--families", "--kubernetes"},
		{kubeFlags{}, "cni-conf-dir", "--cni-conf-dir", "--kubernetes"},
		{kubeFlags{}, "kubeconfig", "--kubeconfig", "--kubernetes"},
		{kubeFlags{enabled: true, families: "both", confName: "10-duet.conflist"}, "", "--families", "ipv6"},
		{kubeFlags{enabled: true, families: "dual", confName: "10-duet.conf"}, "", "--cni-conf-name", ".conflist"},
		{kubeFlags{enabled: true, families: "dual", confName: "net.d/10-duet.conflist"}, "", "--cni-conf-name", "file name"},
		{kubeFlags{enabled: true, families: "dual", confName: "10-duet.conflist", cniDatastore: "duet.db"}, "", "--cni-datastore-path", "absolute"},
		{kubeFlags{enabled: true, families: "dual", confName: "10-duet.conflist"}, "address", "--address", "InternalIP"},
		{kubeFlags{enabled: true, families: "dual", confName: "10-duet.conflist"}, "etcd-endpoints", "--etcd-endpoints", "spec.podCIDRs"},
	} {
		err := c.f.check(map[string]bool{c.set: true}, "/var/lib/duet/duet.db")
		if err == nil || !strings.HasPrefix(err.Error(), c.flag) || !strings.Contains(err.Error(), c.fix) {
			t.Errorf("%+v with --%s: %v, want an error naming %s and %q", c.f, c.set, err, c.flag, c.fix)
		}
	}
	if kubeNodeName("node1", "host") != "node1" || kubeNodeName("", "host") != "host" {
		t.Error("NODE_NAME first, then the host name")
	}
}

func TestHealth(t *testing.T) {
	ok := agent.Status{LastSync: time.Now()}
	for _, c := range []struct {
		name     string
		st       agent.Status
		notReady string
		code     int
		body     string
	}{
		{"synced", ok, "", http.StatusOK, "ok"},
		{"failing", agent.Status{LastSync: time.Now(), LastError: "reading the store: locked"}, "", http.StatusServiceUnavailable, "unhealthy: reading the store: locked"},
		{"stale", agent.Status{LastSync: time.Now().Add(-time.Hour)}, "", http.StatusServiceUnavailable, "unhealthy"},
		{"kube, not ready", ok, "node \"n\" has no spec.podCIDRs", http.StatusServiceUnavailable, "not ready: node \"n\" has no spec.podCIDRs"},
	} {
		code, body := health(c.st, time.Second, c.notReady)
		if code != c.code || !strings.HasPrefix(body, c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.body)
		}
	}
}

// TestReady: /readyz is /healthz's answer, and 503 while NetworkPolicy
// is not enforced; an unhealthy duetd says so first.
func TestReady(t *testing.T) {
	nft := errors.New("table inet duet-policy: Could not resolve protocol name")
	for _, c := range []struct {
		name      string
		code      int
		msg       string
		policyErr error
		wantCode  int
		wantBody  string
	}{
		{"healthy, policy synced", http.StatusOK, "ok", nil, http.StatusOK, "ok"},
		{"healthy, policy failing", http.StatusOK, "ok", nft, http.StatusServiceUnavailable, "not ready: NetworkPolicy is not enforced on this node: table inet duet-policy: Could not resolve"},
		{"not ready anyway", http.StatusServiceUnavailable, "not ready: no podCIDRs", nft, http.StatusServiceUnavailable, "not ready: no podCIDRs"},
	} {
		code, body := ready(c.code, c.msg, c.policyErr)
		if code != c.wantCode || !strings.HasPrefix(body, c.wantBody) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.wantCode, c.wantBody)
		}
	}
}

// TestCNIConfHook: nothing is written, and /healthz says why, until a
// full sync; then the conflist holds this node's ranges, IPv6 first, and
// an unchanged state leaves the file alone.
func TestCNIConfHook(t *testing.T) {
	dir := t.TempDir()
	c := &cniConf{dir: dir, name: "10-duet.conflist", datastore: "/var/lib/duet/duet.db", fams: []ipam.Family{ipam.IPv6, ipam.IPv4}, log: slog.New(slog.DiscardHandler)}
	path := filepath.Join(dir, "10-duet.conflist")
	if r := c.notReady(agent.Status{LastError: "waiting for the Kubernetes API"}); !strings.Contains(r, "waiting for the Kubernetes API") {
		t.Errorf("not ready: %q", r)
	}
	if r := c.notReady(agent.Status{}); !strings.Contains(r, "first sync") {
		t.Errorf("before a sync: %q", r)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("written before a sync")
	}
	blk := func(cidr, node string) ipam.Block {
		p := netip.MustParsePrefix(cidr)
		return ipam.Block{CIDR: p, Pool: p, Node: node}
	}
	d := agent.Desired{Self: cluster.Node{Name: "node1"}, Blocks: []ipam.Block{
		blk("fd00:10:244:1::/64", "node1"), blk("10.244.1.0/24", "node1"), blk("fd00:10:244:2::/64", "node2")}}
	if err := c.synced(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := kube.Conflist(kube.CNIConf{Node: "node1", Families: c.fams, DatastorePath: "/var/lib/duet/duet.db",
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:10:244:1::/64"), netip.MustParsePrefix("10.244.1.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(want) {
		t.Errorf("conflist\n%s\nwant\n%s", b, want)
	}
	if _, err := kube.PluginConfig(b); err != nil {
		t.Error(err)
	}
	if r := c.notReady(agent.Status{LastError: "later trouble"}); r != "" {
		t.Errorf("ready once written, got %q (later failures are /healthz's unhealthy)", r)
	}
	fi, _ := os.Stat(path)
	if err := c.synced(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !os.SameFile(fi, fi2) {
		t.Error("an unchanged conflist was rewritten")
	}
}
