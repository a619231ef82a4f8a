package docker

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/duetnet/duet/internal/store"
)

// portBinding is one -p mapping as Docker sends it (libnetwork
// types.PortBinding): Proto is the IP protocol number.
type portBinding struct {
	Proto       int
	IP          string
	Port        uint16
	HostIP      string
	HostPort    uint16
	HostPortEnd uint16
}

// PortMap is one published port of one container address: connections to
// any local address of the host (or HostIP) on HostPort are DNATed to
// Addr:Port, in Addr's family. No proxy sits between, so the container
// sees the client's own address in both families (where Docker's userland
// proxy turns an IPv6 client into the bridge's IPv4 gateway, moby#44408).
type PortMap struct {
	Proto    string     `json:"proto"`
	HostIP   netip.Addr `json:"hostIP,omitzero"`
	HostPort uint16     `json:"hostPort"`
	Addr     netip.Addr `json:"addr"`
	Port     uint16     `json:"port"`
}

var protoNames = map[int]string{6: "tcp", 17: "udp", 132: "sctp"}

func portBindings(opts map[string]any) ([]portBinding, error) {
	raw, ok := opts[optPortMap]
	if !ok || raw == nil {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var out []portBinding
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("option %s is not a list of port bindings: %w", optPortMap, err)
	}
	return out, nil
}

// portMaps turns Docker's bindings into one map per binding and container
// address of a family the host address allows.
func portMaps(bindings []portBinding, addrs []netip.Prefix) ([]PortMap, error) {
	var out []PortMap
	for _, b := range bindings {
		proto, ok := protoNames[b.Proto]
		if !ok {
			return nil, fmt.Errorf("-p: protocol %d is not tcp, udp or sctp", b.Proto)
		}
		if b.HostPort == 0 {
			return nil, fmt.Errorf("-p %d/%s: duet publishes a port on the host port you name, and Docker does not tell a network plugin which one it picked: write -p HOSTPORT:%d", b.Port, proto, b.Port)
		}
		if b.HostPortEnd != 0 && b.HostPortEnd != b.HostPort {
			return nil, fmt.Errorf("-p %d-%d:%d/%s: duet publishes one host port per container port: name one", b.HostPort, b.HostPortEnd, b.Port, proto)
		}
		var host netip.Addr
		if b.HostIP != "" {
			h, err := netip.ParseAddr(b.HostIP)
			if err != nil {
				return nil, fmt.Errorf("-p %s:%d: %q is not an address", b.HostIP, b.HostPort, b.HostIP)
			}
			if !h.IsUnspecified() {
				host = h.Unmap()
			}
		}
		n := 0
		for _, a := range addrs {
			if host.IsValid() && host.Is4() != a.Addr().Is4() {
				continue
			}
			out = append(out, PortMap{Proto: proto, HostIP: host, HostPort: b.HostPort, Addr: a.Addr(), Port: b.Port})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("-p %s:%d: the container has no address of that family", host, b.HostPort)
		}
	}
	return out, nil
}

// PortsTable is the nftables table of published ports (inet: both
// families in one).
const PortsTable = "duet_docker"

// PortsScript is the nft transaction that makes the ports table hold
// exactly maps: DNAT in prerouting (from outside) and output (from the
// host itself, but for loopback, which the kernel will not route to a
// container). With no maps the table is deleted, so nothing is left.
func PortsScript(maps []PortMap) string {
	var b strings.Builder
	// Adding first makes both the flush and the delete valid whether or
	// not the table is there: one transaction either way.
	fmt.Fprintf(&b, "add table inet %s\n", PortsTable)
	if len(maps) == 0 {
		fmt.Fprintf(&b, "delete table inet %s\n", PortsTable)
		return b.String()
	}
	fmt.Fprintf(&b, "flush table inet %s\n", PortsTable)
	fmt.Fprintf(&b, "add chain inet %s ports\n", PortsTable)
	fmt.Fprintf(&b, "add chain inet %s prerouting { type nat hook prerouting priority -100; policy accept; }\n", PortsTable)
	fmt.Fprintf(&b, "add rule inet %s prerouting fib daddr type local jump ports\n", PortsTable)
	fmt.Fprintf(&b, "add chain inet %s output { type nat hook output priority -100; policy accept; }\n", PortsTable)
	fmt.Fprintf(&b, "add rule inet %s output ip daddr != 127.0.0.0/8 fib daddr type local jump ports\n", PortsTable)
	fmt.Fprintf(&b, "add rule inet %s output ip6 daddr != ::1 fib daddr type local jump ports\n", PortsTable)
	sorted := append([]PortMap(nil), maps...)
	sort.Slice(sorted, func(i, j int) bool {
		a, c := sorted[i], sorted[j]
		if a.HostPort != c.HostPort {
			return a.HostPort < c.HostPort
		}
		if a.Addr.Is4() != c.Addr.Is4() {
			return !a.Addr.Is4() // IPv6 first
		}
		return a.Addr.Less(c.Addr)
	})
	for _, m := range sorted {
		fam, to := "ip", fmt.Sprintf("%s:%d", m.Addr, m.Port)
		if m.Addr.Is6() {
			fam, to = "ip6", fmt.Sprintf("[%s]:%d", m.Addr, m.Port)
		}
		match := "meta nfproto ipv4"
		if m.Addr.Is6() {
			match = "meta nfproto ipv6"
		}
		if m.HostIP.IsValid() {
			match = fmt.Sprintf("%s daddr %s", fam, m.HostIP)
		}
		fmt.Fprintf(&b, "add rule inet %s ports %s %s dport %d dnat %s to %s\n", PortsTable, match, m.Proto, m.HostPort, fam, to)
	}
	return b.String()
}

// conflicts reports two maps that claim the same host port, protocol and
// family, which the second would never get.
func conflicts(maps []PortMap) error {
	seen := map[string]PortMap{}
	for _, m := range maps {
		k := fmt.Sprintf("%s/%d/%v/%s", m.Proto, m.HostPort, m.Addr.Is4(), m.HostIP)
		if o, ok := seen[k]; ok && o.Addr != m.Addr {
			return fmt.Errorf("host port %d/%s is published already (to %s): pick another host port", m.HostPort, m.Proto, o.Addr)
		}
		seen[k] = m
	}
	return nil
}

// programExternal answers ProgramExternalConnectivity: the endpoint's
// published ports, DNATed in both families without a proxy, so the
// container sees each client's own address.
func (d *Driver) programExternal(req externalConnectivityRequest) error {
	bindings, err := portBindings(req.Options)
	if err != nil {
		return err
	}
	err = d.update(func(tx store.Tx) error {
		ep, found, err := d.loadEndpoint(tx, req.NetworkID, req.EndpointID)
		if err != nil || !found {
			return err
		}
		if len(bindings) == 0 {
			bindings = ep.Bindings
		}
		maps, err := portMaps(bindings, ep.Addrs)
		if err != nil {
			return err
		}
		others, err := tx.List(endpointsPrefix + d.Node + "/")
		if err != nil {
			return err
		}
		all := maps
		for _, kv := range others {
			var o endpointRecord
			if json.Unmarshal(kv.Value, &o) == nil && o.ID != ep.ID {
				all = append(all, o.Ports...)
			}
		}
		if err := conflicts(all); err != nil {
			return err
		}
		ep.Ports = maps
		return putJSON(tx, d.endpointKey(req.NetworkID, req.EndpointID), ep)
	})
	if err != nil {
		return err
	}
	return d.syncPorts()
}

func (d *Driver) revokeExternal(req externalConnectivityRequest) error {
	err := d.update(func(tx store.Tx) error {
		ep, found, err := d.loadEndpoint(tx, req.NetworkID, req.EndpointID)
		if err != nil || !found || len(ep.Ports) == 0 {
			return err
		}
		ep.Ports = nil
		return putJSON(tx, d.endpointKey(req.NetworkID, req.EndpointID), ep)
	})
	if err != nil {
		return err
	}
	return d.syncPorts()
}

// syncPorts programs every published port of this node's endpoints.
func (d *Driver) syncPorts() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var all []PortMap
	err := d.view(func(tx store.Tx) error {
		kvs, err := tx.List(endpointsPrefix + d.Node + "/")
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var ep endpointRecord
			if err := json.Unmarshal(kv.Value, &ep); err != nil {
				return fmt.Errorf("store key %s is corrupt: %w", kv.Key, err)
			}
			all = append(all, ep.Ports...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return d.Kernel.SyncPorts(all)
}

// Resync reprograms what the store says after duetd starts: the
// published ports (the interfaces outlive duetd on their own).
func (d *Driver) Resync() error { return d.syncPorts() }
