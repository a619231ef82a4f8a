package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/duetnet/duet/internal/config"
)

// checkCNI checks a conflist (or a single network configuration): each
// plugin's IPAM families and routes, and duet's own configuration with
// duet's own parser.
func checkCNI(r *reporter, root *yaml.Node) {
	plugins := items(get(root, "plugins"))
	if get(root, "plugins") == nil {
		plugins = []*yaml.Node{root}
	}
	for _, p := range plugins {
		typ := strOf(get(p, "type"))
		obj := fmt.Sprintf("network %s plugin %s", strOf(get(root, "name")), typ)
		if typ == "duet" {
			checkDuet(r, root, p, obj, false)
			continue
		}
		ipam := get(p, "ipam")
		switch strOf(get(ipam, "type")) {
		case "duet-ipam":
			checkDuet(r, root, p, obj, true)
		case "host-local":
			checkHostLocal(r, p, ipam, obj)
		case "calico-ipam":
			v4, set4 := boolean(get(ipam, "assign_ipv4"))
			v6, _ := boolean(get(ipam, "assign_ipv6"))
			if !set4 {
				v4 = true
			}
			if v4 != v6 {
				fam, other := IPv4, IPv6
				if v6 {
					fam, other = IPv6, IPv4
				}
				r.add("CNI001", lineOf(ipam), obj, fmt.Sprintf("calico-ipam assigns %s only", fam),
					"pods get no "+other+" address, whatever the cluster's pod and service ranges say: dual-stack Services have no "+other+" endpoints",
					"set \"assign_ipv4\": \"true\" and \"assign_ipv6\": \"true\" in ipam (with FELIX_IPV6SUPPORT=true and IP6=autodetect on calico-node)")
			}
		}
	}
}

func checkHostLocal(r *reporter, plugin, ipam *yaml.Node, obj string) {
	var fams []string
	var subnets []*yaml.Node
	for _, set := range items(get(ipam, "ranges")) {
		subnets = append(subnets, items(set)...)
	}
	if get(ipam, "subnet") != nil {
		subnets = append(subnets, ipam)
	}
	for _, rng := range subnets {
		n := get(rng, "subnet")
		p, err := parsePrefix(strOf(n))
		if err != nil {
			r.add("CNI005", lineOf(n, rng), obj, "host-local subnet "+err.Error(), "the plugin fails on every ADD", "write the subnet as a prefix without host bits")
			continue
		}
		r.prefix(p, lineOf(n))
		if f := family(p.Addr()); !contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 1 {
		r.add("CNI001", lineOf(get(ipam, "ranges"), ipam), obj, fmt.Sprintf("host-local has %s ranges only", fams[0]),
			"every pod of this network is single-stack: it gets no "+otherFamily(fams[0])+" address, so dual-stack Services and clients of that family cannot reach it",
			"add a second range set with a "+otherFamily(fams[0])+" subnet: \"ranges\": [[{\"subnet\": ...}], [{\"subnet\": ...}]]")
	}
	if gw, _ := boolean(get(plugin, "isDefaultGateway")); gw || len(fams) != 2 {
		return
	}
	var defaults []string
	for _, rt := range items(get(ipam, "routes")) {
		if d := strOf(get(rt, "dst")); d == "0.0.0.0/0" || d == "::/0" {
			f := IPv4
			if strings.Contains(d, ":") {
				f = IPv6
			}
			defaults = append(defaults, f)
		}
	}
	if len(defaults) == 1 {
		r.add("CNI002", lineOf(get(ipam, "routes")), obj, fmt.Sprintf("ipam.routes has a default route for %s only", defaults[0]),
			"pods get an address of each family but leave the node in "+defaults[0]+" only: "+otherFamily(defaults[0])+" connections to anything off the pod's subnet fail with no route",
			"add {\"dst\": \""+map[string]string{IPv4: "0.0.0.0/0", IPv6: "::/0"}[otherFamily(defaults[0])]+"\"} to ipam.routes")
	}
}

// checkDuet runs duet's strict parser on the plugin's configuration, the
// conflist's name and cniVersion added as libcni does.
func checkDuet(r *reporter, root, plugin *yaml.Node, obj string, ipamOnly bool) {
	budget := 100000 // YAML aliases can make a small file a huge tree
	conf, _ := toJSON(plugin, &budget).(map[string]any)
	if conf == nil {
		return
	}
	for _, k := range []string{"name", "cniVersion"} {
		if _, ok := conf[k]; !ok {
			if v, ok := str(get(root, k)); ok {
				conf[k] = v
			}
		}
	}
	data, _ := json.Marshal(conf)
	var err error
	var pools *yaml.Node
	if ipamOnly {
		_, _, _, _, _, err = config.ParseIPAMPlugin(data)
		pools = get(plugin, "ipam", "pools")
	} else {
		_, err = config.Parse(data)
		pools = get(plugin, "pools")
	}
	if err != nil {
		line, field := lineOf(plugin), ""
		var ce *config.Error
		if errors.As(err, &ce) {
			field = ce.Field
			if ipamOnly && !strings.HasPrefix(field, "ipam") {
				field = "ipam." + field
			}
			line = fieldLine(plugin, field)
		}
		r.add("CNI006", line, obj, "duet rejects its configuration: "+err.Error(),
			"the plugin fails every ADD with CNI error 7, so no pod on this network starts", "fix the key named in the message (see the README's configuration keys)")
		return
	}
	for _, p := range items(pools) {
		cidr, err := parsePrefix(strOf(get(p, "cidr")))
		if err != nil {
			continue
		}
		r.prefix(cidr, lineOf(get(p, "cidr")))
		if nat, set := boolean(get(p, "natOutgoing")); set && !nat && needsNAT(cidr) {
			r.add("CNI003", lineOf(get(p, "natOutgoing")), obj, fmt.Sprintf("pool %s is private but natOutgoing is false", cidr),
				natText(cidr)+": without masquerade, pods reach other pods and nodes but nothing outside the cluster",
				"remove \"natOutgoing\": false (duet masquerades private pools by default), or route the prefix from your network to the nodes")
		}
	}
}

var fieldPartRE = regexp.MustCompile(`^([^\[]*)(?:\[(\d+)\])?$`)

// fieldLine finds the line of a dotted field path like "pools[1].cidr".
func fieldLine(n *yaml.Node, field string) int {
	line := lineOf(n)
	for _, part := range strings.Split(field, ".") {
		m := fieldPartRE.FindStringSubmatch(part)
		if m == nil {
			break
		}
		next := get(n, m[1])
		if next == nil {
			break
		}
		line, n = keyLine(n, m[1]), next
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			if list := items(n); i < len(list) {
				n, line = list[i], lineOf(list[i])
			}
		}
	}
	return line
}

// toJSON turns a node back into JSON values, for parsers that take JSON,
// visiting at most *budget nodes.
func toJSON(n *yaml.Node, budget *int) any {
	n = deref(n)
	if *budget--; n == nil || *budget < 0 {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for _, p := range pairs(n) {
			m[p.key] = toJSON(p.value, budget)
		}
		return m
	case yaml.SequenceNode:
		var l []any
		for _, c := range n.Content {
			l = append(l, toJSON(c, budget))
		}
		return l
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		return n.Value == "true"
	case "!!int":
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return i
		}
	case "!!float":
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
	}
	return n.Value
}
