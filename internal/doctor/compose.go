package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkCompose checks a Compose file: IPv6 on every network, IPv6
// subnets, and how ports are published to each family.
func checkCompose(r *reporter, root *yaml.Node) {
	nets := map[string]bool{} // network name -> has IPv6
	anyIPv6 := false
	for _, n := range pairs(get(root, "networks")) {
		if ext, _ := boolean(get(n.value, "external")); ext {
			nets[n.key] = true // defined elsewhere: not ours to judge
			continue
		}
		nets[n.key] = checkComposeNetwork(r, n)
		anyIPv6 = anyIPv6 || nets[n.key]
	}
	if v, ok := str(get(root, "version")); ok && strings.HasPrefix(strings.TrimSpace(v), "3") && anyIPv6 {
		r.add("COMPOSE006", keyLine(root, "version"), "version", fmt.Sprintf("file format version %q with enable_ipv6", v),
			"docker-compose v1 (the docker-compose command) rejects enable_ipv6 in file format 3 (\"Additional properties are not allowed\"); it was only in format 2.x",
			"use Compose v2 (docker compose, which ignores version) and remove the version line, or use version \"2.4\" with docker-compose v1")
	}
	defaultReported := false
	for _, s := range pairs(get(root, "services")) {
		if mode, _ := str(get(s.value, "network_mode")); mode != "" {
			continue // host or another container's stack: no Compose network
		}
		var names []string
		netNode := get(s.value, "networks")
		for _, n := range items(netNode) {
			if name, ok := str(n); ok {
				names = append(names, name)
			}
		}
		for _, p := range pairs(netNode) {
			names = append(names, p.key)
		}
		if netNode == nil {
			names = []string{"default"}
			if _, defined := nets["default"]; !defined && !defaultReported {
				defaultReported = true
				r.add("COMPOSE001", s.line, "network default", fmt.Sprintf("service %s uses the implicit default network, which is IPv4-only", s.key),
					"Compose creates the default network without IPv6 unless it is declared, so the service has no IPv6 address",
					"declare it: networks: {default: {enable_ipv6: true, ipam: {config: [{subnet: <IPv4>}, {subnet: <IPv6 /64>}]}}}")
			}
		}
		hasIPv6 := false
		for _, n := range names {
			hasIPv6 = hasIPv6 || nets[n]
		}
		checkComposePorts(r, s, hasIPv6)
	}
}

// checkComposeNetwork checks one network and says whether it has IPv6.
func checkComposeNetwork(r *reporter, n pair) bool {
	enabled, _ := boolean(get(n.value, "enable_ipv6"))
	var v6Subnet string
	for _, c := range items(get(n.value, "ipam", "config")) {
		s, ok := str(get(c, "subnet"))
		if !ok {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			r.add("COMPOSE003", lineOf(get(c, "subnet")), "network "+n.key, "subnet "+err.Error(),
				"docker compose up fails to create the network", "write the subnet as a prefix without host bits")
			continue
		}
		r.prefix(p, lineOf(get(c, "subnet")))
		if p.Addr().Is6() {
			v6Subnet = p.String()
		}
		if gw, ok := str(get(c, "gateway")); ok {
			if a, err := netip.ParseAddr(gw); err != nil || !p.Contains(a) {
				r.add("COMPOSE003", lineOf(get(c, "gateway")), "network "+n.key, fmt.Sprintf("gateway %q is not an address inside subnet %s", gw, p),
					"docker compose up fails to create the network", "use an address from the subnet, usually its first (::1 or .1)")
			}
		}
	}
	switch {
	case !enabled:
		what := fmt.Sprintf("network %s has no \"enable_ipv6: true\": it is IPv4-only", n.key)
		if v6Subnet != "" {
			what = fmt.Sprintf("network %s has the IPv6 subnet %s but no \"enable_ipv6: true\": the subnet is ignored or refused", n.key, v6Subnet)
		}
		r.add("COMPOSE001", n.line, "network "+n.key, what,
			"containers on it get no IPv6 address; IPv6 clients of their published ports go through docker-proxy over IPv4 and the container never sees their address",
			"add enable_ipv6: true and an IPv6 subnet (a random ULA /64, or a routed global /64) to ipam.config")
	case v6Subnet == "":
		r.add("COMPOSE002", keyLine(n.value, "enable_ipv6"), "network "+n.key, fmt.Sprintf("network %s enables IPv6 but ipam.config has no IPv6 subnet", n.key),
			"the subnet then comes from the daemon's default-address-pools; before Docker 27 there is no IPv6 pool by default and the network cannot be created",
			"add \"- subnet: <IPv6 /64>\" to ipam.config next to the IPv4 subnet")
	}
	return enabled
}

// checkComposePorts explains each published port's families.
func checkComposePorts(r *reporter, s pair, hasIPv6 bool) {
	ports := items(get(s.value, "ports"))
	wildcards := map[string]int{} // "0.0.0.0 8080:80" and ":: 8080:80"
	for _, p := range ports {
		if host, spec := portHost(p); host == "0.0.0.0" || host == "::" {
			wildcards[host+" "+stripHost(spec)]++
		}
	}
	forIPv6 := false
	for _, p := range ports {
		host, spec := portHost(p)
		if spec == "" {
			continue
		}
		both := wildcards["0.0.0.0 "+stripHost(spec)] > 0 && wildcards[":: "+stripHost(spec)] > 0
		switch {
		case host == "":
			forIPv6 = true
		case host == "0.0.0.0" && !both:
			r.add("COMPOSE005", lineOf(p), "service "+s.key, fmt.Sprintf("port %q is published on IPv4 only", spec),
				"a host address of 0.0.0.0 binds the IPv4 wildcard alone: IPv6 clients get connection refused",
				"drop the host address (\""+stripHost(spec)+"\") to publish on both families, or add a \"[::]:\" line for IPv6")
		case host == "::":
			forIPv6 = true
			if !both {
				r.add("COMPOSE005", lineOf(p), "service "+s.key, fmt.Sprintf("port %q is published on IPv6 only", spec),
					"a host address of [::] binds the IPv6 wildcard alone: IPv4 clients of that port get connection refused",
					"drop the host address (\""+stripHost(spec)+"\") to publish on both families, if IPv4 clients should reach it too")
			}
		default:
			if a, err := netip.ParseAddr(host); err == nil && a.Is6() && !a.IsLoopback() {
				forIPv6 = true
			}
		}
	}
	if forIPv6 && !hasIPv6 {
		r.add("COMPOSE004", keyLine(s.value, "ports"), "service "+s.key, fmt.Sprintf("service %s publishes ports to IPv6 clients but none of its networks has IPv6", s.key),
			"IPv6 connections are accepted by docker-proxy and forwarded over IPv4, so the service sees the gateway's address for every IPv6 client (moby#44408); with userland-proxy off they are refused",
			"put the service on a network with enable_ipv6: true and an IPv6 subnet")
	}
}

// portHost returns the host address of a published port ("" for all
// addresses, "::" or "0.0.0.0" for one family's wildcard) and the port as
// written.
func portHost(p *yaml.Node) (host, spec string) {
	if p.Kind == yaml.MappingNode { // long syntax
		if _, ok := str(get(p, "published")); !ok {
			return "", ""
		}
		host, _ = str(get(p, "host_ip"))
		spec = strOf(get(p, "published")) + ":" + strOf(get(p, "target"))
		switch {
		case strings.Contains(host, ":"):
			spec = "[" + host + "]:" + spec
		case host != "":
			spec = host + ":" + spec
		}
		return normHost(host), spec
	}
	spec, ok := str(p)
	if !ok {
		return "", ""
	}
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]")
		if end < 0 {
			return "", spec
		}
		return normHost(spec[1:end]), spec
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 3 {
		return "", spec // "8080:80" or "80": every address
	}
	return normHost(strings.Join(parts[:len(parts)-2], ":")), spec
}

func normHost(h string) string {
	h = strings.Trim(h, "[]")
	if a, err := netip.ParseAddr(h); err == nil && a.IsUnspecified() {
		return a.String()
	}
	return h
}

// stripHost removes the host address from a short-syntax port.
func stripHost(spec string) string {
	if strings.HasPrefix(spec, "[") {
		if i := strings.Index(spec, "]:"); i >= 0 {
			return spec[i+2:]
		}
	}
	if parts := strings.Split(spec, ":"); len(parts) >= 3 {
		return strings.Join(parts[len(parts)-2:], ":")
	}
	return spec
}
