package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
)

// KernelHost is the Host backed by the running kernel.
var KernelHost Host = kernelHost{}

// KernelPodNetwork is the PodNetwork backed by the running kernel.
var KernelPodNetwork PodNetwork = kernelPodNet{}

type kernelHost struct{}

func (kernelHost) DefaultRouteMTU() (int, error)     { return kernel.DefaultRouteMTU() }
func (kernelHost) Prefixes() ([]netip.Prefix, error) { return kernel.HostPrefixes() }

// EnableForwarding turns forwarding on for the families pods use.
func (kernelHost) EnableForwarding(addrs []netip.Addr) ([]kernel.SysctlChange, error) {
	return kernel.EnableForwarding(addrs...)
}

// SysctlLogPath is where the plugin records every host sysctl it changed,
// one JSON object a line, for `duetctl node sysctls`.
const SysctlLogPath = config.DefaultSysctlLog

// SysctlLogEntry is one line of SysctlLogPath.
type SysctlLogEntry struct {
	Time string `json:"time"`
	Name string `json:"name"`
	Old  string `json:"old"`
	New  string `json:"new"`
	By   string `json:"by"`
	// NetNS identifies the network namespace changed ("net:[4026531840]"):
	// the file is per machine, but a lab's nodes are namespaces of it.
	NetNS string `json:"netns"`
}

// CurrentNetNS names the calling thread's network namespace the way
// SysctlLogEntry.NetNS does.
func CurrentNetNS() string {
	s, _ := os.Readlink("/proc/thread-self/ns/net")
	return s
}

// recordSysctls says on the runtime's log, and in the network's sysctl
// log, which host sysctls the plugin changed: they outlive the pod, so an
// operator must be able to find who set them.
func (p *Plugin) recordSysctls(n *config.Network, changes []kernel.SysctlChange) {
	if len(changes) == 0 {
		return
	}
	w := p.Stderr
	if w == nil {
		w = os.Stderr
	}
	for _, c := range changes {
		fmt.Fprintf(w, "duet: sysctl %s\n", c)
	}
	path := n.SysctlLog
	if path == "" {
		path = SysctlLogPath
	}
	logSysctlChanges(path, changes)
}

func logSysctlChanges(path string, changes []kernel.SysctlChange) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return // the stderr line above is the record then
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339)
	for _, c := range changes {
		line, _ := json.Marshal(SysctlLogEntry{Time: now, Name: c.Name, Old: c.Old, New: c.New, By: "duet CNI plugin", NetNS: CurrentNetNS()})
		f.Write(append(line, '\n'))
	}
}

type kernelPodNet struct{}

func (kernelPodNet) Setup(s podnet.Spec) (podnet.Result, error) { return podnet.Setup(s) }
func (kernelPodNet) Check(s podnet.Spec) error                  { return podnet.Check(s) }
func (kernelPodNet) Teardown(netns, ifName, hostIfName string) error {
	return podnet.Teardown(netns, ifName, hostIfName)
}

// KernelFirewall is the Firewall backed by nft on the host.
var KernelFirewall Firewall = kernelFirewall{}

type kernelFirewall struct{}

func (kernelFirewall) Apply(script string) error { return kernel.NFTApply(script) }

func (kernelFirewall) ApplyFast(op firewall.FastOp) error {
	return kernel.NFTApplyElements(kernel.NFTSetElements{Table: firewall.Table, Checks: nftElements(op.Checks), Add: op.Add, Elements: nftElements(op.Elements)})
}

func (f kernelFirewall) CheckPod(pod firewall.Pod) error { return firewall.CheckPod(f, pod) }

// RuleComments reads a chain of duet's table in fam (firewall.Reader).
func (kernelFirewall) RuleComments(fam firewall.Family, chain string) ([]string, error) {
	return kernel.NFTRuleComments(string(fam), firewall.Table, chain)
}

func (kernelHost) OnLinkPrefixes() ([]kernel.OnLinkPrefix, error) {
	host, err := kernel.HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	return host.OnLinkPrefixes()
}

func (kernelHost) ProxyPods(entries []kernel.ProxyEntry) ([]kernel.SysctlChange, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	host, err := kernel.HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	var all []kernel.SysctlChange
	for _, e := range entries {
		changes, err := host.AddProxyEntry(e)
		all = append(all, changes...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

func (kernelHost) UnproxyPods(addrs []netip.Addr) error {
	host, err := kernel.HostNS()
	if err != nil {
		return err
	}
	defer host.Close()
	entries, err := host.ProxyEntries()
	if err != nil {
		return err
	}
	for _, e := range entries {
		for _, a := range addrs {
			if e.Addr == a {
				if err := host.DelProxyEntry(e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
