package kube

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
)

// ParseFamilies reads --families: the same words as the plugin's
// "families" key.
func ParseFamilies(s string) ([]ipam.Family, error) {
	switch s {
	case "dual":
		return []ipam.Family{ipam.IPv6, ipam.IPv4}, nil
	case "ipv6":
		return []ipam.Family{ipam.IPv6}, nil
	case "ipv4":
		return []ipam.Family{ipam.IPv4}, nil
	}
	return nil, fmt.Errorf("--families %q: use dual (IPv6 and IPv4, the default), ipv6 or ipv4", s)
}

// FamiliesFlag is the word ParseFamilies reads for fams.
func FamiliesFlag(fams []ipam.Family) string {
	switch {
	case len(fams) == 2:
		return "dual"
	case len(fams) == 1 && fams[0] == ipam.IPv4:
		return "ipv4"
	}
	return "ipv6"
}

// CNIConf is what the conflist says: the node, the families, its pod
// ranges, and where the plugin finds the bolt file.
type CNIConf struct {
	Node     string
	Families []ipam.Family
	// PodCIDRs are the node's pod ranges of those families, IPv6 first.
	PodCIDRs []netip.Prefix
	// DatastorePath is the bolt file as the plugin on the host sees it.
	DatastorePath string
}

// Network is the conflist's name, which pods' attachments are keyed by.
const Network = "duet"

type pool struct {
	CIDR      string `json:"cidr"`
	BlockSize int    `json:"blockSize"`
}

type duetPlugin struct {
	Type      string           `json:"type"`
	Families  string           `json:"families"`
	NodeName  string           `json:"nodeName"`
	Pools     []pool           `json:"pools"`
	Datastore config.Datastore `json:"datastore"`
	SysctlLog string           `json:"sysctlLog,omitempty"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	// CNIVersions (CNI 1.1) lets a runtime whose libcni knows 1.1.0 pick
	// it (GC, STATUS), while cniVersion stays 1.0.0 for the runtimes
	// most clusters run: containerd 1.6 and 1.7 (libcni 1.1) refuse a
	// 1.1.0 result ("unsupported CNI result version").
	CNIVersions []string `json:"cniVersions"`
	Name        string   `json:"name"`
	Plugins     []any    `json:"plugins"`
}

// Conflist renders the CNI configuration the kubelet's runtime loads: the
// duet plugin with one pool per pod range, each a single block (the
// node's whole range, so the plugin never claims beyond it), and portmap
// for hostPort. natOutgoing is left out, so the plugin's defaults decide
// (on for ULA and private IPv4, off for global IPv6). The plugin's part
// is checked with the plugin's own parser, so what is written is what it
// accepts.
func Conflist(c CNIConf) ([]byte, error) {
	if len(c.PodCIDRs) == 0 {
		return nil, fmt.Errorf("node %q has no pod range to configure the plugin with", c.Node)
	}
	p := duetPlugin{Type: "duet", Families: FamiliesFlag(c.Families), NodeName: c.Node,
		Datastore: config.Datastore{Type: config.DatastoreBolt, Path: c.DatastorePath}}
	// The record of host sysctls the plugin changed lives beside the
	// datastore, so a lab's nodes (namespaces of one machine, each with
	// its own directory) keep their own; on a real host this is the
	// default and is left out.
	if log := filepath.Join(filepath.Dir(c.DatastorePath), "sysctl-changes.jsonl"); c.DatastorePath != "" && log != config.DefaultSysctlLog {
		p.SysctlLog = log
	}
	for _, cidr := range c.PodCIDRs {
		p.Pools = append(p.Pools, pool{CIDR: cidr.String(), BlockSize: blockSize(cidr)})
	}
	out, err := json.Marshal(conflist{CNIVersion: "1.0.0", CNIVersions: []string{"1.0.0", "1.1.0"}, Name: Network,
		Plugins: []any{p, portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}}}})
	if err != nil {
		return nil, err
	}
	if _, err := PluginConfig(out); err != nil {
		return nil, fmt.Errorf("node %q: pod ranges %v make a configuration duet's plugin refuses: %w", c.Node, c.PodCIDRs, err)
	}
	return out, nil
}

// blockSize makes the pod range one block. An IPv6 range wider than /64
// gets /64 blocks, the widest the plugin walks; the node still owns (and
// routes, and blackholes) the whole range.
func blockSize(p netip.Prefix) int {
	if p.Addr().Is6() {
		return max(p.Bits(), 64)
	}
	return p.Bits()
}

// PluginConfig parses the duet plugin's entry of a conflist as the plugin
// gets it from libcni (with the list's name and cniVersion).
func PluginConfig(list []byte) (*config.Network, error) {
	var l struct {
		CNIVersion string                       `json:"cniVersion"`
		Name       string                       `json:"name"`
		Plugins    []map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, err
	}
	for _, p := range l.Plugins {
		if string(p["type"]) != `"duet"` {
			continue
		}
		p["name"], _ = json.Marshal(l.Name)
		p["cniVersion"], _ = json.Marshal(l.CNIVersion)
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		return config.Parse(raw)
	}
	return nil, fmt.Errorf("the conflist has no duet plugin")
}
