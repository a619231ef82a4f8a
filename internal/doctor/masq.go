package doctor

import (
	"net/netip"
	"regexp"
	"strings"
)

// masqRule is a masquerade (or SNAT) rule reduced to what matters here:
// which family and which sources it rewrites.
type masqRule struct {
	family string // IPv4, IPv6, or "" for both (inet)
	src    []netip.Prefix
	any    bool // no source match, or one we cannot resolve (ipset)
	negate bool // "saddr != ...": everything but src
}

func covered(rules []masqRule, p netip.Prefix) bool {
	for _, r := range rules {
		if r.family != "" && r.family != family(p.Addr()) {
			continue
		}
		if r.any || containedIn(r.src, p) != r.negate {
			return true
		}
	}
	return false
}

// masqRules reads masquerade rules from the nft ruleset and the iptables
// NAT tables. Rules that only apply to marked packets (kube-proxy's
// service SNAT) do not count: they do not make pods' egress work.
func masqRules(h *HostFacts) []masqRule {
	rules := nftMasqRules(h.Ruleset)
	rules = append(rules, iptablesMasqRules(h.IPTables, IPv4)...)
	return append(rules, iptablesMasqRules(h.IP6Tables, IPv6)...)
}

var (
	tableRE    = regexp.MustCompile(`^\s*table\s+(\S+)\s+(\S+)\s*\{`)
	setRE      = regexp.MustCompile(`^\s*(?:set|map)\s+(\S+)\s*\{`)
	elementsRE = regexp.MustCompile(`elements\s*=\s*\{([^}]*)\}`)
	chainRE    = regexp.MustCompile(`^\s*chain\s+(\S+)\s*\{`)
	saddrRE    = regexp.MustCompile(`\b(ip6?)\s+saddr\s+(!=\s+)?(\{[^}]*\}|\S+)`)
)

func nftMasqRules(text string) []masqRule {
	type table struct{ family, name string }
	// Pass 1: sets, with their elements (which may span lines).
	sets := map[table]map[string][]netip.Prefix{}
	var cur table
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if m := tableRE.FindStringSubmatch(lines[i]); m != nil {
			cur = table{m[1], m[2]}
			continue
		}
		m := setRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		var body strings.Builder
		for ; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "}"); i++ {
			body.WriteString(lines[i] + " ")
		}
		if sets[cur] == nil {
			sets[cur] = map[string][]netip.Prefix{}
		}
		if e := elementsRE.FindStringSubmatch(body.String()); e != nil {
			sets[cur][m[1]] = prefixList(e[1])
		} else {
			sets[cur][m[1]] = nil
		}
	}
	// Pass 2: rules.
	var out []masqRule
	chain := ""
	for _, line := range lines {
		if m := tableRE.FindStringSubmatch(line); m != nil {
			cur = table{m[1], m[2]}
			continue
		}
		if m := chainRE.FindStringSubmatch(line); m != nil {
			chain = m[1]
			continue
		}
		if kubeProxy(cur.name, chain) || !strings.Contains(line, "masquerade") && !strings.Contains(line, "snat ") || markOnly(line) {
			continue
		}
		r := masqRule{family: map[string]string{"ip": IPv4, "ip6": IPv6}[cur.family]}
		if cur.family != "ip" && cur.family != "ip6" && cur.family != "inet" {
			continue
		}
		if strings.Contains(line, "nfproto ipv6") {
			r.family = IPv6
		} else if strings.Contains(line, "nfproto ipv4") {
			r.family = IPv4
		}
		m := saddrRE.FindStringSubmatch(line)
		switch {
		case strings.Contains(line, "xt match"):
			r.any = true
		case m == nil:
			r.any = true
		default:
			r.family = map[string]string{"ip": IPv4, "ip6": IPv6}[m[1]]
			r.negate = m[2] != ""
			if name, ok := strings.CutPrefix(m[3], "@"); ok {
				src, known := sets[cur][name]
				r.src, r.any = src, !known
			} else {
				r.src = prefixList(strings.Trim(m[3], "{}"))
			}
		}
		out = append(out, r)
	}
	return out
}

// kubeProxy says whether a table or chain is kube-proxy's: its masquerade
// is for marked service traffic (the mark is checked by an earlier RETURN
// rule), not for pods' egress.
func kubeProxy(table, chain string) bool {
	return table == "kube-proxy" || strings.HasPrefix(chain, "KUBE-")
}

// markOnly says whether a rule only applies to marked packets.
func markOnly(line string) bool {
	return strings.Contains(line, "meta mark") || strings.Contains(line, "ct mark") || strings.Contains(line, "--mark") || strings.Contains(line, "-m mark")
}

// prefixList reads "a, b/64, c" (addresses become host prefixes).
func prefixList(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

var iptSrcRE = regexp.MustCompile(`(!\s+)?-s\s+(\S+)`)

func iptablesMasqRules(text, fam string) []masqRule {
	var out []masqRule
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "-A ") || kubeProxy("", strings.Fields(line + " x")[1]) || !strings.Contains(line, "-j MASQUERADE") && !strings.Contains(line, "-j SNAT") || markOnly(line) {
			continue
		}
		r := masqRule{family: fam}
		if m := iptSrcRE.FindStringSubmatch(line); m != nil && !strings.Contains(line, "--match-set") {
			r.src, r.negate = prefixList(m[2]), m[1] != ""
		} else {
			r.any = true
		}
		out = append(out, r)
	}
	return out
}
