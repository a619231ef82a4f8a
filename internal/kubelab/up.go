package kubelab

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/duetnet/duet/deploy"
	"github.com/duetnet/duet/internal/image"
	"github.com/duetnet/duet/internal/lab"
)

// DuetImage is the ref the lab gives duet's own image.
const DuetImage = "docker.io/duetnet/duet:dev"

// Sources says where the binaries come from.
type Sources struct {
	// DuetBin holds duet's binaries (make build's bin/).
	DuetBin string
	// KubeSrc is the upstream build module (hack/kube); its build.sh
	// builds and caches the upstream binaries, and prints their dir.
	KubeSrc string
	// KubeBin, if set, is used as it is instead of building.
	KubeBin string
}

// Build runs the upstream build (cached: seconds when warm), streaming
// its progress to out, and returns the bin directory.
func Build(src Sources, out io.Writer) (string, error) {
	if src.KubeBin != "" {
		return src.KubeBin, nil
	}
	script := filepath.Join(src.KubeSrc, "build.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("the upstream Kubernetes build %s is missing: run duetctl from the repository's bin/ (make build), or pass --kube-bin DIR with prebuilt binaries", script)
	}
	cmd := exec.Command("bash", script)
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var last string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		last = sc.Text()
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("building upstream Kubernetes (%s) failed: %w; its output above names the module or package at fault (the version is pinned in %s)", script, err, filepath.Join(src.KubeSrc, "go.mod"))
	}
	return strings.TrimSpace(last), nil
}

// Version reads the pinned upstream version from the build module.
func Version(kubeSrc string) string {
	raw, _ := os.ReadFile(filepath.Join(kubeSrc, "go.mod"))
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "k8s.io/kubernetes" {
			return f[1]
		}
	}
	return "unknown"
}

// Up builds the kube lab. Running it again on a ready lab with the same
// options changes nothing.
func Up(ctx context.Context, o Options, src Sources, datadir string, out io.Writer) (lab.State, error) {
	if err := o.Validate(); err != nil {
		return lab.State{}, err
	}
	lo := lab.Options{Nodes: o.Nodes, Family: o.Family, Routing: o.Routing, Topology: "switched"}
	if old, ok, err := lab.Load(datadir); err != nil {
		return lab.State{}, err
	} else if ok {
		if old.Ready && old.Kubernetes != nil && old.Options == lo && old.Kubernetes.ProxyMode == o.ProxyMode {
			fmt.Fprintln(out, "kube lab already up with these options; nothing to do")
			return old, nil
		}
		return lab.State{}, fmt.Errorf("%w (ready: %v): run `duetctl lab down` first", lab.ErrAlreadyUp, old.Ready)
	}
	for _, b := range []string{"duet", "duet-ipam", "duetd", "duetctl"} {
		if _, err := os.Stat(filepath.Join(src.DuetBin, b)); err != nil {
			return lab.State{}, fmt.Errorf("%s is missing from %s: run make build", b, src.DuetBin)
		}
	}
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	step("building upstream Kubernetes %s (cached after the first time)", Version(src.KubeSrc))
	bin, err := Build(src, out)
	if err != nil {
		return lab.State{}, err
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "agnhost", "coredns"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return lab.State{}, fmt.Errorf("%s is missing from %s: run bash %s", b, bin, filepath.Join(src.KubeSrc, "build.sh"))
		}
	}
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		return lab.State{}, err
	}
	s := lab.Plan(lo, datadir)
	s.Store.NetNS = lab.Prefix + "cp"
	p := paths{root: filepath.Join(datadir, "kube")}
	c := &cluster{o: o, p: p, bin: bin, duetBin: src.DuetBin, cpNS: s.Store.NetNS, procs: map[string]int{},
		kubectlK: p.kubeconfig("host")}
	c.apiIPs = []netip.Addr{o.apiAddr(s)}
	for _, a := range s.Store.Addrs {
		if a != c.apiIPs[0] {
			c.apiIPs = append(c.apiIPs, a)
		}
	}
	s.Kubernetes = &lab.Kubernetes{Version: Version(src.KubeSrc), Kubeconfig: c.kubectlK, Kubectl: filepath.Join(bin, "kubectl"),
		ProxyMode: o.ProxyMode, ControlPlane: s.Store, Procs: c.procs, BinDir: bin, Root: p.root}
	if err := s.Save(); err != nil { // first, so down can clean an interrupted up
		return s, err
	}
	save := func() error { s.Kubernetes.Procs = c.procs; return s.Save() }
	fail := func(err error) (lab.State, error) { _ = save(); return s, err }

	if err := lab.BuildUnderlay(s); err != nil {
		return fail(err)
	}
	if err := hostLink(c.cpNS); err != nil {
		return fail(err)
	}
	step("underlay %s, control plane %s %v, host link %s", s.Underlay.NetNS, c.cpNS, c.apiIPs, HostAPIAddr())
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
		c.nodes = append(c.nodes, nodeInfo{Node: n, ips: strings.Split(joinAddrs(o.nodeIPs(n)), ",")})
	}
	if err := makePKI(p, o, c.apiIPs, names, apiURL(c.apiIPs[0]), apiURL(HostAPIAddr())); err != nil {
		return fail(err)
	}
	if err := c.writeImages(); err != nil {
		return fail(err)
	}
	step("certificates, kubeconfigs and images (%s)", p.images())
	if err := c.cniBinDir(); err != nil {
		return fail(err)
	}
	if err := c.startControlPlane(ctx, step); err != nil {
		return fail(err)
	}
	if err := save(); err != nil {
		return s, err
	}
	for _, n := range c.nodes {
		if err := c.startNode(ctx, n, step); err != nil {
			return fail(err)
		}
		if err := save(); err != nil {
			return s, err
		}
	}
	if o.CNI == "bridge" {
		if err := c.installBridge(ctx); err != nil {
			return fail(err)
		}
		step("reference bridge + host-local CNI on every node, direct routes; every node Ready")
	} else {
		if err := c.installDuet(ctx, s); err != nil {
			return fail(err)
		}
		step("duet installed from deploy/duet.yaml; every node Ready")
	}
	if err := c.installDNS(ctx); err != nil {
		return fail(err)
	}
	step("CoreDNS at %v", o.DNSService())
	s.Ready = true
	if err := save(); err != nil {
		return s, err
	}
	step("kube lab up: kubectl --kubeconfig %s get pods -A -o wide", c.kubectlK)
	return s, nil
}

// hostLink joins the host namespace to the control plane's with a veth,
// so the host's kubeconfig reaches the API server at HostAPIAddr.
func hostLink(cpNS string) error {
	_, _ = run("", "ip", "link", "del", hostLinkName) // a leftover of an interrupted lab
	cmds := [][]string{
		{"ip", "link", "add", hostLinkName, "type", "veth", "peer", "name", "host", "netns", cpNS},
		{"ip", "addr", "add", netip.PrefixFrom(hostLinkAddr(HostLink6, 1), HostLink6.Bits()).String(), "dev", hostLinkName, "nodad"},
		{"ip", "-n", cpNS, "addr", "add", netip.PrefixFrom(HostAPIAddr(), HostLink6.Bits()).String(), "dev", "host", "nodad"},
		{"ip", "link", "set", hostLinkName, "up"},
		{"ip", "-n", cpNS, "link", "set", "host", "up"},
	}
	for _, cmd := range cmds {
		if _, err := run("", cmd...); err != nil {
			return err
		}
	}
	return nil
}

// cniBinDir is the CNI plugin dir every node's containerd reads. duet's
// init container installs duet, duet-ipam, portmap and loopback there;
// Debian's reference plugins are linked first as a floor (containerd
// needs loopback for every sandbox).
func (c *cluster) cniBinDir() error {
	dir := c.p.cniBin()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, _ := os.ReadDir("/usr/lib/cni")
	for _, e := range ents {
		_ = os.Symlink(filepath.Join("/usr/lib/cni", e.Name()), filepath.Join(dir, e.Name()))
	}
	return nil
}

func (c *cluster) writeImages() error {
	specs, err := image.Lab(c.bin, c.duetBin)
	if err != nil {
		return err
	}
	duet, err := image.Duet(c.duetBin, DuetImage)
	if err != nil {
		return err
	}
	return image.Write(c.p.images(), append(specs, duet)...)
}

func (c *cluster) apply(manifest []byte) error {
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), "--kubeconfig", c.kubectlK, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(string(manifest))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// installDuet applies deploy/duet.yaml as the lab needs it (per-node host
// dirs, the lab's image) and waits until every node is Ready (the kubelet
// says so only once duetd has written the CNI config) and every duet pod
// is Ready.
func (c *cluster) installDuet(ctx context.Context, s lab.State) error {
	m, err := deploy.Lab(deploy.LabOptions{Image: DuetImage, HostRoot: c.p.root, CNIBinDir: c.p.cniBin(), Families: c.o.Family, Routing: c.o.Routing, NetworkPolicy: ptr(!c.o.NoNetworkPolicy)})
	if err != nil {
		return err
	}
	if err := c.apply(m); err != nil {
		return err
	}
	if err := c.waitNodesReady(ctx, "kubectl -n kube-system logs ds/duet"); err != nil {
		return err
	}
	// A Ready node only says its conflist is written; duet's own pods are
	// Ready (/readyz) once NetworkPolicy, when on, is enforced too.
	return waitFor(ctx, "duet's DaemonSet pods Ready", 60*time.Second, "kubectl -n kube-system describe pods -l app.kubernetes.io/name=duet", func() (bool, string) {
		out, err := c.kubectl("-n", "kube-system", "rollout", "status", "daemonset/duet", "--timeout=1s")
		return err == nil, strings.TrimSpace(out)
	})
}

// waitNodesReady waits until the kubelet of every node says Ready, which
// it does once the node's CNI config is in place.
func (c *cluster) waitNodesReady(ctx context.Context, hint string) error {
	return waitFor(ctx, "every node Ready", 120*time.Second, hint, func() (bool, string) {
		out, err := c.kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return false, err.Error()
		}
		f := strings.Fields(out)
		if len(f) != len(c.nodes) {
			return false, out
		}
		for _, kv := range f {
			if !strings.HasSuffix(kv, "=True") {
				return false, out
			}
		}
		return true, ""
	})
}

//go:embed coredns.yaml
var corednsYAML string

// installDNS runs CoreDNS behind a dual-stack kube-dns Service at the
// addresses every kubelet's clusterDNS names.
func (c *cluster) installDNS(ctx context.Context) error {
	var ips []string
	for _, a := range c.o.DNSService() {
		ips = append(ips, fmt.Sprintf("%q", a.String()))
	}
	policy := "SingleStack"
	if len(ips) > 1 {
		policy = "RequireDualStack"
	}
	m := strings.NewReplacer("CLUSTER_IP\n", ips[0]+"\n", "CLUSTER_IPS", strings.Join(ips, ", "), "IP_FAMILY_POLICY", policy, "CLUSTER_DOMAIN", ClusterDomain,
		"COREDNS_IMAGE", image.CoreDNSRef).Replace(corednsYAML)
	if err := c.apply([]byte(m)); err != nil {
		return err
	}
	return waitFor(ctx, "CoreDNS ready", 90*time.Second, "kubectl -n kube-system logs deploy/coredns", func() (bool, string) {
		out, err := c.kubectl("-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}")
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(out) != "" && strings.TrimSpace(out) != "0", "no ready replica"
	})
}

func ptr[T any](v T) *T { return &v }
