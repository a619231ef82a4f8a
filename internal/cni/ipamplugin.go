package cni

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
)

// IPAMPlugin is duet-ipam: duet's addressing as a CNI IPAM plugin, for the
// reference bridge, ptp or macvlan plugins. Addresses carry the pool's
// prefix length and its gateway, which is what those plugins expect.
type IPAMPlugin struct {
	Open     func(config.Datastore) (store.Store, error)
	Rand     io.Reader
	Hostname func() (string, error)
	// Prefixes lists the host's routes (see Host.Prefixes).
	Prefixes func() ([]netip.Prefix, error)
	// Stdout receives results; nil means os.Stdout.
	Stdout io.Writer
}

type ipamConf struct {
	name, version string
	cfg           config.IPAM
	attachments   []config.Attachment
	hasAtt        bool
}

func (p *IPAMPlugin) parse(data []byte) (ipamConf, error) {
	var c ipamConf
	var err error
	c.name, c.version, c.cfg, c.attachments, c.hasAtt, err = config.ParseIPAMPlugin(data)
	if err == nil && c.cfg.NodeName == "" {
		if c.cfg.NodeName, err = p.Hostname(); err != nil {
			err = fmt.Errorf("finding the node name: %w (set \"ipam.nodeName\")", err)
		}
	}
	return c, err
}

func (p *IPAMPlugin) update(c ipamConf, fn func(store.Tx) error) error {
	s, err := p.Open(c.cfg.Datastore)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Update(context.Background(), fn)
}

// Add allocates and prints an IPAM result.
func (p *IPAMPlugin) Add(args *skel.CmdArgs) error {
	c, err := p.parse(args.StdinData)
	if err != nil {
		return cniError("parsing the ipam configuration", err)
	}
	h := ipam.Handle{Network: c.name, ContainerID: args.ContainerID, IfName: args.IfName}
	var a ipam.Allocation
	err = p.update(c, func(tx store.Tx) error {
		pools, err := resolvePools(tx, c.name, c.cfg.Pools, p.Rand, p.Prefixes)
		if err != nil {
			return err
		}
		a, err = ipam.Allocate(tx, ipam.Request{Handle: h, Node: c.cfg.NodeName, NetNS: args.Netns, Families: c.cfg.Families, Pools: pools, Rand: p.Rand})
		return err
	})
	if err != nil {
		return cniError("allocating addresses", err)
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for _, ip := range a.IPs {
		res.IPs = append(res.IPs, &current.IPConfig{Address: ipNet(ip.Address), Gateway: ip.Gateway.AsSlice()})
		def := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		if ip.Address.Addr().Is4() {
			def = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		res.Routes = append(res.Routes, &types.Route{Dst: ipNet(def)})
	}
	return printResult(p.Stdout, res, c.version)
}

// Del frees the attachment's addresses; it succeeds if there are none.
func (p *IPAMPlugin) Del(args *skel.CmdArgs) error {
	c, err := p.parse(args.StdinData)
	if err != nil {
		return cniError("parsing the ipam configuration", err)
	}
	h := ipam.Handle{Network: c.name, ContainerID: args.ContainerID, IfName: args.IfName}
	if err := p.update(c, func(tx store.Tx) error { _, _, err := ipam.Release(tx, h); return err }); err != nil {
		return cniError("releasing addresses", err)
	}
	return nil
}

// Check verifies the store still holds the attachment.
func (p *IPAMPlugin) Check(args *skel.CmdArgs) error {
	c, err := p.parse(args.StdinData)
	if err != nil {
		return cniError("parsing the ipam configuration", err)
	}
	h := ipam.Handle{Network: c.name, ContainerID: args.ContainerID, IfName: args.IfName}
	found := false
	if err := p.update(c, func(tx store.Tx) (err error) { _, found, err = ipam.Get(tx, h); return err }); err != nil {
		return cniError("reading the allocation", err)
	}
	if !found {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no addresses are allocated to %s", h), "")
	}
	return nil
}

// GC frees the allocations of this network not in valid-attachments.
func (p *IPAMPlugin) GC(args *skel.CmdArgs) error {
	c, err := p.parse(args.StdinData)
	if err != nil {
		return cniError("parsing the ipam configuration", err)
	}
	if !c.hasAtt {
		return nil
	}
	valid := map[config.Attachment]bool{}
	for _, at := range c.attachments {
		valid[at] = true
	}
	err = p.update(c, func(tx store.Tx) error {
		_, err := ipam.GC(tx, c.name, func(a ipam.Allocation) bool {
			return valid[config.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}]
		})
		return err
	})
	if err != nil {
		return cniError("garbage-collecting allocations", err)
	}
	return nil
}

// Status says whether the store answers and the pools have room.
func (p *IPAMPlugin) Status(args *skel.CmdArgs) error {
	c, err := p.parse(args.StdinData)
	if err != nil {
		return cniError("parsing the ipam configuration", err)
	}
	err = p.update(c, func(tx store.Tx) error {
		pools := c.cfg.Pools
		if len(pools) == 0 {
			var ok bool
			if pools, ok, err = ipam.StoredDefaultPools(tx); err != nil || !ok {
				return err
			}
		}
		return ipam.Room(tx, c.cfg.NodeName, c.cfg.Families, pools)
	})
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	return nil
}
