package kubelab

import (
	"context"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cluster is a kube lab being built or torn down: its plan, its paths,
// where the upstream and duet binaries are, and its processes.
type cluster struct {
	o        Options
	p        paths
	bin      string // upstream binaries
	duetBin  string // duet's binaries
	cpNS     string
	apiIPs   []netip.Addr // the API server's underlay addresses, primary family first
	procs    map[string]int
	nodes    []nodeInfo
	kubectlK string // kubeconfig for kubectl run from the host
}

func joinPrefixes(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, ",")
}

func joinAddrs(as []netip.Addr) string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return strings.Join(out, ",")
}

// controlPlane returns the control plane's processes, in start order.
func (c *cluster) controlPlane() []proc {
	pki := func(f string) string { return filepath.Join(c.p.pki(), f) }
	kc := c.p.kubeconfig
	svc := joinPrefixes(c.o.ServiceCIDRs())
	etcd := proc{name: "etcd", netns: c.cpNS, argv: []string{filepath.Join(c.duetBin, "duetd"),
		"--embed-etcd", c.p.etcd(), "--etcd-only", "--etcd-listen", etcdClient, "--http", ""}}
	api := proc{name: "kube-apiserver", netns: c.cpNS, argv: []string{filepath.Join(c.bin, "kube-apiserver"),
		"--etcd-servers", etcdClient,
		"--bind-address", "::", "--secure-port", strconv.Itoa(APIPort),
		// The advertised address must be of the primary Service family:
		// it becomes the kubernetes Service's endpoint.
		"--advertise-address", c.apiIPs[0].String(),
		"--service-cluster-ip-range", svc,
		"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
		"--client-ca-file", pki("ca.crt"),
		"--kubelet-client-certificate", pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", pki("apiserver-kubelet-client.key"),
		"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc." + ClusterDomain,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
		// Without it, kubectl logs/exec look "node1" up in DNS.
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--allow-privileged=true", "--profiling=false", "--v=1"}}
	cm := proc{name: "kube-controller-manager", netns: c.cpNS, argv: []string{filepath.Join(c.bin, "kube-controller-manager"),
		"--kubeconfig", kc("controller-manager"),
		"--authentication-kubeconfig", kc("controller-manager"), "--authorization-kubeconfig", kc("controller-manager"),
		"--bind-address", "127.0.0.1", "--leader-elect=false",
		// Pod ranges per node (spec.podCIDRs), IPv6 first: duet takes
		// them from the Node objects.
		"--allocate-node-cidrs=true", "--cluster-cidr", joinPrefixes(c.o.ClusterCIDRs()),
		"--service-cluster-ip-range", svc,
		"--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
		"--cluster-signing-cert-file", pki("ca.crt"), "--cluster-signing-key-file", pki("ca.key"),
		"--use-service-account-credentials=true", "--v=1"}}
	cm.argv = append(cm.argv, c.o.nodeMaskFlags()...)
	sched := proc{name: "kube-scheduler", netns: c.cpNS, argv: []string{filepath.Join(c.bin, "kube-scheduler"),
		"--kubeconfig", kc("scheduler"),
		"--authentication-kubeconfig", kc("scheduler"), "--authorization-kubeconfig", kc("scheduler"),
		"--bind-address", "127.0.0.1", "--leader-elect=false", "--v=1"}}
	return []proc{etcd, api, cm, sched}
}

// nodeMaskFlags size each node's pod ranges. The per-family flags are
// refused for a single-stack cluster, which takes --node-cidr-mask-size.
func (o Options) nodeMaskFlags() []string {
	switch o.Family {
	case "ipv6":
		return []string{"--node-cidr-mask-size", strconv.Itoa(NodeMask6)}
	case "ipv4":
		return []string{"--node-cidr-mask-size", strconv.Itoa(NodeMask4)}
	}
	return []string{"--node-cidr-mask-size-ipv6", strconv.Itoa(NodeMask6), "--node-cidr-mask-size-ipv4", strconv.Itoa(NodeMask4)}
}

// kubectl runs the lab's kubectl from the host namespace.
func (c *cluster) kubectl(args ...string) (string, error) {
	return run("", append([]string{filepath.Join(c.bin, "kubectl"), "--kubeconfig", c.kubectlK}, args...)...)
}

func (c *cluster) startControlPlane(ctx context.Context, step func(string, ...any)) error {
	for _, pr := range c.controlPlane() {
		pid, err := start(c.p, pr)
		if err != nil {
			return err
		}
		c.procs[pr.name] = pid
		switch pr.name {
		case "etcd":
			err = waitFor(ctx, "the control plane's etcd", 30*time.Second, c.p.logFile("etcd"), func() (bool, string) {
				return probeHTTP(c.cpNS, etcdClient+"/health")
			})
		case "kube-apiserver":
			err = waitFor(ctx, "kube-apiserver /readyz", 90*time.Second, c.p.logFile("kube-apiserver"), func() (bool, string) {
				if !alive(pid) {
					return false, "it exited"
				}
				out, err := c.kubectl("get", "--raw", "/readyz")
				if err != nil {
					return false, strings.TrimSpace(out)
				}
				return true, ""
			})
		}
		if err != nil {
			return err
		}
		step("%s pid %d", pr.name, pid)
	}
	return nil
}
