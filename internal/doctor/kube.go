package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// cluster is what the inputs say about the cluster's service families,
// from a kubeadm ClusterConfiguration (or kubeadm init flags).
type cluster struct {
	services []netip.Prefix
	pods     []netip.Prefix
	version  version
	file     string
	line     int
}

func clusterOf(files []*File) *cluster {
	for _, f := range files {
		for _, d := range f.Docs {
			if d.Kind != KindKubeadm {
				continue
			}
			n := get(d.Root, "networking", "serviceSubnet")
			svcs, err := checkDualList(strOf(n))
			if err != nil {
				continue
			}
			pods, _ := checkDualList(strOf(get(d.Root, "networking", "podSubnet")))
			return &cluster{services: svcs, pods: pods, version: parseVersion(strOf(get(d.Root, "kubernetesVersion"))),
				file: f.Name, line: lineOf(n)}
		}
	}
	return nil
}

// objectName is "Kind namespace/name" for messages.
func objectName(root *yaml.Node) string {
	kind, _ := str(get(root, "kind"))
	name, _ := str(get(root, "metadata", "name"))
	if ns, ok := str(get(root, "metadata", "namespace")); ok {
		name = ns + "/" + name
	}
	return kind + " " + name
}

// checkKube checks one Kubernetes object.
func checkKube(r *reporter, root *yaml.Node, cl *cluster) {
	kind, _ := str(get(root, "kind"))
	switch kind {
	case "Service":
		checkService(r, root, cl)
	case "NetworkPolicy":
		checkNetworkPolicy(r, root)
	case "ConfigMap":
		checkConfigMapFlannel(r, root)
	case "List":
		for _, item := range items(get(root, "items")) {
			checkKube(r, item, cl)
		}
	}
	if spec := podSpec(root, kind); spec != nil {
		checkBinds(r, root, spec)
	}
}

var policies = []string{"SingleStack", "PreferDualStack", "RequireDualStack"}

func checkService(r *reporter, root *yaml.Node, cl *cluster) {
	spec := get(root, "spec")
	obj := objectName(root)
	if t, _ := str(get(spec, "type")); t == "ExternalName" {
		return
	}
	policyNode := get(spec, "ipFamilyPolicy")
	policy, _ := str(policyNode)
	var fams []string
	famsNode := get(spec, "ipFamilies")
	for _, f := range items(famsNode) {
		s, _ := str(f)
		fams = append(fams, s)
	}
	invalid := func(line int, what, fix string) {
		r.add("KUBE002", line, obj, what, "the API server rejects the Service (kubectl apply fails)", fix)
	}
	if old := get(spec, "ipFamily"); old != nil {
		v, _ := str(old)
		r.add("KUBE003", keyLine(spec, "ipFamily"), obj, fmt.Sprintf("spec.ipFamily: %s uses the alpha field removed in Kubernetes 1.20", v),
			"the field no longer exists: the API server rejects it (strict field validation) or drops it, and the Service gets the cluster's primary family whatever ipFamily says",
			fmt.Sprintf("write ipFamilyPolicy: SingleStack with ipFamilies: [%s], or PreferDualStack for both families", v))
	}
	if policy != "" && !contains(policies, policy) {
		invalid(lineOf(policyNode), fmt.Sprintf("ipFamilyPolicy %q is not a policy", policy), "use SingleStack, PreferDualStack or RequireDualStack")
	}
	for i, f := range fams {
		if f != IPv4 && f != IPv6 {
			invalid(lineOf(items(famsNode)[i]), fmt.Sprintf("ipFamilies has %q", f), "write IPv4 or IPv6, exactly so")
		}
	}
	switch {
	case len(fams) > 2 || len(fams) == 2 && fams[0] == fams[1]:
		invalid(lineOf(famsNode), fmt.Sprintf("ipFamilies %v lists a family twice", fams), "list each family at most once, the primary first")
	case len(fams) == 2 && policy == "SingleStack":
		invalid(lineOf(policyNode), "ipFamilyPolicy SingleStack with two ipFamilies", "use PreferDualStack (or RequireDualStack) for two families, or list one family")
	case len(fams) == 2 && policy == "":
		invalid(lineOf(famsNode), "two ipFamilies and no ipFamilyPolicy (which defaults to SingleStack)", "add ipFamilyPolicy: PreferDualStack or RequireDualStack")
	case policy == "" && get(spec, "ipFamily") == nil:
		r.add("KUBE001", lineOf(spec, root), obj, "the Service has no ipFamilyPolicy, so it is SingleStack",
			"it gets a cluster IP of one family only, the first of the cluster's service CIDRs (kubernetes#118897): clients of the other family cannot reach it, and a headless Service returns that family's addresses only",
			"set ipFamilyPolicy: PreferDualStack (it falls back to one family on single-stack clusters), or SingleStack with an explicit ipFamilies if one family is meant")
	}
	checkClusterIPs(r, spec, obj, policy, fams)
	if cl == nil {
		return
	}
	have := families(cl.services)
	if policy == "RequireDualStack" && len(have) < 2 {
		r.add("KUBE004", lineOf(policyNode), obj, fmt.Sprintf("RequireDualStack but the cluster's serviceSubnet (%s:%d) has %s only", cl.file, cl.line, strings.Join(have, "")),
			"the API server rejects it: \"this cluster is not configured for dual-stack services\"",
			"use PreferDualStack, or give the cluster a service CIDR of each family")
	}
	for _, f := range fams {
		if (f == IPv4 || f == IPv6) && !contains(have, f) {
			r.add("KUBE004", lineOf(famsNode), obj, fmt.Sprintf("ipFamilies lists %s but the cluster's serviceSubnet (%s:%d) has none", f, cl.file, cl.line),
				"the API server rejects a family it has no service CIDR for", "drop "+f+" from ipFamilies, or add a "+f+" service CIDR to the cluster")
		}
	}
}

func checkClusterIPs(r *reporter, spec *yaml.Node, obj, policy string, fams []string) {
	node := get(spec, "clusterIPs")
	var ipFams []string
	for _, n := range items(node) {
		s, _ := str(n)
		if s == "None" || s == "" {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			r.add("KUBE002", lineOf(n), obj, fmt.Sprintf("clusterIPs has %q, not an address", s), "the API server rejects the Service", "write an address from the service CIDR, or leave clusterIPs out")
			return
		}
		ipFams = append(ipFams, family(a))
	}
	if len(ipFams) == 2 && policy == "SingleStack" || len(ipFams) == 2 && ipFams[0] == ipFams[1] {
		r.add("KUBE002", lineOf(node), obj, fmt.Sprintf("clusterIPs of families %v do not fit ipFamilyPolicy %q", ipFams, policy), "the API server rejects the Service", "give one address per family, matching ipFamilies, with a dual-stack policy")
		return
	}
	for i, f := range ipFams {
		if i < len(fams) && fams[i] != f {
			r.add("KUBE002", lineOf(node), obj, fmt.Sprintf("clusterIPs[%d] is %s but ipFamilies[%d] is %s", i, f, i, fams[i]), "the API server rejects the Service", "list clusterIPs in the order of ipFamilies")
			return
		}
	}
}

// podSpec finds the pod template of a workload.
func podSpec(root *yaml.Node, kind string) *yaml.Node {
	switch kind {
	case "Pod":
		return get(root, "spec")
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController":
		return get(root, "spec", "template", "spec")
	case "CronJob":
		return get(root, "spec", "jobTemplate", "spec", "template", "spec")
	}
	return nil
}

// checkBinds looks for containers told to listen on 0.0.0.0 only.
func checkBinds(r *reporter, root, spec *yaml.Node) {
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range items(get(spec, list)) {
			var v4 *yaml.Node
			v6 := false
			var words []*yaml.Node
			words = append(words, items(get(c, "command"))...)
			words = append(words, items(get(c, "args"))...)
			for _, e := range items(get(c, "env")) {
				words = append(words, get(e, "value"))
			}
			for _, w := range words {
				s, _ := str(w)
				if strings.Contains(s, "0.0.0.0") && v4 == nil {
					v4 = w
				}
				v6 = v6 || strings.Contains(s, "::")
			}
			if v4 != nil && !v6 {
				name, _ := str(get(c, "name"))
				s, _ := str(v4)
				r.add("KUBE007", lineOf(v4), objectName(root)+" container "+name, fmt.Sprintf("the container is told to listen on 0.0.0.0 (%q)", s),
					"0.0.0.0 is the IPv4 wildcard: the server never sees IPv6 connections, so the pod's IPv6 address, and IPv6 Services in front of it, answer with connection refused",
					"listen on \"::\" (with IPV6_V6ONLY off it takes IPv4 too, as most servers do by default), or on both 0.0.0.0 and ::")
			}
		}
	}
}
