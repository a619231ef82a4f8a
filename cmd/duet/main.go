// Command duet is the duet CNI plugin ("type": "duet"): it gives a
// container IPv6 and IPv4 (or either alone), usable the moment ADD returns.
// It runs once per container, so it links only what it needs: no etcd
// server, client-go, GoBGP or Prometheus (see deps_test.go).
package main

import (
	"crypto/rand"
	"log"
	"os"

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
	// skel.PluginMainFuncs, with skel's own environment errors explained
	// (it checks the environment before any of p's code runs).
	e := skel.PluginMainFuncsWithError(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status},
		cni.SupportedVersions, "duet: IPv6-first dual-stack CNI plugin")
	if e != nil {
		e = cni.EnvError(e, os.Getenv("CNI_COMMAND"), os.Getenv("CNI_NETNS"))
		if err := e.Print(); err != nil {
			log.Print("Error writing error JSON to stdout: ", err)
		}
		os.Exit(1)
	}
}
