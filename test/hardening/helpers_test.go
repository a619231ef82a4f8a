// Package hardening holds privileged end-to-end tests of duet's protections
// (RA guard, anti-spoofing, NAT outgoing, host sysctls). They drive the real
// plugin binary through libcni, run it inside a throwaway "host" network
// namespace (so the host's routes, sysctls and nftables tables are that
// namespace's), and remove every namespace and process they make.
package hardening

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

var (
	// pluginDir holds the built plugin, as libcni's CNI_PATH.
	pluginDir string
	// token is in every namespace and bridge name of this run, so leftovers
	// are recognisable and other test runs are never touched.
	token = fmt.Sprintf("%04x", rand.Uint32()&0xffff)
	seq   atomic.Int32
	// made lists every interface name the tests made or let duet make, for
	// the final check that none ended up in the root namespace.
	made sync.Map
)

// wrapper runs the plugin in a private mount namespace with a tmpfs on
// /var/lib: the plugin appends its sysctl changes to the host-global
// /var/lib/duet/sysctl-changes.jsonl, which is not per network namespace,
// and the tests' namespaced "hosts" must not write the real machine's log.
const wrapper = `#!/bin/sh
exec unshare --mount --propagation private /bin/sh -c 'mount -t tmpfs -o size=4m duet-hardening /var/lib && exec "$0"' %q
`

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "duet-hardening-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	real := os.Getenv("DUET_HARDENING_PLUGIN") // a given build, e.g. to try a fix
	if real == "" {
		real = filepath.Join(dir, "duet.real")
		build := exec.Command(gobin, "build", "-o", real, "github.com/duetnet/duet/cmd/duet")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build ./cmd/duet: %v\n%s", err, out)
			return 1
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "duet"), []byte(fmt.Sprintf(wrapper, real)), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir = dir
	code := m.Run()
	if os.Geteuid() == 0 {
		if leaks := rootLeaks(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "hardening: left behind in the root namespace:\n  %s\n", strings.Join(leaks, "\n  "))
			code = 1
		}
	}
	return code
}

// rootLeaks lists this run's namespaces, and the interfaces it made, that
// are still there, and any mention of them in the root ruleset.
func rootLeaks() []string {
	var leaks []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "dh"+token) {
			leaks = append(leaks, "netns "+l)
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	rules, _ := exec.Command("nft", "list", "ruleset").Output()
	made.Range(func(k, _ any) bool {
		name := k.(string)
		if strings.Contains(string(links), ": "+name+"@") || strings.Contains(string(links), ": "+name+":") {
			leaks = append(leaks, "link "+name)
		}
		if strings.Contains(string(rules), name) {
			leaks = append(leaks, "nftables element or rule naming "+name)
		}
		return true
	})
	return leaks
}

// netNS is a named network namespace of one test.
type netNS struct {
	Name, Path string
	h          ns.NetNS
}

// newNetNS makes a namespace with lo up; t.Cleanup deletes it (with every
// interface in it) whatever the outcome.
func newNetNS(t *testing.T, role string) *netNS {
	t.Helper()
	name := fmt.Sprintf("dh%s-%s-%d", token, role, seq.Add(1))
	kerneltest.Run(t, "ip", "netns", "add", name)
	n := &netNS{Name: name, Path: filepath.Join("/var/run/netns", name)}
	t.Cleanup(func() {
		if n.h != nil {
			n.h.Close()
		}
		if _, err := os.Stat(n.Path); err != nil {
			return // the test deleted it
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := ns.GetNS(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	n.h = h
	n.ip(t, "link", "set", "lo", "up")
	return n
}

// do runs f on a thread inside n; processes f starts inherit n.
func (n *netNS) do(t *testing.T, f func() error) {
	t.Helper()
	if err := n.h.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatalf("in %s: %v", n.Name, err)
	}
}

// exec runs a command inside n and returns its standard output.
func (n *netNS) exec(t *testing.T, args ...string) string {
	t.Helper()
	return kerneltest.Run(t, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// ip runs ip(8) in n.
func (n *netNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	return kerneltest.Run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

func (n *netNS) sysctl(t *testing.T, key string) string {
	t.Helper()
	return strings.TrimSpace(n.exec(t, "sysctl", "-n", key))
}

func (n *netNS) setSysctl(t *testing.T, kv ...string) {
	t.Helper()
	n.exec(t, append([]string{"sysctl", "-q", "-w"}, kv...)...)
}

// vethTo makes a veth pair, local in n and peer in other, both without DAD
// and up, so addresses given later are usable at once.
func (n *netNS) vethTo(t *testing.T, local string, other *netNS, peer string) {
	t.Helper()
	made.Store(local, true)
	n.ip(t, "link", "add", local, "type", "veth", "peer", "name", peer, "netns", other.Name)
	n.setSysctl(t, "net.ipv6.conf."+local+".accept_dad=0")
	other.setSysctl(t, "net.ipv6.conf."+peer+".accept_dad=0")
	n.ip(t, "link", "set", local, "up")
	other.ip(t, "link", "set", peer, "up")
}

// requireTools fails (or skips without root) unless the test can run.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	kerneltest.RequireRoot(t)
	for _, tool := range append([]string{"ip", "nft", "unshare"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run hack/deps.sh", tool)
		}
	}
}
