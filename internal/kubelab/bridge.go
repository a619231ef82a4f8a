package kubelab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/duetnet/duet/internal/ipam"
)

// This file is the reference CNI the kube lab can run instead of duet:
// the bridge and host-local plugins from the CNI project, one range per
// node's spec.podCIDRs, no masquerade (so pod sources survive between
// nodes), and direct routes between the nodes, which is what duet's
// direct routing does. Benchmarks measure duet against it in the same lab.

func bridgeConflist(nodeDir string, cidrs []netip.Prefix) ([]byte, error) {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, c := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": c.String()}})
		dst := "0.0.0.0/0"
		if c.Addr().Is6() {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	return json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "reference-bridge", "plugins": []any{
		map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(nodeDir, "cni-ipam"), "ranges": ranges, "routes": routes}},
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
	}})
}

func (c *cluster) podCIDRs(node string) ([]netip.Prefix, error) {
	out, err := c.kubectl("get", "node", node, "-o", "jsonpath={.spec.podCIDRs[*]}")
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, f := range strings.Fields(out) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("node %s: podCIDR %q: %w", node, f, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (c *cluster) installBridge(ctx context.Context) error {
	cidrs := map[string][]netip.Prefix{}
	for _, n := range c.nodes {
		ps, err := c.podCIDRs(n.Name)
		if err != nil {
			return err
		}
		cidrs[n.Name] = ps
	}
	for _, n := range c.nodes {
		conf, err := bridgeConflist(c.p.nodeDir(n.Name), cidrs[n.Name])
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(c.p.cniConfDir(n.Name), "10-bridge.conflist"), string(conf)); err != nil {
			return err
		}
		for _, m := range c.nodes {
			if m.Name == n.Name {
				continue
			}
			for _, p := range cidrs[m.Name] {
				via, ok := addrOf(c.o.nodeIPs(m.Node), ipam.FamilyOf(p.Addr()))
				if !ok {
					continue
				}
				if _, err := run("", "ip", "-n", n.NetNS, "route", "replace", p.String(), "via", via.String()); err != nil {
					return err
				}
			}
		}
	}
	return c.waitNodesReady(ctx, "the kubelet logs")
}
