// Command duet is the duet CNI plugin ("type": "duet"): it gives a
// container IPv6 and IPv4 (or either alone), usable the moment ADD returns.
// It runs once per container, so it links only what it needs: no etcd
// server, client-go, GoBGP or Prometheus (see deps_test.go).
package main

import (
	"crypto/rand"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/store/open"
)

func main() {
	p := &cni.Plugin{
		Net:      cni.KernelPodNetwork,
		Host:     cni.KernelHost,
		Firewall: cni.KernelFirewall,
		Open:     open.Store,
		Rand:     rand.Reader,
		Hostname: cni.DefaultHostname,
	}
	cni.PluginMain(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}, "duet: IPv6-first dual-stack CNI plugin")
}
