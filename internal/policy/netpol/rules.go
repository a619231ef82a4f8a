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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/duetnet/duet/internal/policy"
)

// crule is one ingress or egress rule of a policy with its peers resolved;
// what is left is resolving named ports, which depends on the destination
// pod.
type crule struct {
	ref    policy.Ref
	any    bool           // no peers listed
	blocks []netip.Prefix // ipBlocks minus their excepts, policy.Union
	peers  []*pod         // pods the selectors match
	text   []string

	hasPorts bool               // the rule lists ports (none listed: all traffic)
	ports    []policy.PortRange // numeric ports and protocol-only entries
	named    []namedPort

	// union is allPeers' answer, computed once: every pod the policy
	// selects shares it (read-only), so a policy selecting many pods
	// costs one Union, not one per pod.
	union    []netip.Prefix
	unionSet bool
}

// allPeers is the rule's peers as prefixes: its ipBlocks and its pods'
// addresses, as one policy.Union. Callers must not modify it.
func (cr *crule) allPeers() []netip.Prefix {
	if !cr.unionSet {
		peers := slices.Clone(cr.blocks)
		for _, p := range cr.peers {
			peers = append(peers, hosts(p.addrs)...)
		}
		cr.union, cr.unionSet = policy.Union(peers), true
	}
	return cr.union
}

type namedPort struct {
	proto policy.Proto
	name  string
}

func (n namedPort) String() string { return n.proto.String() + "/" + n.name }

// rule compiles one rule of pol, or reports it and returns nil: a rule
// with any part that cannot be read allows nothing, since dropping only
// that part (a port, a peer, an except) could widen it.
func (c *compiler) rule(pol *netv1.NetworkPolicy, ref policy.Ref, peers []netv1.NetworkPolicyPeer, ports []netv1.NetworkPolicyPort) *crule {
	name := ref.Policy()
	field, peerField := fieldIndex("spec.ingress", ref.Index), "from"
	if ref.Dir == policy.Egress {
		field, peerField = fieldIndex("spec.egress", ref.Index), "to"
	}
	cr := &crule{ref: ref, any: len(peers) == 0, hasPorts: len(ports) > 0}
	ok := true
	bad := func(f, msg string) {
		c.problem(name, f, msg)
		ok = false
	}
	seen := map[*pod]bool{}
	for j := range peers {
		peer, f := &peers[j], fieldIndex(field+"."+peerField, j)
		switch {
		case peer.IPBlock != nil && (peer.PodSelector != nil || peer.NamespaceSelector != nil):
			bad(f, "ipBlock cannot be combined with podSelector or namespaceSelector")
		case peer.IPBlock != nil:
			ps, err := ipBlock(peer.IPBlock)
			if err != nil {
				bad(f+".ipBlock."+err.field, err.msg)
				continue
			}
			cr.blocks = append(cr.blocks, ps...)
			t := "ipBlock " + peer.IPBlock.CIDR
			if len(peer.IPBlock.Except) > 0 {
				t += " except " + strings.Join(peer.IPBlock.Except, ", ")
			}
			cr.text = append(cr.text, t)
		case peer.PodSelector == nil && peer.NamespaceSelector == nil:
			bad(f, "a peer needs a podSelector, a namespaceSelector or an ipBlock")
		default:
			pods, text, err := c.selectPeers(pol.Namespace, peer.PodSelector, peer.NamespaceSelector)
			if err != nil {
				bad(f, err.Error())
				continue
			}
			for _, p := range pods {
				if !seen[p] {
					seen[p] = true
					cr.peers = append(cr.peers, p)
				}
			}
			cr.text = append(cr.text, text)
		}
	}
	cr.blocks = policy.Union(cr.blocks)
	for k := range ports {
		if err := cr.addPort(&ports[k]); err != nil {
			bad(fieldIndex(field+".ports", k)+"."+err.field, err.msg)
		}
	}
	if !ok {
		return nil
	}
	return cr
}

type fieldError struct{ field, msg string }

// ipBlock returns the prefixes of b: its CIDR minus its excepts. Each
// except must lie strictly inside the CIDR, as the API requires.
func ipBlock(b *netv1.IPBlock) ([]netip.Prefix, *fieldError) {
	cidr, err := parseCIDR(b.CIDR)
	if err != nil {
		return nil, &fieldError{"cidr", err.Error()}
	}
	var except []netip.Prefix
	for i, s := range b.Except {
		e, err := parseCIDR(s)
		if err != nil {
			return nil, &fieldError{fieldIndex("except", i), err.Error()}
		}
		if e.Addr().Is4() != cidr.Addr().Is4() || e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()) {
			return nil, &fieldError{fieldIndex("except", i), fmt.Sprintf("%s is not strictly inside cidr %s", s, b.CIDR)}
		}
		except = append(except, e)
	}
	return policy.Subtract(cidr, except), nil
}

// parseCIDR accepts what the API accepts, host bits included (masked
// off). An IPv4-mapped IPv6 CIDR is refused: which family it means is
// exactly the question this package must never guess.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%s is an IPv4-mapped IPv6 CIDR: write the IPv4 CIDR", s)
	}
	return p.Masked(), nil
}

// selectPeers returns the pods a peer's selectors match: podSelector alone
// in the policy's namespace, namespaceSelector alone every pod in the
// matching namespaces, both the matching pods in the matching namespaces.
func (c *compiler) selectPeers(policyNS string, podSel, nsSel *metav1.LabelSelector) ([]*pod, string, error) {
	ps := labels.Everything()
	if podSel != nil {
		var err error
		if ps, err = metav1.LabelSelectorAsSelector(podSel); err != nil {
			return nil, "", fmt.Errorf("podSelector: %w", err)
		}
	}
	namespaces := []string{policyNS}
	where := "in namespace " + policyNS
	if nsSel != nil {
		s, err := metav1.LabelSelectorAsSelector(nsSel)
		if err != nil {
			return nil, "", fmt.Errorf("namespaceSelector: %w", err)
		}
		namespaces = namespaces[:0]
		for ns, l := range c.nsLabels {
			if s.Matches(l) {
				namespaces = append(namespaces, ns)
			}
		}
		slices.Sort(namespaces)
		where = "in namespaces " + s.String()
		if s.Empty() {
			where = "in all namespaces"
		}
	}
	if c.checkOnly {
		return nil, "", nil
	}
	var out []*pod
	for _, ns := range namespaces {
		for _, p := range c.byNS[ns] {
			if ps.Matches(p.labels) {
				out = append(out, p)
			}
		}
	}
	what := "all pods"
	if !ps.Empty() {
		what = "pods " + ps.String()
	}
	return out, fmt.Sprintf("%s %s (%d)", what, where, len(out)), nil
}

// addPort adds one NetworkPolicyPort: protocol policy.TCP unless given; no port
// is every port of the protocol; a name is resolved later, against the
// destination pod.
func (cr *crule) addPort(pp *netv1.NetworkPolicyPort) *fieldError {
	proto := policy.TCP
	if pp.Protocol != nil {
		var ok bool
		if proto, ok = protocol(*pp.Protocol); !ok {
			return &fieldError{"protocol", fmt.Sprintf("unsupported protocol %q", *pp.Protocol)}
		}
	}
	switch {
	case pp.Port == nil:
		if pp.EndPort != nil {
			return &fieldError{"endPort", "endPort needs a numeric port"}
		}
		cr.ports = append(cr.ports, policy.PortRange{Proto: proto, From: 0, To: 65535})
	case pp.Port.Type == intstr.String:
		if pp.EndPort != nil {
			return &fieldError{"endPort", "endPort cannot follow a named port"}
		}
		if errs := validation.IsValidPortName(pp.Port.StrVal); len(errs) > 0 {
			return &fieldError{"port", fmt.Sprintf("%q: %s", pp.Port.StrVal, strings.Join(errs, "; "))}
		}
		cr.named = append(cr.named, namedPort{proto, pp.Port.StrVal})
	default:
		from, to := pp.Port.IntVal, pp.Port.IntVal
		if from < 1 || from > 65535 {
			return &fieldError{"port", fmt.Sprintf("port %d is outside 1-65535", from)}
		}
		if pp.EndPort != nil {
			if to = *pp.EndPort; to < from || to > 65535 {
				return &fieldError{"endPort", fmt.Sprintf("endPort %d is not in %d-65535", to, from)}
			}
		}
		cr.ports = append(cr.ports, policy.PortRange{Proto: proto, From: uint16(from), To: uint16(to)})
	}
	return nil
}

func protocol(p corev1.Protocol) (policy.Proto, bool) {
	switch p {
	case corev1.ProtocolTCP:
		return policy.TCP, true
	case corev1.ProtocolUDP:
		return policy.UDP, true
	case corev1.ProtocolSCTP:
		return policy.SCTP, true
	}
	return 0, false
}

// resolve returns the ports of p that the named ports name, with the
// same protocol (a container port's protocol defaults to policy.TCP).
func (cr *crule) resolve(p *pod) []policy.PortRange {
	var out []policy.PortRange
	for _, n := range cr.named {
		for _, cp := range p.ports {
			proto, ok := policy.TCP, true
			if cp.Protocol != "" {
				proto, ok = protocol(cp.Protocol)
			}
			if ok && cp.Name == n.name && proto == n.proto && cp.ContainerPort >= 1 && cp.ContainerPort <= 65535 {
				out = append(out, policy.PortRange{Proto: proto, From: uint16(cp.ContainerPort), To: uint16(cp.ContainerPort)})
			}
		}
	}
	return out
}

// ingress adds the rule to d, the ingress of the selected pod self: named
// ports resolve against self, the destination, so they apply to every
// peer, ipBlocks included.
func (cr *crule) ingress(self *pod, d *policy.Direction) {
	ports := append(slices.Clone(cr.ports), cr.resolve(self)...)
	if cr.hasPorts && len(ports) == 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%s allows nothing: this pod has no port named %s", cr.ref, cr.namedList()))
		return
	}
	peers := cr.allPeers()
	if !cr.any && len(peers) == 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%s allows nothing: its peers match no address", cr.ref))
		return
	}
	d.Rules = append(d.Rules, policy.Rule{Source: cr.ref, AnyPeer: cr.any, Peers: peers, Ports: policy.MergePorts(ports), PeerText: cr.text})
}

// egress returns the rule's Rules, the same for every selected pod: named
// ports resolve against each destination pod, so peers are grouped by the
// ports they resolve to. An address that is no pod's cannot resolve a
// named port: an ipBlock (or no peers at all) matches named ports only on
// the pods inside it.
func (cr *crule) egress(c *compiler) ([]policy.Rule, []string) {
	if !cr.hasPorts {
		peers := cr.allPeers()
		if !cr.any && len(peers) == 0 {
			return nil, []string{fmt.Sprintf("%s allows nothing: its peers match no address", cr.ref)}
		}
		return []policy.Rule{{Source: cr.ref, AnyPeer: cr.any, Peers: peers, PeerText: cr.text}}, nil
	}
	var out []policy.Rule
	base := policy.MergePorts(cr.ports)
	if len(base) > 0 && (cr.any || len(cr.blocks) > 0) {
		out = append(out, policy.Rule{Source: cr.ref, AnyPeer: cr.any, Peers: cr.blocks, Ports: base, PeerText: cr.text})
	}
	groups := map[string]*policy.Rule{}
	add := func(ports []policy.PortRange, addrs []netip.Addr) {
		if len(ports) == 0 || len(addrs) == 0 {
			return
		}
		ports = policy.MergePorts(ports)
		key := fmt.Sprint(ports)
		g := groups[key]
		if g == nil {
			g = &policy.Rule{Source: cr.ref, Ports: ports, PeerText: cr.text}
			groups[key] = g
		}
		g.Peers = append(g.Peers, hosts(addrs)...)
	}
	for _, p := range cr.peers {
		add(append(slices.Clone(base), cr.resolve(p)...), p.addrs)
	}
	if len(cr.named) > 0 && (cr.any || len(cr.blocks) > 0) {
		for _, p := range c.pods {
			var in []netip.Addr
			for _, a := range p.addrs {
				if cr.any || slices.ContainsFunc(cr.blocks, func(b netip.Prefix) bool { return b.Contains(a) }) {
					in = append(in, a)
				}
			}
			add(cr.resolve(p), in)
		}
	}
	for _, key := range sortedKeys(groups) {
		g := groups[key]
		g.Peers = policy.Union(g.Peers)
		out = append(out, *g)
	}
	if len(out) == 0 {
		return nil, []string{fmt.Sprintf("%s allows nothing: no destination has port %s", cr.ref, cr.allPortsText())}
	}
	return out, nil
}

func (cr *crule) namedList() string {
	var s []string
	for _, n := range cr.named {
		s = append(s, n.String())
	}
	return strings.Join(s, ", ")
}

func (cr *crule) allPortsText() string {
	var s []string
	for _, p := range cr.ports {
		s = append(s, p.String())
	}
	if n := cr.namedList(); n != "" {
		s = append(s, n)
	}
	return strings.Join(s, ", ")
}

// hosts turns addresses into /32 and /128 prefixes.
func hosts(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

func fieldIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
