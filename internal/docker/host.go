package docker

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/duetnet/duet/internal/cni"
	"github.com/duetnet/duet/internal/kernel"
)

// HostKernel is the Kernel of the namespace duetd runs in: the CNI
// plugin's own code for interfaces and protections, nft for ports.
type HostKernel struct {
	*cni.Plugin
}

// NewHostKernel is the kernel side of the driver; stderr receives the
// plugin code's notes (sysctls it changed).
func NewHostKernel(stderr *os.File) HostKernel {
	return HostKernel{Plugin: &cni.Plugin{Net: cni.KernelPodNetwork, Host: cni.KernelHost, Firewall: cni.KernelFirewall, Stderr: stderr}}
}

func (HostKernel) HostPrefixes() ([]netip.Prefix, error) { return kernel.HostPrefixes() }

func (k HostKernel) CheckPools(p []netip.Prefix) error { return k.Plugin.CheckPools(p) }

func (HostKernel) DeleteBridge(name string) error {
	host, err := kernel.HostNS()
	if err != nil {
		return err
	}
	defer host.Close()
	l, err := host.Link(name)
	if errors.Is(err, kernel.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Kind != "bridge" {
		return nil
	}
	return host.DeleteLink(name)
}

func (HostKernel) SyncPorts(maps []PortMap) error { return kernel.NFTApply(PortsScript(maps)) }

// forwardRules accept what goes to and from duet's interfaces in
// DOCKER-USER, the chain Docker keeps for its users' rules: Docker sets
// the FORWARD policy to DROP, which would drop every packet a duet
// container sends through the host, and keeps DOCKER-USER across its own
// restarts. Interfaces match by name (dt*, duet-* bridges), natively in
// iptables-nft; the protections have checked the traffic already.
var forwardRules = [][]string{
	{"-i", "dt+", "-m", "comment", "--comment", "duet", "-j", "ACCEPT"},
	{"-o", "dt+", "-m", "comment", "--comment", "duet", "-j", "ACCEPT"},
	{"-i", "duet-+", "-m", "comment", "--comment", "duet", "-j", "ACCEPT"},
	{"-o", "duet-+", "-m", "comment", "--comment", "duet", "-j", "ACCEPT"},
}

// EnsureForwarding puts forwardRules first in each family's DOCKER-USER
// chain that exists; where there is none (no Docker, or Docker with
// iptables off) nothing needs it. It is safe to call again.
func EnsureForwarding() error {
	var errs []error
	for _, bin := range []string{"iptables", "ip6tables"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		if run(path, "-w", "-n", "-L", "DOCKER-USER") != nil {
			continue
		}
		for i, r := range forwardRules {
			if run(path, append([]string{"-w", "-C", "DOCKER-USER"}, r...)...) == nil {
				continue
			}
			if err := run(path, append([]string{"-w", "-I", "DOCKER-USER", strconv.Itoa(i + 1)}, r...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveForwarding takes forwardRules out again (duetctl's cleanup).
func RemoveForwarding() {
	for _, bin := range []string{"iptables", "ip6tables"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		for _, r := range forwardRules {
			for run(path, append([]string{"-w", "-D", "DOCKER-USER"}, r...)...) == nil {
			}
		}
	}
}

func run(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// EnginePIDFile is where dockerd writes its pid.
const EnginePIDFile = "/var/run/docker.pid"

// EngineNS is the network namespace of the running dockerd, as a path,
// or "" when it is this process's own (or no dockerd is found: the
// driver then leaves the container's end here, as on a plain host).
func EngineNS() string {
	b, err := os.ReadFile(EnginePIDFile)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ""
	}
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	theirs, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	if ours, _ := os.Readlink("/proc/thread-self/ns/net"); ours == theirs {
		return ""
	}
	return path
}
