package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/store"
)

// Kernel is what the driver asks of the host it runs on.
type Kernel interface {
	// Attach and Detach make and remove a container's interface with
	// everything the CNI plugin makes (cni.Plugin does both); the driver
	// asks for a pair whose container end Docker moves (runtimeMoves).
	Attach(n *config.Network, a ipam.Allocation, pools []ipam.Pool, netns string, runtimeMoves bool) (podnet.Result, error)
	Detach(n *config.Network, a ipam.Allocation, netns string) error
	// HostPrefixes keeps the zero-config IPv4 pool clear of the host's.
	HostPrefixes() ([]netip.Prefix, error)
	// CheckPools refuses pools that contain an uplink's on-link prefix.
	CheckPools([]netip.Prefix) error
	// DeleteBridge removes a bridge-mode network's bridge (no error when
	// it is gone).
	DeleteBridge(name string) error
	// SyncPorts makes the host's published ports exactly these.
	SyncPorts([]PortMap) error
}

// Driver is duet's Docker network and IPAM driver on one node.
type Driver struct {
	// Node is this host's node name in the store.
	Node      string
	OpenStore func() (store.Store, error)
	Kernel    Kernel
	// Rand feeds ULA Global IDs (the zero-config pool, the first time).
	Rand io.Reader
	Log  *slog.Logger
	// SysctlLog is where the host sysctls the driver changes are
	// recorded ("": the plugin's default); a lab points it at its own.
	SysctlLog string
	// EngineNS is the network namespace Docker Engine runs in, where Join
	// leaves each container's end for Docker to find ("": duetd's own;
	// nil: always duetd's own). Asked at each Join: Docker may restart.
	EngineNS func() string
	// mu serialises the port table's read-then-write.
	mu sync.Mutex
}

// netPool is one pool of a network, with the gateway Docker recorded.
type netPool struct {
	Pool    ipam.Pool  `json:"pool"`
	Gateway netip.Addr `json:"gateway"`
}

// networkRecord is a Docker network on this node.
type networkRecord struct {
	ID     string    `json:"id"`
	Mode   string    `json:"mode"`
	Bridge string    `json:"bridge,omitempty"`
	MTU    int       `json:"mtu,omitempty"`
	Pools  []netPool `json:"pools"`
}

// endpointRecord is one container's attachment to a network.
type endpointRecord struct {
	Network string         `json:"network"`
	ID      string         `json:"id"`
	Addrs   []netip.Prefix `json:"addrs"`
	MAC     string         `json:"mac"`
	// Joined is set from Join to Leave.
	Joined     bool      `json:"joined,omitempty"`
	SandboxKey string    `json:"sandboxKey,omitempty"`
	Ports      []PortMap `json:"ports,omitempty"`
	// Bindings are Join's port bindings, kept for Docker versions that
	// send them only then.
	Bindings []portBinding `json:"bindings,omitempty"`
}

func (d *Driver) networkKey(nid string) string { return networksPrefix + d.Node + "/" + nid }
func (d *Driver) endpointKey(nid, eid string) string {
	return endpointsPrefix + d.Node + "/" + nid + "/" + eid
}

// netName is the duet network name of a Docker network.
func netName(nid string) string { return "docker-" + short(nid) }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (r networkRecord) config(node, sysctlLog string) *config.Network {
	n := &config.Network{CNIVersion: "1.1.0", Name: netName(r.ID), Mode: r.Mode, Bridge: r.Bridge, MTU: r.MTU, Protections: true, SysctlLog: sysctlLog}
	n.NodeName = node
	for _, p := range r.Pools {
		n.Pools = append(n.Pools, p.Pool)
	}
	return n
}

func (r networkRecord) pools() []ipam.Pool { return r.config("", "").Pools }

// allocation is the endpoint as the CNI plugin's code sees an attachment:
// its interface name is the container end's until Docker moves and
// renames it, so the host end's name (cni.HostIfName) follows from the
// network and endpoint alone.
func (r networkRecord) allocation(node string, ep endpointRecord) ipam.Allocation {
	a := ipam.Allocation{Handle: endpointHandle(r.ID, ep.ID), Node: node, MAC: ep.MAC, NetNS: ep.SandboxKey}
	for _, addr := range ep.Addrs {
		for _, p := range r.Pools {
			if p.Pool.CIDR.Contains(addr.Addr()) {
				a.IPs = append(a.IPs, ipam.IP{Address: netip.PrefixFrom(addr.Addr(), p.Pool.CIDR.Bits()), Block: p.Pool.CIDR, Gateway: p.Gateway})
			}
		}
	}
	return a
}

// endpointHandle names an endpoint's attachment; its IfName is the
// container end's name while it is still on the host: "dc" and the same
// digits as the host end's "dt".
func endpointHandle(nid, eid string) ipam.Handle {
	sum := sha256.Sum256([]byte(nid + "/" + eid))
	return ipam.Handle{Network: netName(nid), ContainerID: eid, IfName: "dc" + hex.EncodeToString(sum[:])[:11]}
}

// HostIfName is the host end of an endpoint's pair.
func HostIfName(nid, eid string) string { return cni.HostIfName(endpointHandle(nid, eid)) }

func (d *Driver) loadNetwork(tx store.Tx, nid string) (networkRecord, error) {
	var r networkRecord
	found, err := getJSON(tx, d.networkKey(nid), &r)
	if err != nil {
		return r, err
	}
	if !found {
		return r, fmt.Errorf("network %s is not known to duet on node %q: it was created elsewhere, or duet's store was reset; remove it (docker network rm) and create it again", short(nid), d.Node)
	}
	return r, nil
}

func (d *Driver) loadEndpoint(tx store.Tx, nid, eid string) (endpointRecord, bool, error) {
	var ep endpointRecord
	found, err := getJSON(tx, d.endpointKey(nid, eid), &ep)
	return ep, found, err
}

// createNetwork answers NetworkDriver.CreateNetwork.
func (d *Driver) createNetwork(req createNetworkRequest) error {
	if req.NetworkID == "" {
		return errors.New("CreateNetwork without a NetworkID")
	}
	r := networkRecord{ID: req.NetworkID, Mode: config.ModeRouted}
	generic, err := genericOptions(req.Options)
	if err != nil {
		return err
	}
	for k, v := range generic {
		switch k {
		case OptMode:
			if v != config.ModeRouted && v != config.ModeBridge {
				return fmt.Errorf("-o %s=%q: use %q (the default: /128 and /32 routes, link-local gateways) or %q (one Linux bridge per network, as Docker's own driver)", k, v, config.ModeRouted, config.ModeBridge)
			}
			r.Mode = v
		case OptBridge:
			r.Bridge = v
		case optMTU:
			mtu, err := strconv.Atoi(v)
			if err != nil || mtu < 1280 || mtu > 65535 {
				return fmt.Errorf("-o %s=%q: give an MTU between 1280 (the IPv6 minimum) and 65535", k, v)
			}
			r.MTU = mtu
		default:
			if strings.HasPrefix(k, "duet.") {
				return fmt.Errorf("-o %s is not one of duet's options: use %s (routed or bridge), %s or %s", k, OptMode, OptBridge, optMTU)
			}
		}
	}
	if r.Mode == config.ModeBridge && r.Bridge == "" {
		r.Bridge = "duet-" + short(req.NetworkID)[:min(10, len(short(req.NetworkID)))]
	}
	if r.Mode == config.ModeRouted && r.Bridge != "" {
		return fmt.Errorf("-o %s is only used with -o %s=bridge", OptBridge, OptMode)
	}
	if len(r.Bridge) > 15 {
		return fmt.Errorf("-o %s=%q is longer than an interface name may be (15 characters)", OptBridge, r.Bridge)
	}
	v6, v4 := boolOption(req.Options, optEnableIPv6, false), boolOption(req.Options, optEnableIPv4, true)
	var data []ipamData
	if v6 {
		data = append(data, req.IPv6Data...)
	}
	if v4 {
		data = append(data, req.IPv4Data...)
	}
	if len(data) == 0 {
		return errors.New("the network has no subnet in any family: create it with --ipv6, or leave IPv4 on")
	}
	return d.update(func(tx store.Tx) error {
		for _, in := range data {
			np, err := d.networkPool(tx, in)
			if err != nil {
				return err
			}
			r.Pools = append(r.Pools, np)
		}
		if err := ipam.ValidatePools(r.pools(), "--subnet"); err != nil {
			return err
		}
		d.Log.Info("docker: network created", "network", short(r.ID), "mode", r.Mode, "pools", r.pools())
		return putJSON(tx, d.networkKey(r.ID), r)
	})
}

// networkPool is one of Docker's pools as duet's: the IPAM driver's
// record when duet's IPAM made it, the defaults for another IPAM's.
func (d *Driver) networkPool(tx store.Tx, in ipamData) (netPool, error) {
	cidr, err := netip.ParsePrefix(in.Pool)
	if err != nil {
		return netPool{}, fmt.Errorf("pool %q from Docker is not a prefix", in.Pool)
	}
	var np netPool
	var rec poolRecord
	found, err := getJSON(tx, poolsPrefix+poolKey(cidr), &rec)
	if err != nil {
		return netPool{}, err
	}
	if found {
		np.Pool = rec.Pool
	} else if np.Pool, err = (ipam.PoolSpec{CIDR: cidr.String()}).Resolve("--subnet " + cidr.String()); err != nil {
		return netPool{}, err
	}
	np.Gateway = np.Pool.Gateway()
	if in.Gateway != "" {
		gw, err := netip.ParsePrefix(in.Gateway)
		if err != nil {
			return netPool{}, fmt.Errorf("gateway %q from Docker is not an address with its prefix length", in.Gateway)
		}
		np.Gateway = gw.Addr()
	}
	return np, nil
}

func genericOptions(opts map[string]any) (map[string]string, error) {
	out := map[string]string{}
	raw, ok := opts[optGeneric]
	if !ok || raw == nil {
		return out, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("option %s is not an object", optGeneric)
	}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out, nil
}

func boolOption(opts map[string]any, key string, def bool) bool {
	switch v := opts[key].(type) {
	case bool:
		return v
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return def
}

// deleteNetwork answers NetworkDriver.DeleteNetwork.
func (d *Driver) deleteNetwork(req networkRequest) error {
	var r networkRecord
	var found bool
	err := d.update(func(tx store.Tx) error {
		var err error
		if found, err = getJSON(tx, d.networkKey(req.NetworkID), &r); err != nil || !found {
			return err
		}
		kvs, err := tx.List(d.endpointKey(req.NetworkID, ""))
		if err != nil {
			return err
		}
		for _, kv := range kvs { // Docker deletes endpoints first; this is a leftover
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
		}
		return tx.Delete(d.networkKey(req.NetworkID))
	})
	if err != nil || !found {
		return err
	}
	if r.Mode == config.ModeBridge {
		if err := d.Kernel.DeleteBridge(r.Bridge); err != nil {
			return fmt.Errorf("removing bridge %s: %w", r.Bridge, err)
		}
	}
	d.Log.Info("docker: network deleted", "network", short(r.ID))
	return nil
}

// createEndpoint answers NetworkDriver.CreateEndpoint: it records the
// addresses Docker's IPAM gave and answers a MAC derived from the
// endpoint, as the CNI plugin derives one from its attachment.
func (d *Driver) createEndpoint(req createEndpointRequest) (createEndpointResponse, error) {
	var resp createEndpointResponse
	err := d.update(func(tx store.Tx) error {
		r, err := d.loadNetwork(tx, req.NetworkID)
		if err != nil {
			return err
		}
		ep := endpointRecord{Network: req.NetworkID, ID: req.EndpointID}
		in := req.Interface
		if in == nil {
			in = &endpointInterface{}
		}
		for _, s := range []string{in.AddressIPv6, in.Address} {
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("endpoint address %q is not an address with its prefix length", s)
			}
			inPool := false
			for _, np := range r.Pools {
				inPool = inPool || np.Pool.CIDR.Contains(p.Addr())
			}
			if !inPool {
				return fmt.Errorf("address %s is in none of the network's subnets (%v)", p, r.pools())
			}
			ep.Addrs = append(ep.Addrs, p)
		}
		if len(ep.Addrs) == 0 {
			return errors.New("the endpoint has no address: create the network with duet's IPAM (--ipam-driver duet) or give it subnets")
		}
		if in.MacAddress != "" {
			mac, err := net.ParseMAC(in.MacAddress)
			if err != nil {
				return fmt.Errorf("--mac-address %q is not a MAC address", in.MacAddress)
			}
			ep.MAC = mac.String()
		} else {
			ep.MAC = cni.PodMAC(ipam.Handle{Network: netName(r.ID), ContainerID: req.EndpointID}).String()
			resp.Interface = &endpointInterface{MacAddress: ep.MAC}
		}
		return putJSON(tx, d.endpointKey(req.NetworkID, req.EndpointID), ep)
	})
	return resp, err
}

// join answers NetworkDriver.Join. The container's namespace does not
// exist yet (Docker's runtime makes it when the container starts), so the
// pair is made here, its host end complete and protected; Docker moves
// the container end in, names it ethN, addresses it, and adds the
// default routes via the gateways answered here.
func (d *Driver) join(req joinRequest) (joinResponse, error) {
	var r networkRecord
	var ep endpointRecord
	err := d.view(func(tx store.Tx) error {
		var err error
		if r, err = d.loadNetwork(tx, req.NetworkID); err != nil {
			return err
		}
		var found bool
		if ep, found, err = d.loadEndpoint(tx, req.NetworkID, req.EndpointID); err == nil && !found {
			err = fmt.Errorf("endpoint %s of network %s is not known to duet: remove the container and run it again", short(req.EndpointID), short(req.NetworkID))
		}
		return err
	})
	if err != nil {
		return joinResponse{}, err
	}
	ep.SandboxKey = req.SandboxKey
	a := r.allocation(d.Node, ep)
	engine := ""
	if d.EngineNS != nil {
		engine = d.EngineNS()
	}
	res, err := d.Kernel.Attach(r.config(d.Node, d.SysctlLog), a, r.pools(), engine, true)
	if err != nil {
		return joinResponse{}, err
	}
	ep.Joined = true
	if b, err := portBindings(req.Options); err == nil {
		ep.Bindings = b
	}
	if err := d.update(func(tx store.Tx) error { return putJSON(tx, d.endpointKey(ep.Network, ep.ID), ep) }); err != nil {
		_ = d.Kernel.Detach(r.config(d.Node, d.SysctlLog), a, "")
		return joinResponse{}, err
	}
	resp := joinResponse{InterfaceName: &interfaceName{SrcName: res.PodIfName, DstPrefix: "eth"}, DisableGatewayService: true}
	for _, gw := range res.Gateways {
		if gw.Is4() {
			resp.Gateway = gw.String()
		} else {
			resp.GatewayIPv6 = gw.String()
		}
		// The container's addresses are host routes (see requestAddress),
		// so no gateway is on its subnet: a connected route to each lets
		// Docker's default route through it resolve.
		resp.StaticRoutes = append(resp.StaticRoutes, staticRoute{Destination: netip.PrefixFrom(gw, gw.BitLen()).String(), RouteType: routeConnected})
	}
	d.Log.Info("docker: joined", "network", short(r.ID), "endpoint", short(ep.ID), "host", res.HostIfName, "addresses", ep.Addrs)
	return resp, nil
}

// leave answers NetworkDriver.Leave.
func (d *Driver) leave(req endpointRequest) error {
	var r networkRecord
	var ep endpointRecord
	var found bool
	err := d.view(func(tx store.Tx) error {
		var err error
		if r, err = d.loadNetwork(tx, req.NetworkID); err != nil {
			return err
		}
		ep, found, err = d.loadEndpoint(tx, req.NetworkID, req.EndpointID)
		return err
	})
	if err != nil || !found || !ep.Joined {
		return err
	}
	if err := d.Kernel.Detach(r.config(d.Node, d.SysctlLog), r.allocation(d.Node, ep), ""); err != nil {
		return err
	}
	hadPorts := len(ep.Ports) > 0
	ep.Joined, ep.SandboxKey, ep.Ports, ep.Bindings = false, "", nil, nil
	if err := d.update(func(tx store.Tx) error { return putJSON(tx, d.endpointKey(ep.Network, ep.ID), ep) }); err != nil {
		return err
	}
	if hadPorts {
		return d.syncPorts()
	}
	return nil
}

// deleteEndpoint answers NetworkDriver.DeleteEndpoint; an endpoint still
// joined (a Leave that never came) is detached first.
func (d *Driver) deleteEndpoint(req endpointRequest) error {
	if err := d.leave(req); err != nil {
		return err
	}
	return d.update(func(tx store.Tx) error { return tx.Delete(d.endpointKey(req.NetworkID, req.EndpointID)) })
}

func (d *Driver) endpointInfo(req endpointRequest) (endpointInfoResponse, error) {
	out := endpointInfoResponse{Value: map[string]any{}}
	err := d.view(func(tx store.Tx) error {
		ep, found, err := d.loadEndpoint(tx, req.NetworkID, req.EndpointID)
		if err != nil || !found {
			return err
		}
		if ep.Joined {
			out.Value["duet.host-interface"] = HostIfName(req.NetworkID, ep.ID)
		}
		return nil
	})
	return out, err
}
