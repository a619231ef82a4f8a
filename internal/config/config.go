// Package config parses duet's CNI network configuration strictly: every
// key is known, every value is checked, and every error names the field at
// fault and how to fix it. It is pure, so the parser can be fuzzed.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"

	"github.com/duetnet/duet/internal/ipam"
)

// Mode values of the "mode" key.
const (
	ModeRouted = "routed"
	ModeBridge = "bridge"
)

// Defaults used when a key is absent.
const (
	DefaultBridge   = "duet0"
	DefaultBoltPath = "/var/lib/duet/duet.db"
	// DefaultEtcdHostLock queues one host's writers to etcd (see
	// etcd.Config.HostLock); under /run, so it never outlives a boot.
	DefaultEtcdHostLock = "/run/duet/etcd-ipam.lock"
	// DefaultSysctlLog is where the plugin records the host sysctls it
	// changed when "sysctlLog" is absent.
	DefaultSysctlLog = "/var/lib/duet/sysctl-changes.jsonl"
	DatastoreBolt    = "bolt"
	DatastoreEtcd    = "etcd"
	minMTU6, minMTU4 = 1280, 576
)

// Datastore says where duet keeps its state.
type Datastore struct {
	Type      string   `json:"type"`
	Path      string   `json:"path,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	// CAFile, CertFile and KeyFile secure etcd's https endpoints: the CA
	// that signed etcd's certificate, and this client's certificate and
	// key when etcd asks for one (--client-cert-auth).
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// Attachment is one element of cni.dev/valid-attachments (CNI GC).
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// IPAM is the addressing part of the configuration, shared by the duet
// plugin (top level) and duet-ipam (inside "ipam").
type IPAM struct {
	// Families to address, IPv6 first; from "families".
	Families []ipam.Family
	// Pools from "pools"; empty means zero configuration.
	Pools     []ipam.Pool
	Datastore Datastore
	// NodeName is the node whose blocks addresses come from; defaults to
	// the host name (set by the caller).
	NodeName string
}

// Network is the duet plugin's configuration.
type Network struct {
	CNIVersion string
	Name       string
	Mode       string
	Bridge     string
	MTU        int
	IPAM
	// Protections turns on the nftables RA guard and anti-spoofing
	// (default true).
	Protections bool
	// AllowedSources are extra source prefixes every pod of the network
	// may send from (for appliances); a pod adds its own with CNI_ARGS
	// DUET_ALLOWED_SOURCE_PREFIXES.
	AllowedSources []netip.Prefix
	// SysctlLog is the file the plugin appends each host sysctl it
	// changed to ("sysctlLog"); empty means cni.SysctlLogPath. A lab
	// points it into its own directory, since its nodes are namespaces
	// of one machine and their changes are not the machine's.
	SysctlLog        string
	ValidAttachments []Attachment
	HasAttachments   bool
	RawPrevResult    json.RawMessage
}

// Error is a configuration error naming a field.
type Error = ipam.ConfigError

func errf(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// standardKeys are the keys the CNI spec and libcni put in any plugin's
// configuration.
var standardKeys = []string{"cniVersion", "name", "type", "args", "capabilities", "runtimeConfig", "prevResult", "dns", "cni.dev/valid-attachments", "cni.dev/attachments"}

var ipamKeys = []string{"families", "pools", "datastore", "nodeName"}

// Parse parses the duet plugin's network configuration.
func Parse(data []byte) (*Network, error) {
	fields, err := object(data, "network configuration")
	if err != nil {
		return nil, err
	}
	if _, ok := fields["ipam"]; ok {
		return nil, errf("ipam", "the duet plugin does its own addressing: remove \"ipam\" and put families, pools and datastore at the top level (duet-ipam is for other plugins)")
	}
	if err := onlyKeys(fields, "", append(append([]string{"mode", "bridge", "mtu", "protections", "allowedSourcePrefixes", "sysctlLog"}, standardKeys...), ipamKeys...)); err != nil {
		return nil, err
	}
	n := &Network{Mode: ModeRouted, Protections: true}
	var allowed []string
	for key, dst := range map[string]any{"cniVersion": &n.CNIVersion, "name": &n.Name, "mode": &n.Mode, "bridge": &n.Bridge, "mtu": &n.MTU, "protections": &n.Protections, "allowedSourcePrefixes": &allowed, "sysctlLog": &n.SysctlLog} {
		if err := decode(fields, key, dst); err != nil {
			return nil, err
		}
	}
	if n.Name == "" {
		return nil, errf("name", "is missing: every CNI network needs a name")
	}
	if n.AllowedSources, err = ParsePrefixes(allowed, "allowedSourcePrefixes"); err != nil {
		return nil, err
	}
	switch n.Mode {
	case ModeRouted:
		if n.Bridge != "" {
			return nil, errf("bridge", "is only used in bridge mode: remove it, or set \"mode\" to \"bridge\"")
		}
	case ModeBridge:
		if n.Bridge == "" {
			n.Bridge = DefaultBridge
		}
		if len(n.Bridge) > 15 || strings.ContainsAny(n.Bridge, "/ \t\n:") {
			return nil, errf("bridge", "%q is not a valid interface name: use at most 15 characters without '/', ':' or spaces", n.Bridge)
		}
	default:
		return nil, errf("mode", "%q is not a mode: use \"routed\" (default) or \"bridge\"", n.Mode)
	}
	if n.IPAM, err = parseIPAM(fields, ""); err != nil {
		return nil, err
	}
	if err := checkMTU(n.MTU, n.Families); err != nil {
		return nil, err
	}
	if n.SysctlLog != "" && (!strings.HasPrefix(n.SysctlLog, "/") || strings.HasSuffix(n.SysctlLog, "/")) {
		return nil, errf("sysctlLog", "%q is not an absolute file path: give one such as /var/lib/duet/sysctl-changes.jsonl, or remove the key for that default", n.SysctlLog)
	}
	if raw, ok := fields["cni.dev/valid-attachments"]; ok {
		n.HasAttachments = true
		if err := json.Unmarshal(raw, &n.ValidAttachments); err != nil {
			return nil, errf("cni.dev/valid-attachments", "must be a list of {\"containerID\", \"ifname\"}: %v", err)
		}
	}
	n.RawPrevResult = fields["prevResult"]
	return n, nil
}

// ParseIPAMPlugin parses the configuration of duet-ipam: the parent
// plugin's keys are its business; the "ipam" object is checked strictly.
func ParseIPAMPlugin(data []byte) (name, cniVersion string, cfg IPAM, attachments []Attachment, hasAttachments bool, err error) {
	fields, err := object(data, "network configuration")
	if err != nil {
		return
	}
	_ = decode(fields, "name", &name)
	_ = decode(fields, "cniVersion", &cniVersion)
	raw, ok := fields["ipam"]
	if !ok {
		err = errf("ipam", "is missing: set \"ipam\": {\"type\": \"duet-ipam\"}")
		return
	}
	inner, err := object(raw, "ipam")
	if err != nil {
		return
	}
	if err = onlyKeys(inner, "ipam.", append([]string{"type"}, ipamKeys...)); err != nil {
		return
	}
	if cfg, err = parseIPAM(inner, "ipam."); err != nil {
		return
	}
	if raw, ok := fields["cni.dev/valid-attachments"]; ok {
		hasAttachments = true
		if e := json.Unmarshal(raw, &attachments); e != nil {
			err = errf("cni.dev/valid-attachments", "must be a list of {\"containerID\", \"ifname\"}: %v", e)
		}
	}
	return
}

func parseIPAM(fields map[string]json.RawMessage, prefix string) (IPAM, error) {
	var c IPAM
	fam := "dual"
	if err := decode(fields, "families", &fam); err != nil {
		return c, prefixed(err, prefix)
	}
	switch fam {
	case "dual":
		c.Families = []ipam.Family{ipam.IPv6, ipam.IPv4}
	case "ipv6":
		c.Families = []ipam.Family{ipam.IPv6}
	case "ipv4":
		c.Families = []ipam.Family{ipam.IPv4}
	default:
		return c, errf(prefix+"families", "%q is not a choice: use \"dual\" (default), \"ipv6\" or \"ipv4\"", fam)
	}
	var err error
	if c.Pools, err = parsePools(fields["pools"], prefix+"pools", c.Families); err != nil {
		return c, err
	}
	if c.Datastore, err = parseDatastore(fields["datastore"], prefix+"datastore"); err != nil {
		return c, err
	}
	if err := decode(fields, "nodeName", &c.NodeName); err != nil {
		return c, prefixed(err, prefix)
	}
	return c, nil
}

func parsePools(raw json.RawMessage, field string, fams []ipam.Family) ([]ipam.Pool, error) {
	if raw == nil {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errf(field, "must be a list of pools like [{\"cidr\": \"fd00:1::/48\"}]: %v", err)
	}
	var pools []ipam.Pool
	for i, item := range items {
		name := fmt.Sprintf("%s[%d]", field, i)
		f, err := object(item, name)
		if err != nil {
			return nil, err
		}
		if err := onlyKeys(f, name+".", []string{"cidr", "blockSize", "natOutgoing", "assign"}); err != nil {
			return nil, err
		}
		var spec ipam.PoolSpec
		if err := json.Unmarshal(item, &spec); err != nil {
			return nil, errf(name, "%v", err)
		}
		if spec.CIDR == "" {
			return nil, errf(name+".cidr", "is missing: every pool needs a prefix such as \"fd00:1::/48\"")
		}
		p, err := spec.Resolve(name)
		if err != nil {
			return nil, err
		}
		pools = append(pools, p)
	}
	if err := ipam.ValidatePools(pools, field); err != nil {
		return nil, err
	}
	if len(pools) == 0 {
		return nil, nil
	}
	for _, fam := range fams {
		found := false
		for _, p := range pools {
			found = found || p.Family() == fam
		}
		if !found {
			return nil, errf(field, "has no %s pool but families asks for %s: add an %s pool, or set families to the families your pools cover", fam, fam, fam)
		}
	}
	return pools, nil
}

func parseDatastore(raw json.RawMessage, field string) (Datastore, error) {
	d := Datastore{Type: DatastoreBolt}
	if raw == nil {
		d.Path = DefaultBoltPath
		return d, nil
	}
	f, err := object(raw, field)
	if err != nil {
		return d, err
	}
	if err := onlyKeys(f, field+".", []string{"type", "path", "endpoints", "caFile", "certFile", "keyFile"}); err != nil {
		return d, err
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, errf(field, "%v", err)
	}
	switch d.Type {
	case "", DatastoreBolt:
		d.Type = DatastoreBolt
		if d.Path == "" {
			d.Path = DefaultBoltPath
		}
		if !strings.HasPrefix(d.Path, "/") {
			return d, errf(field+".path", "%q is relative: the plugin runs from the runtime's directory, so give an absolute path", d.Path)
		}
		if len(d.Endpoints) > 0 {
			return d, errf(field+".endpoints", "is for type \"etcd\": remove it, or set type to \"etcd\"")
		}
		for name, v := range map[string]string{"caFile": d.CAFile, "certFile": d.CertFile, "keyFile": d.KeyFile} {
			if v != "" {
				return d, errf(field+"."+name, "is for type \"etcd\": remove it, or set type to \"etcd\"")
			}
		}
	case DatastoreEtcd:
		if d.Path != "" {
			return d, errf(field+".path", "is for type \"bolt\": remove it, or set type to \"bolt\"")
		}
		if len(d.Endpoints) == 0 {
			return d, errf(field+".endpoints", "is missing: list the etcd client URLs, like [\"http://[fd00::1]:2379\"]")
		}
		for i, e := range d.Endpoints {
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return d, errf(fmt.Sprintf("%s.endpoints[%d]", field, i), "%q is not an etcd URL: write it like \"http://[fd00::1]:2379\" or \"https://10.0.0.1:2379\"", e)
			}
			if d.CAFile != "" && u.Scheme != "https" {
				return d, errf(fmt.Sprintf("%s.endpoints[%d]", field, i), "%q is plain http but caFile is set: use https:// URLs, or remove caFile", e)
			}
		}
		for _, f := range []struct{ name, v string }{{"caFile", d.CAFile}, {"certFile", d.CertFile}, {"keyFile", d.KeyFile}} {
			if f.v != "" && !strings.HasPrefix(f.v, "/") {
				return d, errf(field+"."+f.name, "%q is relative: the plugin runs from the runtime's directory, so give an absolute path", f.v)
			}
		}
		if (d.CertFile == "") != (d.KeyFile == "") {
			return d, errf(field+".certFile", "certFile and keyFile go together: set both (a client certificate and its key) or neither")
		}
	default:
		return d, errf(field+".type", "%q is not a datastore: use \"bolt\" (one host) or \"etcd\" (a cluster)", d.Type)
	}
	return d, nil
}

func checkMTU(mtu int, fams []ipam.Family) error {
	if mtu == 0 {
		return nil
	}
	min := minMTU4
	for _, f := range fams {
		if f == ipam.IPv6 {
			min = minMTU6
		}
	}
	if mtu < min || mtu > 65535 {
		return errf("mtu", "%d is out of range: use %d to 65535 (IPv6 needs at least 1280), or leave it out to use the host's default-route MTU", mtu, min)
	}
	return nil
}

func object(data []byte, what string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		if err == nil {
			err = fmt.Errorf("got null")
		}
		return nil, errf(what, "is not a JSON object: %v", err)
	}
	return m, nil
}

func onlyKeys(fields map[string]json.RawMessage, prefix string, allowed []string) error {
	var unknown []string
	for k := range fields {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	sort.Strings(allowed)
	key := unknown[0]
	if key == "" {
		key = `""`
	}
	return errf(prefix+key, "is not a known key: remove it or check its spelling (known keys: %s)", strings.Join(allowed, ", "))
}

func decode(fields map[string]json.RawMessage, key string, dst any) error {
	raw, ok := fields[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errf(key, "has the wrong type: %v", err)
	}
	return nil
}

func prefixed(err error, prefix string) error {
	if e, ok := err.(*Error); ok && prefix != "" {
		return &Error{Field: prefix + e.Field, Msg: e.Msg}
	}
	return err
}

// PoolsString is a one-line summary of pools, for logs and errors.
func PoolsString(pools []ipam.Pool) string {
	var s []string
	for _, p := range pools {
		s = append(s, p.CIDR.String())
	}
	return strings.Join(s, ", ")
}

// ParsePrefixes parses a list of prefixes; field names them in errors.
func ParsePrefixes(list []string, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, errf(fmt.Sprintf("%s[%d]", field, i), "%q is not a prefix: write it like \"2001:db8:1::/64\" or \"192.0.2.0/24\"", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
