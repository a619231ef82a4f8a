// Package netpol compiles Kubernetes NetworkPolicy objects
// (networking.k8s.io/v1), with the pods and namespaces they select, into
// policy.Result: the rules every pod is subject to. It is pure: no
// client-go, no kernel; internal/kube feeds it what its informers hold,
// and internal/firewall renders the answer into nftables.
//
// The semantics are upstream's, in both families at once: an ipBlock
// 0.0.0.0/0 opens IPv4 only and ::/0 IPv6 only, so a pod that a policy
// selects is isolated in both families, whatever families its rules name.
package netpol

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/duetnet/duet/internal/policy"
)

// pod is what policy needs of a Pod that takes part: selected, or a peer.
type pod struct {
	ns, name string
	labels   labels.Set
	addrs    []netip.Addr // IPv6 first
	ports    []corev1.ContainerPort
}

func (p *pod) key() string { return p.ns + "/" + p.name }

// compiler holds the pods and namespaces a Compile call reads.
type compiler struct {
	pods     []*pod // eligible, sorted by key
	byNS     map[string][]*pod
	nsLabels map[string]labels.Set
	problems []Problem
	// checkOnly: rules are read for their problems only, and match no
	// peers (a policy that selects no wanted pod).
	checkOnly bool
}

// Compile turns policies, pods and namespaces into the rules each pod is
// subject to. Every pod that takes part is in the result, isolated or not;
// pods on the host's network, without IPs, or terminated (Succeeded,
// Failed) are in policy.Result.Skipped and are neither selected nor peers. A
// part of a policy that cannot be rendered is reported as a Problem (see
// Problem for what it costs); the rest still applies.
//
// A namespace missing from nss is taken to have only the label the API
// server puts on every namespace, kubernetes.io/metadata.name.
func Compile(pols []*netv1.NetworkPolicy, pods []*corev1.Pod, nss []*corev1.Namespace) (policy.Result, []Problem) {
	return CompileFor(pols, pods, nss, nil)
}

// CompileFor is Compile for the pods want accepts (nil: every pod): every
// pod is still a peer, but only the wanted ones are in Result.Pods, so a
// node compiles its own pods' rules, not the cluster's. Result.Owners
// names the owner of every address, wanted or not, for explanations. A
// policy selecting no wanted pod is only checked: its problems are
// reported, its peers not matched.
func CompileFor(pols []*netv1.NetworkPolicy, pods []*corev1.Pod, nss []*corev1.Namespace, want func(namespace, name string) bool) (policy.Result, []Problem) {
	c := &compiler{byNS: map[string][]*pod{}, nsLabels: map[string]labels.Set{}}
	var res policy.Result
	res.Skipped = c.addPods(pods)
	c.addNamespaces(nss)

	res.Owners = make(map[netip.Addr]string, 2*len(c.pods))
	for _, p := range c.pods {
		for _, a := range p.addrs {
			res.Owners[a] = p.key()
		}
		if want == nil || want(p.ns, p.name) {
			res.Pods = append(res.Pods, policy.PodRules{Namespace: p.ns, Name: p.name, Addrs: p.addrs})
		}
	}
	rules := make(map[string]*policy.PodRules, len(res.Pods))
	for i := range res.Pods {
		rules[res.Pods[i].Key()] = &res.Pods[i]
	}

	pols = slices.Clone(pols)
	slices.SortFunc(pols, func(a, b *netv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, pol := range pols {
		c.apply(pol, rules)
	}
	return res, c.problems
}

// apply adds what pol allows to every pod it selects.
func (c *compiler) apply(pol *netv1.NetworkPolicy, rules map[string]*policy.PodRules) {
	name := pol.Namespace + "/" + pol.Name
	sel, err := metav1.LabelSelectorAsSelector(&pol.Spec.PodSelector)
	if err != nil {
		c.problem(name, "spec.podSelector", err.Error())
		return
	}
	in, eg := c.policyTypes(pol)
	var selected []*pod
	for _, p := range c.byNS[pol.Namespace] {
		if rules[p.key()] != nil && sel.Matches(p.labels) {
			selected = append(selected, p)
		}
	}
	// A policy selecting no wanted pod is compiled for its problems only:
	// its rules are read, their peers not matched.
	c.checkOnly = len(selected) == 0
	defer func() { c.checkOnly = false }()
	var ins, egs []*crule
	for i := range pol.Spec.Ingress {
		if r := &pol.Spec.Ingress[i]; in {
			ins = append(ins, c.rule(pol, policy.Ref{Namespace: pol.Namespace, Name: pol.Name, Dir: policy.Ingress, Index: i}, r.From, r.Ports))
		}
	}
	for i := range pol.Spec.Egress {
		if r := &pol.Spec.Egress[i]; eg {
			egs = append(egs, c.rule(pol, policy.Ref{Namespace: pol.Namespace, Name: pol.Name, Dir: policy.Egress, Index: i}, r.To, r.Ports))
		}
	}
	if len(selected) == 0 {
		return
	}
	if in {
		for _, p := range selected {
			d := direction(&rules[p.key()].Ingress, name)
			for _, cr := range ins {
				if cr != nil {
					cr.ingress(p, d)
				}
			}
		}
	}
	if eg {
		var all []policy.Rule
		var notes []string
		for _, cr := range egs {
			if cr != nil {
				rs, ns := cr.egress(c)
				all, notes = append(all, rs...), append(notes, ns...)
			}
		}
		for _, p := range selected {
			d := direction(&rules[p.key()].Egress, name)
			d.Rules = append(d.Rules, all...)
			d.Notes = append(d.Notes, notes...)
		}
	}
}

// direction returns *d, isolated by policy name (made so if it was not yet).
func direction(d **policy.Direction, name string) *policy.Direction {
	if *d == nil {
		*d = &policy.Direction{}
	}
	(*d).Policies = append((*d).Policies, name)
	return *d
}

// policyTypes defaults as the API server does: policy.Ingress always, policy.Egress if
// the policy has egress rules. Rules of a type not listed are ignored.
func (c *compiler) policyTypes(pol *netv1.NetworkPolicy) (in, eg bool) {
	if len(pol.Spec.PolicyTypes) == 0 {
		return true, len(pol.Spec.Egress) > 0
	}
	for i, t := range pol.Spec.PolicyTypes {
		switch t {
		case netv1.PolicyTypeIngress:
			in = true
		case netv1.PolicyTypeEgress:
			eg = true
		default:
			c.problem(pol.Namespace+"/"+pol.Name, fieldIndex("spec.policyTypes", i), "unknown policy type "+string(t))
		}
	}
	return in, eg
}

func (c *compiler) problem(policy, field, msg string) {
	c.problems = append(c.problems, Problem{Policy: policy, Field: field, Msg: msg})
}

// addPods keeps the pods that take part and says why the others do not.
func (c *compiler) addPods(pods []*corev1.Pod) []policy.Skipped {
	var skipped []policy.Skipped
	seen := map[string]bool{}
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		reason := ""
		switch {
		case seen[key]:
			reason = "listed twice"
		case p.Spec.HostNetwork:
			reason = "on the host's network"
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			reason = "terminated (" + string(p.Status.Phase) + ")"
		}
		var addrs []netip.Addr
		if reason == "" {
			if addrs = podAddrs(p); len(addrs) == 0 {
				reason = "no IPs yet"
			}
		}
		if reason != "" {
			skipped = append(skipped, policy.Skipped{Pod: key, Reason: reason})
			continue
		}
		seen[key] = true
		var ports []corev1.ContainerPort
		for _, ctr := range p.Spec.Containers {
			ports = append(ports, ctr.Ports...)
		}
		c.pods = append(c.pods, &pod{ns: p.Namespace, name: p.Name, labels: labels.Set(p.Labels), addrs: addrs, ports: ports})
	}
	slices.SortFunc(c.pods, func(a, b *pod) int { return strings.Compare(a.key(), b.key()) })
	for _, p := range c.pods {
		c.byNS[p.ns] = append(c.byNS[p.ns], p)
	}
	slices.SortFunc(skipped, func(a, b policy.Skipped) int { return strings.Compare(a.Pod, b.Pod) })
	return skipped
}

// podAddrs reads status.podIPs (status.podIP when it is empty), IPv6
// first; an address that does not parse is left out.
func podAddrs(p *corev1.Pod) []netip.Addr {
	var raw []string
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw = []string{p.Status.PodIP}
	}
	var out []netip.Addr
	for _, s := range raw {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		if a.Is6() != b.Is6() {
			if a.Is6() {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

// addNamespaces records every namespace's labels; namespaces known only
// from their pods get the one label the API server always sets.
func (c *compiler) addNamespaces(nss []*corev1.Namespace) {
	for _, ns := range nss {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[corev1.LabelMetadataName] = ns.Name
		c.nsLabels[ns.Name] = l
	}
	for ns := range c.byNS {
		if c.nsLabels[ns] == nil {
			c.nsLabels[ns] = labels.Set{corev1.LabelMetadataName: ns}
		}
	}
}

// Problem is a part of a policy that cannot be rendered. The rule it is in
// allows nothing (the policy still isolates the pods it selects); a
// problem in the policy's own podSelector or policyTypes drops what cannot
// be read. Other policies apply unchanged.
type Problem struct {
	Policy string // "ns/name"
	Field  string // "spec.ingress[0].from[1].ipBlock.except[0]"
	Msg    string
}

func (p Problem) Error() string {
	return fmt.Sprintf("networkpolicy %s: %s: %s", p.Policy, p.Field, p.Msg)
}
