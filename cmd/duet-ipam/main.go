// Command duet-ipam is duet's addressing as a standalone CNI IPAM plugin
// ("ipam": {"type": "duet-ipam"}), for the reference bridge, ptp or
// macvlan plugins: zero-config ULA and IPv4 pools, per-node blocks, no
// duplicate address even under concurrent or killed invocations.
package main

import (
	"crypto/rand"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/store/open"
)

func main() {
	p := &cni.IPAMPlugin{
		Open:     open.Store,
		Rand:     rand.Reader,
		Hostname: cni.DefaultHostname,
		Prefixes: kernel.HostPrefixes,
	}
	cni.PluginMain(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}, "duet-ipam: duet's IPAM as a CNI IPAM plugin")
}
