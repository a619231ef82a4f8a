package doctor

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// version is a Kubernetes minor version; zero means unknown.
type version struct{ major, minor int }

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)`)

func parseVersion(s string) version {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return version{}
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return version{major, minor}
}

func (v version) known() bool            { return v.major > 0 }
func (v version) before(minor int) bool  { return v.major == 1 && v.minor < minor }
func (v version) String() string         { return fmt.Sprintf("%d.%d", v.major, v.minor) }
func (v version) atLeast(minor int) bool { return v.known() && !v.before(minor) }

// subnets reads a comma-separated CIDR list, reporting KUBEADM001.
func subnets(r *reporter, n *yaml.Node, field string) []netip.Prefix {
	s, ok := str(n)
	if !ok {
		return nil
	}
	ps, err := checkDualList(s)
	if err != nil {
		r.add("KUBEADM001", lineOf(n), field, field+" "+err.Error(),
			"kubeadm init refuses the configuration, or the control plane starts with a range it cannot use",
			"write one prefix per family, comma-separated, e.g. \"fd3c:9a71:52e0::/56,10.244.0.0/16\"")
		return nil
	}
	for _, p := range ps {
		r.prefix(p, lineOf(n))
	}
	return ps
}

// checkKubeadm checks a ClusterConfiguration (or kubeadm init's flags).
func checkKubeadm(r *reporter, root *yaml.Node) {
	v := parseVersion(strOf(get(root, "kubernetesVersion")))
	podNode, svcNode := get(root, "networking", "podSubnet"), get(root, "networking", "serviceSubnet")
	pods := subnets(r, podNode, "podSubnet")
	svcs := subnets(r, svcNode, "serviceSubnet")
	if len(pods) > 0 && len(svcs) > 0 {
		pf, sf := families(pods), families(svcs)
		switch {
		case len(pf) != len(sf) || !contains(sf, pf[0]):
			r.add("KUBEADM002", lineOf(svcNode), "networking", fmt.Sprintf("podSubnet covers %s but serviceSubnet covers %s", strings.Join(pf, " and "), strings.Join(sf, " and ")),
				"a dual-stack cluster needs both families in both ranges: pods of a family with no service range cannot have Services of that family, and the API server and controller manager disagree about the cluster's families",
				"give podSubnet and serviceSubnet one prefix of each family the cluster should have")
		case len(pf) == 2 && pf[0] != sf[0]:
			r.add("KUBEADM003", lineOf(svcNode), "networking", fmt.Sprintf("podSubnet lists %s first but serviceSubnet lists %s first", pf[0], sf[0]),
				"the first family is the primary one: single-stack Services take the service range's first family, pods report the pod range's first family as status.podIP, so defaults disagree between pods and Services",
				"list the same family first in both, IPv6 first for an IPv6-primary cluster")
		}
	}
	checkNodeMasks(r, root, pods)
	checkServiceSize(r, svcNode, svcs, v)
	checkDualStackGate(r, root, v, len(pods) == 2 || len(svcs) == 2)
}

func strOf(n *yaml.Node) string { s, _ := str(n); return s }

// extraArg reads a component's extra argument in v1beta3 (a map) or
// v1beta4 (a list of name/value) form.
func extraArg(root *yaml.Node, component, name string) *yaml.Node {
	args := get(root, component, "extraArgs")
	if v := get(args, name); v != nil {
		return v
	}
	for _, a := range items(args) {
		if n, _ := str(get(a, "name")); n == name {
			return get(a, "value")
		}
	}
	return nil
}

func checkNodeMasks(r *reporter, root *yaml.Node, pods []netip.Prefix) {
	if single := extraArg(root, "controllerManager", "node-cidr-mask-size"); single != nil && len(pods) == 2 {
		r.add("KUBEADM004", lineOf(single), "controllerManager", "node-cidr-mask-size is set on a dual-stack cluster",
			"kube-controller-manager refuses to start: with two pod families the mask must be given per family",
			"use node-cidr-mask-size-ipv4 and node-cidr-mask-size-ipv6 instead")
	}
	for _, p := range pods {
		key, mask := "node-cidr-mask-size-ipv4", 24
		if p.Addr().Is6() {
			key, mask = "node-cidr-mask-size-ipv6", 64
		}
		n := extraArg(root, "controllerManager", key)
		if m, ok := integer(n); ok {
			mask = m
		} else if len(pods) == 1 {
			if m, ok := integer(extraArg(root, "controllerManager", "node-cidr-mask-size")); ok {
				mask = m
			}
		}
		switch {
		case mask <= p.Bits() || mask > p.Addr().BitLen():
			r.add("KUBEADM004", lineOf(n, get(root, "networking", "podSubnet")), "controllerManager", fmt.Sprintf("the per-node mask /%d does not fit inside pod subnet %s", mask, p),
				"each node's pod CIDR is carved from the pod subnet: a mask no longer than the subnet's leaves room for one node at most, and kube-controller-manager refuses it",
				fmt.Sprintf("set %s longer than /%d (the default is /%d for IPv4, /64 for IPv6)", key, p.Bits(), 24))
		case mask-p.Bits() > 16:
			r.add("KUBEADM004", lineOf(n, get(root, "networking", "podSubnet")), "controllerManager", fmt.Sprintf("pod subnet %s with per-node mask /%d makes %d bits of node index", p, mask, mask-p.Bits()),
				"kubeadm and kube-controller-manager allow at most 16 bits between the pod subnet and the node mask",
				fmt.Sprintf("use a pod subnet of /%d or longer, or a shorter %s", mask-16, key))
		}
	}
}

func checkServiceSize(r *reporter, n *yaml.Node, svcs []netip.Prefix, v version) {
	for _, p := range svcs {
		hostBits := p.Addr().BitLen() - p.Bits()
		limit := "at most 2^20 addresses (an IPv6 /108, an IPv4 /12) before Kubernetes 1.33"
		switch {
		case v.atLeast(33) && p.Addr().Is6() && p.Bits() < 64:
			r.add("KUBEADM008", lineOf(n), "serviceSubnet", fmt.Sprintf("service subnet %s is larger than /64", p),
				"from 1.33 (MultiCIDRServiceAllocator) an IPv6 service range may be at most a /64", "use a /64 to /112 for IPv6 services")
		case v.known() && v.before(33) && hostBits > 20:
			r.add("KUBEADM008", lineOf(n), "serviceSubnet", fmt.Sprintf("service subnet %s is too large for Kubernetes %s", p, v),
				"kube-apiserver (and kubeadm's validation) allow "+limit+": the control plane does not start",
				fmt.Sprintf("use a /%d or longer (e.g. /112 for IPv6)", p.Addr().BitLen()-20))
		case !v.known() && hostBits > 20:
			r.add("KUBEADM009", lineOf(n), "serviceSubnet", fmt.Sprintf("service subnet %s is larger than 2^20 addresses and no kubernetesVersion is given", p),
				"kube-apiserver allows "+limit+": on such versions the control plane does not start",
				fmt.Sprintf("use a /%d or longer (e.g. /112 for IPv6), or set kubernetesVersion to 1.33 or later", p.Addr().BitLen()-20))
		}
	}
}

// gates finds the IPv6DualStack feature gate wherever kubeadm passes it.
func dualStackGate(root *yaml.Node) (node *yaml.Node, value bool) {
	if n := get(root, "featureGates", "IPv6DualStack"); n != nil {
		v, _ := boolean(n)
		return n, v
	}
	for _, c := range []string{"apiServer", "controllerManager", "scheduler"} {
		n := extraArg(root, c, "feature-gates")
		for _, kv := range strings.Split(strOf(n), ",") {
			if k, val, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "IPv6DualStack" {
				return n, strings.TrimSpace(val) == "true"
			}
		}
	}
	return nil, false
}

func checkDualStackGate(r *reporter, root *yaml.Node, v version, dual bool) {
	gate, on := dualStackGate(root)
	switch {
	case dual && v.known() && v.before(16):
		r.add("KUBEADM005", keyLine(root, "kubernetesVersion"), "kubernetesVersion", fmt.Sprintf("dual-stack pod or service ranges on Kubernetes %s", v),
			"dual-stack exists from 1.16 (alpha)", "upgrade to 1.23 or later, where dual-stack is stable and on by default")
	case dual && v.known() && v.before(21) && !on:
		r.add("KUBEADM005", keyLine(root, "featureGates", "kubernetesVersion"), "featureGates", fmt.Sprintf("dual-stack ranges on Kubernetes %s without the IPv6DualStack feature gate", v),
			"from 1.16 to 1.20 dual-stack is alpha and off: the components reject a second range or ignore it",
			"set featureGates: {IPv6DualStack: true} (kubeadm --feature-gates IPv6DualStack=true), or upgrade to 1.23 or later")
	case gate != nil && v.atLeast(25):
		r.add("KUBEADM006", lineOf(gate), "featureGates", fmt.Sprintf("the IPv6DualStack feature gate is set on Kubernetes %s", v),
			"the gate was removed in 1.25 (dual-stack is GA since 1.23): kubeadm and the components fail on an unknown feature gate", "remove IPv6DualStack from every feature-gates list")
	case gate != nil && !on && v.atLeast(21) && (dual || v.atLeast(23)):
		r.add("KUBEADM006", lineOf(gate), "featureGates", fmt.Sprintf("IPv6DualStack=false on Kubernetes %s", v),
			"from 1.21 the gate is on by default and from 1.23 locked on: false either breaks the dual-stack ranges or fails validation", "remove IPv6DualStack=false")
	case gate != nil && !v.known():
		r.add("KUBEADM007", lineOf(gate), "featureGates", "the IPv6DualStack feature gate is set and no kubernetesVersion says which Kubernetes this is for",
			"the gate is needed on 1.16 to 1.20, does nothing from 1.23 and was removed in 1.25: current kubeadm fails with an unknown feature gate",
			"on 1.23 or later remove it; on 1.16 to 1.20 keep it and set kubernetesVersion (kubeadm --kubernetes-version) so the intent is explicit")
	}
}

// checkKubeProxy checks a KubeProxyConfiguration: clusterCIDR must name the
// pod ranges of every family, or kube-proxy cannot tell pod traffic from
// outside traffic in that family.
func checkKubeProxy(r *reporter, root *yaml.Node, cl *cluster) {
	n := get(root, "clusterCIDR")
	s, ok := str(n)
	if ok && s != "" {
		ps, err := checkDualList(s)
		if err != nil {
			r.add("KUBEADM001", lineOf(n), "clusterCIDR", "kube-proxy clusterCIDR "+err.Error(),
				"kube-proxy fails to start", "write one prefix per family, comma-separated, as in podSubnet")
		} else if cl != nil && len(cl.pods) > 0 {
			for _, p := range ps {
				r.prefix(p, lineOf(n))
			}
			if !samePrefixes(ps, cl.pods) {
				what := fmt.Sprintf("kube-proxy clusterCIDR %s is not the pod subnet %s (%s:%d)", s, joinPrefixes(cl.pods), cl.file, cl.line)
				if len(families(ps)) < len(families(cl.pods)) {
					what = fmt.Sprintf("kube-proxy clusterCIDR %s has no %s range, but the pod subnet %s (%s:%d) does", s, missing(families(cl.pods), families(ps)), joinPrefixes(cl.pods), cl.file, cl.line)
				}
				r.add("KUBEADM010", lineOf(n), "clusterCIDR", what,
					"kube-proxy uses clusterCIDR to tell pod traffic from outside traffic: in a family it lacks, traffic to Services from outside the cluster is not masqueraded and its replies go astray, or pod traffic is masqueraded needlessly",
					"set clusterCIDR to the pod subnet, both families, in the same order")
			}
		}
	}
	if gate := get(root, "featureGates", "IPv6DualStack"); gate != nil {
		v := version{}
		if cl != nil {
			v = cl.version
		}
		if v.atLeast(25) {
			r.add("KUBEADM006", lineOf(gate), "featureGates", fmt.Sprintf("kube-proxy's IPv6DualStack feature gate on Kubernetes %s", v),
				"the gate was removed in 1.25: kube-proxy fails on an unknown feature gate", "remove it")
		} else if !v.known() {
			r.add("KUBEADM007", lineOf(gate), "featureGates", "kube-proxy's IPv6DualStack feature gate is set and no kubernetesVersion is known",
				"the gate is needed on 1.16 to 1.20 only and was removed in 1.25: kube-proxy fails on an unknown feature gate", "on 1.23 or later remove it")
		}
	}
}

func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func missing(want, have []string) string {
	for _, w := range want {
		if !contains(have, w) {
			return w
		}
	}
	return ""
}
