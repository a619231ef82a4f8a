package doctor

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"
)

// checkDocker checks a daemon.json (or dockerd's flags): IPv6 on the
// default bridge, its prefix, NAT and filtering, address pools and the
// userland proxy.
func checkDocker(r *reporter, root *yaml.Node) {
	ipv6, _ := boolean(get(root, "ipv6"))
	ip6tables, ip6tablesSet := boolean(get(root, "ip6tables"))
	experimental, _ := boolean(get(root, "experimental"))
	proxy, proxySet := boolean(get(root, "userland-proxy"))

	var cidr netip.Prefix
	if n := get(root, "fixed-cidr-v6"); n != nil {
		s, _ := str(n)
		p, err := parsePrefix(s)
		switch {
		case err != nil:
			r.add("DOCKER003", lineOf(n), "fixed-cidr-v6", "fixed-cidr-v6 "+err.Error(),
				"the daemon refuses to start with an invalid prefix", "write an IPv6 prefix such as \"fd3c:9a71:52e0:1::/64\"")
		case !p.Addr().Is6():
			r.add("DOCKER003", lineOf(n), "fixed-cidr-v6", fmt.Sprintf("fixed-cidr-v6 %s is an IPv4 prefix", p),
				"fixed-cidr-v6 is the default bridge's IPv6 subnet; IPv4 goes in fixed-cidr or bip", "write an IPv6 prefix such as \"fd3c:9a71:52e0:1::/64\"")
		default:
			cidr = p
			r.prefix(p, lineOf(n))
		}
	}
	v6Pools, invalidPools, poolsNode := checkAddressPools(r, get(root, "default-address-pools"))

	if !ipv6 {
		r.add("DOCKER001", keyLine(root, "ipv6"), "default bridge", "\"ipv6\" is not true: the default bridge (docker0) is IPv4-only",
			"containers started without --network get no IPv6 address, so they reach IPv6-only destinations only through NAT64, if at all, and IPv6 clients of published ports are proxied over IPv4",
			"set \"ipv6\": true with a \"fixed-cidr-v6\", or run containers on user-defined networks created with --ipv6")
	}
	if ipv6 && !cidr.IsValid() && get(root, "fixed-cidr-v6") == nil && v6Pools == 0 && !invalidPools {
		r.add("DOCKER002", keyLine(root, "ipv6"), "default bridge", "\"ipv6\" is true but there is no \"fixed-cidr-v6\" and no IPv6 pool in \"default-address-pools\"",
			"before Docker 27 the default bridge then gets only the link-local fe80::/64, so containers have no routable IPv6 address",
			"add \"fixed-cidr-v6\": a random ULA /64 (NAT66) or a /64 routed to this host (GUA)")
	}
	if cidr.IsValid() && cidr.Bits() > 80 {
		r.add("DOCKER004", keyLine(root, "fixed-cidr-v6"), "fixed-cidr-v6", fmt.Sprintf("fixed-cidr-v6 %s is smaller than /80", cidr),
			"Docker's IPv6 documentation asks for at least /80 so a container's address can end in its 48-bit MAC (no NDP cache churn when addresses are reused); a small prefix also runs out after a few containers",
			"use a /64 (or at least a /80); to hand out addresses from the host's own on-link /64, NDP proxy them (net.ipv6.conf.<uplink>.proxy_ndp=1 and ip -6 neigh add proxy, or ndppd)")
	}
	if ipv6 && !ip6tables {
		why := "without ip6tables Docker installs no IPv6 rules: no masquerade, no filtering, and published ports reach containers over IPv6 only through the userland proxy"
		if cidr.IsValid() {
			why = natText(cidr) + "; " + why
			if isULA(cidr) {
				why += ", so containers cannot reach the IPv6 internet"
			} else {
				why += ", so every port of every container is open to the internet"
			}
		}
		state := "is not set (it defaults to false before Docker 27)"
		if ip6tablesSet {
			state = "is false"
		}
		r.add("DOCKER005", keyLine(root, "ip6tables", "ipv6"), "ip6tables", "IPv6 is on but \"ip6tables\" "+state, why,
			"set \"ip6tables\": true (on Docker 20.10 to 26 with \"experimental\": true too); otherwise add masquerade for ULA and a filter for global prefixes yourself")
	}
	if ip6tables && !experimental {
		r.add("DOCKER006", keyLine(root, "ip6tables"), "ip6tables", "\"ip6tables\" is true but \"experimental\" is not",
			"Docker 20.10 to 26 (Debian 12 ships 20.10) refuse to start: \"ip6tables rules are only available if experimental features are enabled\"; only Docker 27 and later have ip6tables as a stable feature",
			"on Docker older than 27, add \"experimental\": true; on 27 or later nothing is needed, and ip6tables is on by default")
	}
	if poolsNode != nil && v6Pools == 0 && !invalidPools {
		r.add("DOCKER007", lineOf(poolsNode), "default-address-pools", "\"default-address-pools\" has no IPv6 pool",
			"networks created with --ipv6 (Compose enable_ipv6) but no explicit IPv6 subnet take it from these pools: without an IPv6 pool their creation fails",
			"add an IPv6 pool, e.g. {\"base\": \"fd3c:9a71:52e0:100::/56\", \"size\": 64}")
	}
	if (!proxySet || proxy) && (!ipv6 || ip6tablesSet && !ip6tables) {
		r.add("DOCKER008", keyLine(root, "userland-proxy", "ipv6"), "userland-proxy", "the userland proxy is on for containers that have no IPv6 (or no ip6tables)",
			"an IPv6 client of a published port is accepted by docker-proxy and forwarded over IPv4, so the container sees the bridge gateway's address instead of the client's (moby#44408): logs, rate limits and allow-lists see one client",
			"give the containers IPv6 (\"ipv6\": true, \"ip6tables\": true, or an IPv6 network), or set \"userland-proxy\": false so IPv6 clients are refused instead of disguised")
	}
}

// checkAddressPools validates default-address-pools and counts the IPv6
// pools.
func checkAddressPools(r *reporter, pools *yaml.Node) (v6 int, invalid bool, node *yaml.Node) {
	if pools == nil {
		return 0, false, nil
	}
	for i, pool := range items(pools) {
		base, _ := str(get(pool, "base"))
		p, err := parsePrefix(base)
		if err != nil {
			r.add("DOCKER003", lineOf(pool, pools), fmt.Sprintf("default-address-pools[%d]", i), "base "+err.Error(),
				"the daemon refuses to start with an invalid pool", "write base as a prefix and size as a prefix length, like {\"base\": \"fd3c:9a71:52e0:100::/56\", \"size\": 64}")
			invalid = true
			continue
		}
		r.prefix(p, lineOf(pool))
		if size, ok := integer(get(pool, "size")); !ok || size < p.Bits() || size > p.Addr().BitLen() {
			r.add("DOCKER003", lineOf(get(pool, "size"), pool), fmt.Sprintf("default-address-pools[%d]", i),
				fmt.Sprintf("size must be a prefix length between %d and %d for base %s", p.Bits(), p.Addr().BitLen(), p),
				"size is the prefix length of each network carved from base", "set size to the per-network prefix length, e.g. 64 for IPv6 or 24 for IPv4")
			invalid = true
			continue
		}
		if p.Addr().Is6() {
			v6++
		}
	}
	return v6, invalid, pools
}
