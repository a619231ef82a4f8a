package lab

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/duetnet/duet/internal/docker"
)

// The docker runtime: each node's duetd serves a Docker driver of its own
// name (duet-lab-NODE), and each node has a Docker network of that name
// on the lab's pools; a pod is a container of the machine's Docker Engine
// on its node's network, its namespace attached under the pod's name so
// every tool that enters a pod's namespace works unchanged. The container
// lives in Docker's sandbox; its interface's host end is in the node.

func dockerCmd(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// dockerNetwork creates node's network, once.
func dockerNetwork(s State, node string) error {
	name := DockerDriver(node)
	if _, err := dockerCmd("network", "inspect", name); err == nil {
		return nil
	}
	args := []string{"network", "create", "-d", name, "--ipam-driver", name, "--label", DockerLabel + "=" + s.Datadir}
	switch s.Options.Family {
	case "dual":
		args = append(args, "--ipv6")
	case "ipv6":
		args = append(args, "--ipv6", "--ipv4=false") // Docker 27 or later
	}
	for _, p := range s.Pools {
		args = append(args, "--subnet", p)
		if p == ProxyPool4.String() {
			args = append(args, "--ipam-opt", fmt.Sprintf("%s4=%d", docker.IPAMBlockSize, proxyBlockSize4))
		}
	}
	if s.Options.Routing == "vxlan" {
		args = append(args, "-o", fmt.Sprintf("com.docker.network.driver.mtu=%d", 1500-70))
	}
	_, err := dockerCmd(append(args, name)...)
	return err
}

// addDockerPod runs the pod's container and attaches its namespace as the
// pod's.
func addDockerPod(s State, p Pod) ([]netip.Addr, error) {
	name := Prefix + p.Name
	if _, err := dockerCmd("run", "-d", "--name", name, "--hostname", p.Name, "--network", DockerDriver(p.Node),
		"--label", DockerLabel+"="+s.Datadir, docker.BusyboxImage, "sleep", "2147483647"); err != nil {
		return nil, err
	}
	out, err := dockerCmd("inspect", "-f", "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{.IPAddress}}{{end}}", name)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return nil, fmt.Errorf("docker inspect %s: %q", name, out)
	}
	if err := ip("netns", "attach", p.NetNS, f[0]); err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, a := range f[1:] {
		if addr, err := netip.ParseAddr(a); err == nil {
			ips = append(ips, addr)
		}
	}
	return ips, nil
}

// downDocker removes the lab's containers, then its networks, while the
// nodes' drivers still answer, and the sockets of drivers that were
// killed: Docker keeps nothing of the lab.
func downDocker(out io.Writer) []string {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil
	}
	var errs []string
	if ids, err := dockerCmd("ps", "-aq", "--filter", "label="+DockerLabel); err == nil && ids != "" {
		if _, err := dockerCmd(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			errs = append(errs, err.Error())
		} else {
			fmt.Fprintf(out, "removed %d docker containers\n", len(strings.Fields(ids)))
		}
	}
	if ids, err := dockerCmd("network", "ls", "-q", "--filter", "label="+DockerLabel); err == nil && ids != "" {
		for _, id := range strings.Fields(ids) {
			if _, err := dockerCmd("network", "rm", id); err != nil {
				errs = append(errs, err.Error())
			}
		}
		fmt.Fprintf(out, "removed %d docker networks\n", len(strings.Fields(ids)))
	}
	socks, _ := filepath.Glob(filepath.Join(docker.PluginDir, Prefix+"*.sock"))
	for _, sock := range socks {
		_ = os.Remove(sock)
	}
	return errs
}
