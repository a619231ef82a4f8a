package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/duetnet/duet/internal/ipam"
)

// Family names as Kubernetes writes them.
const (
	IPv6 = "IPv6"
	IPv4 = "IPv4"
)

// family is "IPv6" or "IPv4".
func family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

func otherFamily(f string) string {
	if f == IPv6 {
		return IPv4
	}
	return IPv6
}

// families lists the families of prefixes in first-seen order.
func families(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		f := family(p.Addr())
		if !contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parsePrefix parses a CIDR strictly: no host bits, no zone.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, fmt.Errorf("%q is not a prefix (write it like \"fd12:3456:789a::/48\" or \"10.0.0.0/16\")", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%q has host bits set: the prefix is %s", s, p.Masked())
	}
	return p, nil
}

// parsePrefixList parses a comma-separated list ("10.244.0.0/16,fd00::/56").
func parsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		p, err := parsePrefix(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// checkDualList checks a comma-separated list of at most one prefix per
// family, as Kubernetes wants for pod, service and cluster CIDRs.
func checkDualList(s string) ([]netip.Prefix, error) {
	ps, err := parsePrefixList(s)
	if err != nil {
		return nil, err
	}
	switch {
	case len(ps) == 0:
		return nil, fmt.Errorf("is empty")
	case len(ps) > 2:
		return nil, fmt.Errorf("%q has %d prefixes: at most two, one per family", s, len(ps))
	case len(ps) == 2 && family(ps[0].Addr()) == family(ps[1].Addr()):
		return nil, fmt.Errorf("%q has two %s prefixes: dual-stack needs one IPv4 and one IPv6", s, family(ps[0].Addr()))
	}
	return ps, nil
}

var ulaPrefix = netip.MustParsePrefix("fc00::/7")

func isULA(p netip.Prefix) bool { return ulaPrefix.Contains(p.Addr()) }

// needsNAT says whether addresses from p cannot go to the internet as they
// are: private IPv4, shared address space and ULA. The same rule decides
// duet's natOutgoing default.
func needsNAT(p netip.Prefix) bool {
	if p.Addr().Is4() && (p.Addr().IsLinkLocalUnicast() || p.Addr().IsLoopback()) {
		return false
	}
	return ipam.DefaultNATOutgoing(p)
}

// nonRandomULA says whether a ULA network prefix was picked by hand:
// fc00::/8 (never assigned) or a Global ID starting with 16 zero bits, as
// in the fd00:: examples copied from articles. A random Global ID (RFC
// 4193) does that once in 65,536. Prefixes shorter than /24 (fd00::/8 in a
// policy) choose no Global ID and are not judged.
func nonRandomULA(p netip.Prefix) bool {
	if !isULA(p) || p.Bits() < 24 {
		return false
	}
	b := p.Addr().As16()
	return b[0] == 0xfc || (b[1] == 0 && b[2] == 0)
}

// routes describes what a prefix implies for NAT and routing, for "why"
// texts.
func natText(p netip.Prefix) string {
	if isULA(p) {
		return fmt.Sprintf("%s is ULA (fc00::/7): it is not routed on the internet, so traffic from it needs masquerade (NAT66) on the way out", p)
	}
	if p.Addr().Is6() {
		return fmt.Sprintf("%s is a global prefix: it is routed without NAT, so the upstream router needs a route to it via this host (or NDP proxy, when it sits in the host's on-link prefix), and nothing but a firewall stands between containers and the internet", p)
	}
	return ""
}
