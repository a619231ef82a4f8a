package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// codes reduces findings to "CODE@line", sorted, for comparison.
func codes(fs []Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s@%d", f.Code, f.Line))
	}
	sort.Strings(out)
	return out
}

func check(t *testing.T, path string) []Finding {
	t.Helper()
	fs, err := CheckPaths([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.File == "" || f.What == "" || f.Why == "" || f.Fix == "" {
			t.Errorf("%s: finding without place, what, why or fix: %+v", path, f)
		}
	}
	return fs
}

func sorted(s ...string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// seedWants is what the doctor must say about each example of the seed
// articles, and why the seed warns about it.
var seedWants = map[string][]string{
	// 000/004: ULA fd00::/80 is not random (003: "use a random ULA"); and
	// ip6tables needs experimental before Docker 27: this exact file makes
	// Docker 20.10 to 26 refuse to start.
	"000-daemon.json": {"ULA001@3", "DOCKER006@5"},
	// 000/004: GUA is routed without NAT; with no ip6tables nothing
	// filters the containers either.
	"000-daemon-gua.json": {"DOCKER005@2"},
	// 000: enable_ipv6 in a version 3.8 file (docker-compose v1 rejects
	// it), "[::]:8080:80" is IPv6 only, hand-picked ULA subnets.
	"000-docker-compose.yml": {"COMPOSE006@1", "COMPOSE005@10", "ULA001@32"},
	// 000: the port syntax list: 0.0.0.0 is IPv4 only, [::] IPv6 only.
	"000-compose-ports.yml": {"COMPOSE005@8", "COMPOSE005@9"},
	// 000: a consistent dual-stack kubeadm config; only the ULA hint.
	"000-kubeadm-config.yaml": {"ULA001@5"},
	// 000: dual-stack Services done right, and a plain Pod.
	"000-services.yaml": {},
	// 001: a GUA /64 without ip6tables; the NDP proxy /125 is below /80.
	"001-dockerd.sh": {"DOCKER005@2", "DOCKER004@5", "DOCKER005@5"},
	// 002: a Service without ipFamilyPolicy is single-stack; the alpha
	// ipFamily field no longer exists.
	"002-services.yaml": {"KUBE001@8", "KUBE003@19", "KUBE003@32"},
	// 003: the IPv6DualStack gate (needed on 1.18, rejected from 1.25)
	// and non-random ULA (003 itself says to use random ones).
	"003-kubeadm-init.sh": {"KUBEADM007@6", "ULA001@7", "KUBEADM007@11"},
	// 003: calico-ipam assigning both families: fine.
	"003-calico.conflist": {},
	// 003: the httpd Service with ipFamily: IPv6.
	"003-httpd.yaml": {"KUBE003@37"},
	// 004: the IPv6-only NetworkPolicy ("IPv4 and IPv6 rules can coexist").
	"004-networkpolicy.yaml": {"KUBE005@12", "KUBE005@18"},
	// 004: the IPv6 pool with natOutgoing false on a ULA (003 turns
	// CALICO_IPV6POOL_NAT_OUTGOING on for exactly this).
	"004-calico-ippools.yaml": {"ULA001@17", "CNI003@18"},
	// 004: Flannel's IPv6Network without EnableIPv6.
	"004-flannel.yaml": {"CNI007@10", "ULA001@10"},
	// 004: the dual-stack test app and ingress Service: fine.
	"004-test-app.yaml": {},
}

func TestSeeds(t *testing.T) {
	files, _ := filepath.Glob("testdata/seeds/*")
	if len(files) != len(seedWants) {
		t.Errorf("%d seed fixtures, %d expectations", len(files), len(seedWants))
	}
	var all []string
	for _, path := range files {
		want, ok := seedWants[filepath.Base(path)]
		if !ok {
			t.Errorf("%s: no expectation", path)
			continue
		}
		if diff := cmp.Diff(sorted(want...), codes(check(t, path))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
		all = append(all, want...)
	}
	// The directory at once says the same: 000-kubeadm-config's dual-stack
	// cluster makes the RequireDualStack Services fine.
	if diff := cmp.Diff(sorted(all...), codes(check(t, "testdata/seeds"))); diff != "" {
		t.Errorf("testdata/seeds as a directory (-want +got):\n%s", diff)
	}
}

// TestFixedSeeds: the corrected versions of the seeds' examples give no
// finding at all, hints included.
func TestFixedSeeds(t *testing.T) {
	files, _ := filepath.Glob("testdata/fixed/*")
	for _, path := range files {
		if _, ok := seedWants[filepath.Base(path)]; !ok {
			t.Errorf("%s corrects no seed fixture", path)
		}
	}
	if got := check(t, "testdata/fixed"); len(got) > 0 {
		t.Errorf("findings on the corrected seeds: %v", codes(got))
		for _, f := range got {
			t.Log(f.Location(), f.What)
		}
	}
}

// checkWants: each bad fixture (file or directory) and its findings; the
// matching -good fixture must give none.
var checkWants = map[string][]string{
	"docker001-bad.json":         {"DOCKER001@1", "DOCKER008@1"},
	"docker002-bad.json":         {"DOCKER002@2"},
	"docker003-bad.json":         {"DOCKER003@3", "DOCKER003@7", "DOCKER003@8"},
	"docker007-bad.json":         {"DOCKER007@6"},
	"docker008-bad.json":         {"DOCKER008@2", "DOCKER005@4"},
	"compose-default-bad.yml":    {"COMPOSE001@2", "COMPOSE004@4"},
	"compose-ipv4-bad.yml":       {"COMPOSE004@5", "COMPOSE001@8"},
	"compose002-bad.yml":         {"COMPOSE002@7"},
	"compose003-bad.yml":         {"COMPOSE003@13", "COMPOSE003@14"},
	"kubeadm001-bad.yaml":        {"KUBEADM001@4", "KUBEADM001@5", "KUBEADM001@9"},
	"kubeadm002-bad.yaml":        {"KUBEADM002@5"},
	"kubeadm003-bad.yaml":        {"KUBEADM003@5"},
	"kubeadm004-bad.yaml":        {"KUBEADM004@5", "KUBEADM004@10", "KUBEADM004@12"},
	"kubeadm005-bad.yaml":        {"KUBEADM005@3"},
	"kubeadm006-bad.yaml":        {"KUBEADM006@6", "KUBEADM006@15"},
	"kubeadm008-bad.yaml":        {"KUBEADM008@6"},
	"kubeadm009-bad.yaml":        {"KUBEADM009@5"},
	"kubeadm010-bad.yaml":        {"KUBEADM010@10"},
	"kube002-bad.yaml":           {"KUBE002@6", "KUBE002@17", "KUBE002@18", "KUBE002@27", "KUBE002@28"},
	"kube004-bad":                {"KUBE004@6", "KUBE004@16"},
	"kube006-bad.yaml":           {"KUBE006@13", "KUBE006@16", "KUBE006@18"},
	"kube007-bad.yaml":           {"KUBE007@13", "KUBE007@18", "KUBE007@34"},
	"cni001-bad.conflist":        {"CNI001@12"},
	"cni001-calico-bad.conflist": {"CNI001@9"},
	"cni001-flannel-bad.json":    {"CNI001@2"},
	"cni002-bad.conflist":        {"CNI002@10"},
	"cni003-duet-bad.conflist":   {"CNI003@8"},
	"cni004-bad.yaml":            {"CNI004@8"},
	"cni005-bad.yaml":            {"CNI005@7", "CNI005@15", "CNI005@23"},
	"cni006-bad.conflist":        {"CNI006@10"},
	"cni006-ipam-bad.conflist":   {"CNI006@12"},
	"cni007-bad.json":            {"CNI007@3"},
	"input001-bad.json":          {"INPUT001@3"},
	"input001-bad.yaml":          {"INPUT001@4"},
	"input002-notes.txt":         {"INPUT002@0"},
}

func TestChecks(t *testing.T) {
	entries, err := os.ReadDir("testdata/checks")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join("testdata/checks", e.Name())
		name := e.Name()
		switch want, bad := checkWants[name]; {
		case bad:
			if diff := cmp.Diff(sorted(want...), codes(check(t, path))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		case strings.HasSuffix(strings.TrimSuffix(name, filepath.Ext(name)), "-good"):
			if got := check(t, path); len(got) > 0 {
				t.Errorf("%s: want no finding, got %v", path, codes(got))
			}
		default:
			t.Errorf("%s: neither a -bad fixture with an expectation nor a -good one", path)
		}
	}
}

// TestEveryCheckHasFixtures: every code of the catalogue is produced by
// some bad fixture (host codes by a host facts fixture).
func TestEveryCheckHasFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, wants := range []map[string][]string{seedWants, checkWants, hostWants} {
		for _, list := range wants {
			for _, w := range list {
				code, _, _ := strings.Cut(w, "@")
				seen[code] = true
			}
		}
	}
	for _, c := range Checks {
		if !seen[c.Code] {
			t.Errorf("%s (%s) has no bad fixture", c.Code, c.Summary)
		}
	}
}

func TestUnreadableInput(t *testing.T) {
	if _, err := CheckPaths([]string{"testdata/no-such-file.json"}); err == nil {
		t.Error("a missing path must be an error (exit status 2), not a finding")
	}
}

func TestHasErrors(t *testing.T) {
	fs := check(t, "testdata/seeds/002-services.yaml")
	if !HasErrors(fs) {
		t.Error("KUBE003 is an error")
	}
	if HasErrors(check(t, "testdata/seeds/000-kubeadm-config.yaml")) {
		t.Error("a hint is not an error")
	}
}
