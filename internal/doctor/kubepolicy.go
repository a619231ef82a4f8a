package doctor

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"
)

// checkNetworkPolicy checks the ipBlocks of each direction: both families
// or neither, and valid excepts.
func checkNetworkPolicy(r *reporter, root *yaml.Node) {
	obj := objectName(root)
	spec := get(root, "spec")
	for _, dir := range []struct{ name, peers string }{{"ingress", "from"}, {"egress", "to"}} {
		var fams []string
		var first *yaml.Node
		for _, rule := range items(get(spec, dir.name)) {
			for _, peer := range items(get(rule, dir.peers)) {
				block := get(peer, "ipBlock")
				if block == nil {
					continue
				}
				p, ok := checkIPBlock(r, obj, block)
				if !ok {
					continue
				}
				if first == nil {
					first = block
				}
				if f := family(p.Addr()); !contains(fams, f) {
					fams = append(fams, f)
				}
			}
		}
		if len(fams) != 1 {
			continue
		}
		other := otherFamily(fams[0])
		why := fmt.Sprintf("once a policy selects pods for %s, only what it lists is allowed, and ipBlock is the only way to allow addresses outside the cluster: every %s peer outside the cluster is denied while %s ones are allowed, so the same client works on one family and times out on the other", dir.name, other, fams[0])
		if dir.name == "egress" {
			why += "; egress to IPv4-only (or IPv6-only) APIs and DNS servers outside the cluster fails"
		}
		r.add("KUBE005", lineOf(first), obj, fmt.Sprintf("the %s ipBlocks cover %s only", dir.name, fams[0]), why,
			fmt.Sprintf("add the matching %s ipBlock next to each %s one (IPv4 and IPv6 rules can sit side by side in one policy), or say in a comment that %s is meant to be denied", other, fams[0], other))
	}
}

// checkIPBlock validates an ipBlock's cidr and excepts.
func checkIPBlock(r *reporter, obj string, block *yaml.Node) (netip.Prefix, bool) {
	s, _ := str(get(block, "cidr"))
	p, err := netip.ParsePrefix(s)
	if err != nil {
		r.add("KUBE006", lineOf(get(block, "cidr"), block), obj, fmt.Sprintf("ipBlock cidr %q is not a prefix", s),
			"the API server rejects the policy", "write a prefix such as 2001:db8::/32 or 192.0.2.0/24")
		return p, false
	}
	for _, e := range items(get(block, "except")) {
		es, _ := str(e)
		ep, err := netip.ParsePrefix(es)
		if err == nil && ep.Addr().BitLen() == p.Addr().BitLen() && ep.Bits() > p.Bits() && p.Contains(ep.Addr()) {
			continue
		}
		r.add("KUBE006", lineOf(e), obj, fmt.Sprintf("ipBlock except %q is not a prefix strictly inside cidr %s", es, p),
			"the API server rejects the policy: every except must be a smaller prefix of the same family inside cidr",
			"put the except in its own ipBlock of the right family, or fix the prefix")
	}
	return p.Masked(), true
}

// checkConfigMapFlannel checks Flannel's net-conf.json kept in a
// ConfigMap, with lines counted in the manifest.
func checkConfigMapFlannel(r *reporter, root *yaml.Node) {
	n := get(root, "data", "net-conf.json")
	s, ok := str(n)
	if !ok {
		return
	}
	conf, err := parseJSON([]byte(s))
	if err != nil {
		r.add("INPUT001", lineOf(n)+errLine(err), objectName(root), "net-conf.json is not valid JSON: "+err.Error(),
			"Flannel cannot start without its network configuration", "fix the JSON at the line given")
		return
	}
	offset := lineOf(n)
	if n.Style == yaml.LiteralStyle || n.Style == yaml.FoldedStyle {
		offset++ // the text starts on the line after "|"
	}
	shiftLines(conf, offset-1)
	saved := r.layer
	r.layer = LayerCNI
	checkFlannel(r, conf)
	r.layer = saved
}

func shiftLines(n *yaml.Node, by int) {
	if n == nil {
		return
	}
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
