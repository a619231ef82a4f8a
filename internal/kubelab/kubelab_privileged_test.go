//go:build kubelab

// Privileged, and slow the first time (it builds upstream Kubernetes,
// about 15 minutes cold, then cached): run as root with
//
//	make test-kube        # go test -tags kubelab -timeout 80m ./internal/kubelab/
//
// Brings the kube lab up (dual-stack, IPv6 first, kube-proxy nftables),
// checks pods of both families on every node, Services through duet,
// runs upstream's [Feature:IPv6DualStack] specs and its Netpol suite
// with e2e.test (duet enforcing NetworkPolicy), and checks
// lab down leaves no process, mount, cgroup or namespace behind.
// DUET_KUBE_FAMILY and DUET_KUBE_PROXY pick another family or proxy mode.
package kubelab_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/kubelab"
	"github.com/duetnet/duet/internal/lab"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestKubeLab(t *testing.T) {
	kerneltest.RequireRoot(t)
	root := repoRoot(t)
	bin := filepath.Join(root, "bin")
	if out, err := exec.Command("make", "-C", root, "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	datadir := t.TempDir()
	o := kubelab.Options{Nodes: 2, Family: env("DUET_KUBE_FAMILY", "dual"), Routing: env("DUET_KUBE_ROUTING", "direct"), ProxyMode: env("DUET_KUBE_PROXY", "nftables")}
	var log bytes.Buffer
	t.Cleanup(func() {
		s, ok, _ := lab.Load(datadir)
		if ok {
			if err := kubelab.Down(s, &log); err != nil {
				t.Error(err)
			}
		}
		if err := lab.Down(datadir, &log); err != nil {
			t.Error(err)
		}
		for _, left := range leftovers(datadir) {
			t.Errorf("left behind: %s", left)
		}
		if t.Failed() {
			t.Log(log.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	s, err := kubelab.Up(ctx, o, kubelab.Sources{DuetBin: bin, KubeSrc: filepath.Join(root, "hack", "kube")}, datadir, &log)
	t.Log(log.String())
	log.Reset()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("connectivity", func(t *testing.T) {
		res, err := kubelab.Connectivity(ctx, s, &log)
		t.Log(log.String())
		log.Reset()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if !r.OK {
				t.Errorf("%s %s %s -> %s: %s", r.Family, r.Path, r.From, r.To, r.Error)
			}
		}
	})
	t.Run("upstream dual-stack e2e", func(t *testing.T) {
		focus := `\[Feature:IPv6DualStack\]`
		if o.Family != "dual" {
			focus = `\[sig-network\].*\[Conformance\]`
		}
		res, err := kubelab.E2E(s, kubelab.E2EOptions{Focus: env("DUET_KUBE_FOCUS", focus), Procs: 4}, &log)
		t.Log(log.String())
		log.Reset()
		if err != nil {
			t.Fatalf("%v (%d passed, %d failed, %d skipped)", err, res.Passed, res.Failed, res.Skipped)
		}
	})
	if o.Family == "dual" {
		t.Run("seed 004 NetworkPolicy", func(t *testing.T) { seed004(t, s) })
	}
	// Upstream's whole NetworkPolicy suite in dual (make e2e-netpol runs
	// it in every family): ipBlock with except, egress, default deny in
	// TCP and UDP, named ports, namespace selectors, updates, and SCTP
	// rules that must not open TCP. SCTP connectivity itself needs the
	// sctp module, which this machine cannot load. About 4 minutes.
	t.Run("upstream Netpol e2e", func(t *testing.T) {
		res, err := kubelab.E2E(s, kubelab.E2EOptions{Focus: env("DUET_KUBE_NETPOL_FOCUS", `\[sig-network\] Netpol`),
			Skip: `\[Feature:SCTPConnectivity\]|\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]`, Procs: 4}, &log)
		t.Log(log.String())
		log.Reset()
		if err != nil {
			t.Fatalf("%v (%d passed, %d failed, %d skipped)", err, res.Passed, res.Failed, res.Skipped)
		}
		if res.Passed == 0 {
			t.Fatal("no Netpol spec ran")
		}
	})
}

// seed004 applies seed 004's IPv6 policy to a pod and checks, with real
// connections between pods on two nodes, what the seed says and what
// Kubernetes makes of it: IPv6 in from fd00::/8 (the lab's pods are in
// it) passes; IPv4 is cut off both ways, since the policy names no IPv4
// peer; IPv6 out to other pods is refused, because the lab's pods are
// ULAs and the seed excepts fc00::/7. Its IPv4 twin then opens IPv4 in
// from 10.0.0.0/8, and still refuses IPv4 out to 10.0.0.0/8.
func seed004(t *testing.T, s lab.State) {
	k := s.Kubernetes
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(k.Kubectl, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Cleanup(func() { _, _ = kubectl("delete", "namespace", "seed-004", "--wait=false") })
	must("apply", "-f", "testdata/seed004.yaml")
	must("-n", "seed-004", "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s")
	ips := func(pod string) []string {
		return strings.Fields(must("-n", "seed-004", "get", "pod", pod, "-o", "jsonpath={.status.podIPs[*].ip}"))
	}
	app, client := ips("myapp"), ips("client")
	if len(app) != 2 || len(client) != 2 {
		t.Fatalf("pods' IPs: myapp %v, client %v; want one of each family, IPv6 first", app, client)
	}
	// expect polls: a policy applies within moments of its creation, and
	// a connection refused by policy times out.
	expect := func(from, ip string, want bool) {
		t.Helper()
		addr := ip + ":8080"
		if strings.Contains(ip, ":") {
			addr = "[" + ip + "]:8080"
		}
		var got bool
		for try := 0; try < 5; try++ {
			_, err := kubectl("-n", "seed-004", "exec", from, "--", "/agnhost", "connect", addr, "--timeout=2s", "--protocol=tcp")
			if got = err == nil; got == want {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("%s -> %s: connected %v, want %v", from, addr, got, want)
	}
	expect("client", app[0], true)    // IPv6 in, from fd00::/8
	expect("client", app[1], false)   // IPv4 in: no IPv4 peer
	expect("myapp", client[0], false) // IPv6 out to a ULA: fc00::/7 excepted
	expect("myapp", client[1], false) // IPv4 out: no IPv4 peer
	must("apply", "-f", "testdata/seed004-ipv4.yaml")
	expect("client", app[1], true)    // IPv4 in, from 10.0.0.0/8
	expect("myapp", client[1], false) // IPv4 out to 10.0.0.0/8: excepted
	expect("client", app[0], true)    // the IPv6 policy still holds
}

// leftovers lists what the kube lab may leave behind: namespaces,
// mounts, cgroups, processes and the host link.
func leftovers(datadir string) []string {
	var left []string
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), lab.Prefix) {
			left = append(left, "netns "+e.Name())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], datadir) {
			left = append(left, "mount "+f[1])
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + lab.Prefix + "*")
	for _, d := range cg {
		left = append(left, "cgroup "+d)
	}
	if out, _ := exec.Command("pgrep", "-af", datadir).Output(); len(bytes.TrimSpace(out)) > 0 {
		left = append(left, "processes "+strings.TrimSpace(string(out)))
	}
	if exec.Command("ip", "link", "show", lab.Prefix+"api").Run() == nil {
		left = append(left, "link "+lab.Prefix+"api")
	}
	return left
}
