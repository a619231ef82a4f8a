package doctor

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// checkCalicoPool checks a Calico IPPool: its prefix and block size, NAT
// outgoing for private prefixes (calico#2954: the IPv6 default pool has it
// off) and encapsulation, which Calico has no IPIP for in IPv6.
func checkCalicoPool(r *reporter, root *yaml.Node) {
	spec := get(root, "spec")
	obj := objectName(root)
	cidrNode := get(spec, "cidr")
	p, err := parsePrefix(strOf(cidrNode))
	if err != nil {
		r.add("CNI005", lineOf(cidrNode, spec, root), obj, "cidr "+err.Error(), "calicoctl and the API server reject the pool", "write the pool as a prefix without host bits")
		return
	}
	r.prefix(p, lineOf(cidrNode))
	lo, hi, def := 20, 32, 26
	if p.Addr().Is6() {
		lo, hi, def = 116, 128, 122
	}
	bs := def
	if n := get(spec, "blockSize"); n != nil {
		b, ok := integer(n)
		if !ok || b < lo || b > hi {
			r.add("CNI005", lineOf(n), obj, fmt.Sprintf("blockSize %s is outside %d to %d", strOf(n), lo, hi),
				"Calico rejects the pool: per-node blocks of this family must be in that range", fmt.Sprintf("use the default %d, or a value from %d to %d", def, lo, hi))
			return
		}
		bs = b
	}
	if bs < p.Bits() {
		r.add("CNI005", lineOf(get(spec, "blockSize"), cidrNode), obj, fmt.Sprintf("blockSize /%d is larger than the pool %s", bs, p),
			"Calico rejects the pool: a block is carved from the pool", fmt.Sprintf("use a pool of /%d or shorter, or a longer blockSize", bs))
	}
	if mode := strOf(get(spec, "ipipMode")); p.Addr().Is6() && mode != "" && mode != "Never" {
		r.add("CNI004", lineOf(get(spec, "ipipMode")), obj, fmt.Sprintf("ipipMode %s on the IPv6 pool %s", mode, p),
			"Calico has no IPIP for IPv6 (IPIP carries IPv4 only): the pool is rejected, or IPv6 pods across nodes cannot talk",
			"set ipipMode: Never and route the pool natively (BGP), or use vxlanMode (Calico 3.23 and later support VXLAN for IPv6)")
	}
	disabled, _ := boolean(get(spec, "disabled"))
	if nat, _ := boolean(get(spec, "natOutgoing")); !nat && !disabled && needsNAT(p) {
		r.add("CNI003", keyLine(spec, "natOutgoing", "cidr"), obj, fmt.Sprintf("the private pool %s has natOutgoing off", p),
			natText(p)+"; Calico's IPv6 pools have natOutgoing off by default (calico#2954), so pods reach other pods and nodes but not the internet",
			"set natOutgoing: true (or CALICO_IPV6POOL_NAT_OUTGOING=true for the default pool), or use a global prefix and advertise it with BGP")
	}
}

// checkFlannel checks Flannel's net-conf.json: IPv6 needs both
// IPv6Network and "EnableIPv6": true.
func checkFlannel(r *reporter, root *yaml.Node) {
	enable6, _ := boolean(get(root, "EnableIPv6"))
	enable4, set4 := boolean(get(root, "EnableIPv4"))
	if !set4 {
		enable4 = true
	}
	var fams []string
	for _, key := range []string{"Network", "IPv6Network"} {
		n := get(root, key)
		if n == nil {
			continue
		}
		p, err := parsePrefix(strOf(n))
		if err != nil {
			r.add("CNI005", lineOf(n), "flannel "+key, key+" "+err.Error(), "flanneld fails to start", "write the network as a prefix without host bits")
			continue
		}
		r.prefix(p, lineOf(n))
		fams = append(fams, family(p.Addr()))
	}
	has6 := contains(fams, IPv6)
	switch {
	case has6 && !enable6:
		r.add("CNI007", keyLine(root, "IPv6Network"), "flannel", "IPv6Network is set but \"EnableIPv6\": true is missing",
			"Flannel ignores IPv6Network unless EnableIPv6 is true: pods get IPv4 only, while the cluster's pod subnet promises IPv6",
			"add \"EnableIPv6\": true next to IPv6Network")
	case enable6 && !has6:
		r.add("CNI007", keyLine(root, "EnableIPv6"), "flannel", "\"EnableIPv6\" is true but there is no IPv6Network",
			"flanneld fails to start: it has no IPv6 range to lease node subnets from", "add \"IPv6Network\": the cluster's IPv6 pod subnet")
	case enable4 && !enable6 && len(fams) > 0:
		r.add("CNI001", keyLine(root, "Network"), "flannel", "Flannel addresses IPv4 only",
			"pods get no IPv6 address: the cluster is IPv4-only whatever kubeadm's ranges say",
			"add \"IPv6Network\" (the IPv6 pod subnet) and \"EnableIPv6\": true")
	}
}
