package kubelab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/lab"
)

// nodeInfo is one lab node as the kube lab runs it.
type nodeInfo struct {
	lab.Node
	ips []string // --node-ip, IPv6 first
}

// PauseImage is the sandbox image every node's containerd uses; the lab
// imports duet's own pause under this name.
const PauseImage = "registry.k8s.io/pause:3.10.2"

func (c *cluster) containerdSock(n string) string {
	return filepath.Join(c.p.nodeDir(n), "containerd", "containerd.sock")
}

// containerdConfig is a node's private containerd: own root, state,
// sockets and runc root, CRI with duet's conf dir, and a registry that
// answers nothing, so a missing image fails at once instead of asking the
// host's resolver (the lab imports every image it needs).
func (c *cluster) containerdConfig(n string) string {
	d := filepath.Join(c.p.nodeDir(n), "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Root here may not lower oom_score_adj (no CAP_SYS_RESOURCE): without
  # this runc fails every sandbox on the kubelet's -998.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), c.containerdSock(n), c.containerdSock(n)+".ttrpc",
		PauseImage, filepath.Join(d, "runc"), c.p.cniBin(), c.p.cniConfDir(n), filepath.Join(d, "certs.d"), filepath.Join(d, "opt"))
}

// deadRegistries points every registry the images name at a closed port.
func (c *cluster) deadRegistries(n string) error {
	for _, r := range []string{"_default", "registry.k8s.io", "docker.io", "gcr.io", "quay.io", "ghcr.io", "invalid.registry.k8s.io"} {
		dir := filepath.Join(c.p.nodeDir(n), "containerd", "certs.d", r)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		hosts := "server = \"http://127.0.0.1:1\"\n[host.\"http://127.0.0.1:1\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func cgroupRoot(n string) string { return "/" + lab.Prefix + n }

// makeCgroups creates the node's cgroupRoot in every cgroup v1 hierarchy
// (cpuset needs its cpus and mems copied from the parent before tasks
// may join); on a pure cgroup v2 host the kubelet makes its own.
func makeCgroups(n string) error {
	hs, _ := cgroupHierarchies()
	for _, h := range hs {
		d := filepath.Join(h, cgroupRoot(n))
		if err := os.MkdirAll(d, 0o755); err != nil {
			continue // not a hierarchy (or read-only): the kubelet says if it matters
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				_ = os.WriteFile(filepath.Join(d, f), v, 0o644)
			}
		}
	}
	return nil
}

func (c *cluster) kubeletConfig(n string) string {
	nd := c.p.nodeDir(n)
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
address: "::"
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDomain: %s
clusterDNS: [%q]
resolvConf: %s
podLogsDir: %s
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
enforceNodeAllocatable: [pods]
rotateCertificates: false
`, cgroupRoot(n), c.containerdSock(n), c.containerdSock(n), filepath.Join(c.p.pki(), "ca.crt"), ClusterDomain,
		c.o.DNSService()[0], filepath.Join(nd, "resolv.conf"), filepath.Join(nd, "pod-logs"))
}

func (c *cluster) proxyConfig(n string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
mode: %s
clusterCIDR: %q
detectLocalMode: NodeCIDR
healthzBindAddress: "[::]:10256"
metricsBindAddress: "127.0.0.1:10249"
# nf_conntrack_max is global, not writable from a namespace: leave it.
conntrack: {maxPerCore: 0, min: 0}
oomScoreAdj: 0
`, c.p.kubeconfig("kube-proxy"), n, c.o.ProxyMode, joinPrefixes(c.o.ClusterCIDRs()))
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// startNode brings up one node's containerd (with the lab's images),
// kubelet and kube-proxy. The node stays NotReady until duet writes its
// CNI config.
func (c *cluster) startNode(ctx context.Context, n nodeInfo, step func(string, ...any)) error {
	nd := c.p.nodeDir(n.Name)
	if err := makeCgroups(n.Name); err != nil {
		return err
	}
	for _, d := range []string{c.p.cniConfDir(n.Name), filepath.Join(nd, "lib"), filepath.Join(nd, "run"), filepath.Join(nd, "pod-logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.deadRegistries(n.Name); err != nil {
		return err
	}
	var dns []string
	for _, a := range c.o.DNSService() {
		dns = append(dns, "nameserver "+a.String())
	}
	files := map[string]string{
		filepath.Join(nd, "containerd.toml"): c.containerdConfig(n.Name),
		filepath.Join(nd, "kubelet.yaml"):    c.kubeletConfig(n.Name),
		filepath.Join(nd, "kube-proxy.yaml"): c.proxyConfig(n.Name),
		filepath.Join(nd, "resolv.conf"):     strings.Join(dns, "\n") + "\nsearch " + ClusterDomain + "\noptions ndots:5\n",
	}
	for path, content := range files {
		if err := writeFile(path, content); err != nil {
			return err
		}
	}
	name := "containerd-" + n.Name
	pid, err := start(c.p, proc{name: name, netns: n.NetNS, argv: []string{"containerd", "--config", filepath.Join(nd, "containerd.toml")}})
	if err != nil {
		return err
	}
	c.procs[name] = pid
	ctr := func(args ...string) (string, error) {
		return run("", append([]string{"ctr", "--address", c.containerdSock(n.Name), "-n", "k8s.io"}, args...)...)
	}
	if err := waitFor(ctx, name, 30*time.Second, c.p.logFile(name), func() (bool, string) {
		if !alive(pid) {
			return false, "it exited"
		}
		_, err := ctr("version")
		return err == nil, fmt.Sprint(err)
	}); err != nil {
		return err
	}
	if _, err := ctr("images", "import", c.p.images()); err != nil {
		return fmt.Errorf("importing the lab's images into %s: %w", n.Name, err)
	}
	name = "kubelet-" + n.Name
	pid, err = start(c.p, proc{name: name, netns: n.NetNS, argv: []string{filepath.Join(c.bin, "kubelet"),
		"--config", filepath.Join(nd, "kubelet.yaml"), "--kubeconfig", c.p.kubeconfig("kubelet-" + n.Name),
		"--root-dir", filepath.Join(nd, "kubelet"), "--cert-dir", filepath.Join(nd, "kubelet", "pki"),
		"--hostname-override", n.Name, "--node-ip", strings.Join(n.ips, ","),
		"--node-labels", "topology.kubernetes.io/zone=zone-" + strings.TrimPrefix(n.Name, "node"), "--v=1"}})
	if err != nil {
		return err
	}
	c.procs[name] = pid
	if err := waitFor(ctx, n.Name+" registered with spec.podCIDRs", 90*time.Second, c.p.logFile(name), func() (bool, string) {
		if !alive(pid) {
			return false, "the kubelet exited"
		}
		out, err := c.kubectl("get", "node", n.Name, "-o", "jsonpath={.spec.podCIDRs}")
		if err != nil || strings.TrimSpace(out) == "" {
			return false, "no podCIDRs yet (kube-controller-manager allocates them)"
		}
		return true, ""
	}); err != nil {
		return err
	}
	// The control plane is no node: it runs no CNI. Like a control-plane
	// host's routes to the pod network, these let the API server proxy
	// to pods (kubectl port-forward's and e2e's pods/proxy) and e2e.test,
	// which runs there, reach them.
	cidrs, err := c.podCIDRs(n.Name)
	if err != nil {
		return err
	}
	for _, p := range cidrs {
		if via, ok := addrOf(c.o.nodeIPs(n.Node), ipam.FamilyOf(p.Addr())); ok {
			if _, err := run("", "ip", "-n", c.cpNS, "route", "replace", p.String(), "via", via.String()); err != nil {
				return err
			}
		}
	}
	name = "kube-proxy-" + n.Name
	pid, err = start(c.p, proc{name: name, netns: n.NetNS, argv: []string{filepath.Join(c.bin, "kube-proxy"),
		"--config", filepath.Join(nd, "kube-proxy.yaml"), "--v=1"}})
	if err != nil {
		return err
	}
	c.procs[name] = pid
	step("node %s %v: containerd, kubelet, kube-proxy (%s)", n.Name, n.ips, c.o.ProxyMode)
	return nil
}

// probeHTTP GETs url from inside netns; ok is a 2xx answer.
func probeHTTP(netns, url string) (bool, string) {
	cl := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.NetnsDial("/run/netns/" + netns)}}
	resp, err := cl.Get(url)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2, resp.Status
}

// cgroupHierarchies lists the mounted cgroup hierarchies (each v1
// controller, and the unified one).
func cgroupHierarchies() ([]string, error) {
	ents, err := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out, err
}
