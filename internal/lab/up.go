package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/docker"
)

// DefaultDatadir holds the lab's state, datastore, sockets and logs.
const DefaultDatadir = "/run/duet-lab"

const stateFile = "state.json"

// ErrAlreadyUp means a lab exists with other options.
var ErrAlreadyUp = errors.New("a lab is already up")

// Load reads the lab's state; ok is false when there is no lab.
func Load(datadir string) (State, bool, error) {
	raw, err := os.ReadFile(filepath.Join(datadir, stateFile))
	if os.IsNotExist(err) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, err
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return State{}, false, fmt.Errorf("%s is corrupt (%v): run duetctl lab down", filepath.Join(datadir, stateFile), err)
	}
	return s, true, nil
}

// Save writes the state where Load finds it (write-then-rename).
func (s State) Save() error { return s.save() }

func (s State) save() error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Datadir, stateFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Datadir, stateFile))
}

// Up builds the lab. binDir holds duet and duetd. Running it again with
// the same options on a ready lab changes nothing.
func Up(ctx context.Context, o Options, binDir, datadir string, out io.Writer) (State, error) {
	// Options first: a wrong flag is named as such even while a lab
	// runs, rather than hidden behind "already up".
	o = o.WithDefaults()
	if err := o.Validate(); err != nil {
		return State{}, err
	}
	if old, ok, err := Load(datadir); err != nil {
		return State{}, err
	} else if ok {
		if !old.Ready {
			return State{}, fmt.Errorf("%w but did not finish (interrupted or failed): run `duetctl lab down`, then `lab up` again", ErrAlreadyUp)
		}
		if d := o.Diff(old.Options.WithDefaults()); len(d) > 0 {
			return State{}, fmt.Errorf("%w with other options: %s; run `duetctl lab down` first to change it", ErrAlreadyUp, strings.Join(d, ", "))
		}
		fmt.Fprintln(out, "lab already up with these options; nothing to do")
		return old, nil
	}
	for _, b := range []string{"duet", "duetd"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return State{}, fmt.Errorf("%s is missing from %s: run make build", b, binDir)
		}
	}
	if err := os.MkdirAll(datadir, 0o700); err != nil {
		return State{}, err
	}
	s := Plan(o, datadir)
	if err := s.save(); err != nil { // first, so down can clean an interrupted up
		return s, err
	}
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	if s.Underlay.Kind == "router" {
		pid, err := buildRouted(s)
		s.RouterPID = pid
		if err != nil {
			_ = s.save()
			return s, err
		}
		step("router %s running BIRD (AS %d), pid %d", s.Underlay.NetNS, routerASN, pid)
	} else {
		step("switch %s", s.Underlay.NetNS)
		if err := buildUnderlay(s); err != nil {
			return s, err
		}
	}
	pid, err := startStore(ctx, binDir, s)
	s.StorePID = pid
	if err != nil {
		_ = s.save()
		return s, err
	}
	if err := s.save(); err != nil {
		return s, err
	}
	step("etcd in %s at %s, pid %d", s.Store.NetNS, strings.Join(s.EtcdEndpoints(), " "), pid)
	for _, n := range s.Nodes {
		pid, err := startDuetd(binDir, s, n)
		if err != nil {
			return s, err
		}
		s.PIDs = append(s.PIDs, pid)
		if err := s.save(); err != nil {
			return s, err
		}
		step("node %s %v, duetd pid %d", n.Name, n.Addrs, pid)
	}
	if s.Options.Runtime == "docker" {
		if err := docker.EnsureImage(docker.BusyboxImage); err != nil {
			return s, err
		}
		for _, n := range s.Nodes {
			if err := waitSocket(ctx, docker.SocketPath(DockerDriver(n.Name))); err != nil {
				return s, fmt.Errorf("node %s's duetd --docker: %w (see %s)", n.Name, err, filepath.Join(s.Datadir, n.Name+".log"))
			}
			if err := dockerNetwork(s, n.Name); err != nil {
				return s, err
			}
			step("docker network %s", DockerDriver(n.Name))
		}
	}
	for i := range s.Pods {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		p := &s.Pods[i]
		var ips []netip.Addr
		var err error
		if s.Options.Runtime == "docker" {
			ips, err = addDockerPod(s, *p)
		} else {
			ips, err = addPod(ctx, binDir, s, *p, &linePrefixer{w: out, prefix: "        " + p.Node + ": "})
		}
		if err != nil {
			return s, err
		}
		p.IPs = ips
		if err := s.save(); err != nil {
			return s, err
		}
		step("pod %s on %s %v", p.Name, p.Node, ips)
	}
	if err := waitConverged(ctx, s, 20*time.Second); err != nil {
		return s, err
	}
	step("routes converged on every node")
	s.Ready = true
	return s, s.save()
}

// waitSocket waits for a unix socket to appear (a daemon just started).
func waitSocket(ctx context.Context, path string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within 15s", path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BuildUnderlay makes the switched underlay of Plan's state: the kube
// lab builds on it.
func BuildUnderlay(s State) error { return buildUnderlay(s) }

// buildUnderlay makes the switch, and plugs each node and the outside
// into it; the nodes' default routes lead to the outside.
func buildUnderlay(s State) error {
	sw := s.Underlay.NetNS
	if err := ip("netns", "add", sw); err != nil {
		return err
	}
	if err := ip("-n", sw, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := ip("-n", sw, "link", "set", "br0", "up"); err != nil {
		return err
	}
	type member struct {
		name, netns string
		addrs       []netip.Addr
	}
	ms := []member{{"outside", s.Outside.NetNS, s.Outside.Addrs}, {"etcd", s.Store.NetNS, s.Store.Addrs}}
	if s.Neighbour != nil {
		ms = append(ms, member{"neighbour", s.Neighbour.NetNS, s.Neighbour.Addrs})
	}
	for _, n := range s.Nodes {
		ms = append(ms, member{n.Name, n.NetNS, n.Addrs})
	}
	for _, m := range ms {
		cmds := [][]string{
			{"netns", "add", m.netns},
			// A real host's uplink link-local finished DAD long ago; a
			// fresh one is tentative for 1-2 s, and until then the node
			// can only send neighbour solicitations from "::", which
			// nobody answers. So the lab's underlay skips DAD, as duet's
			// pod interfaces do.
			{"netns", "exec", m.netns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"},
			{"-n", m.netns, "link", "set", "lo", "up"},
			{"link", "add", "p-" + m.name, "netns", sw, "type", "veth", "peer", "name", "uplink", "netns", m.netns},
			{"-n", sw, "link", "set", "p-" + m.name, "master", "br0", "up"},
			{"-n", m.netns, "link", "set", "uplink", "up"},
		}
		for _, a := range m.addrs {
			plen := Underlay4.Bits()
			extra := []string{}
			if a.Is6() {
				plen, extra = 64, []string{"nodad"}
			}
			cmds = append(cmds, append([]string{"-n", m.netns, "addr", "add", fmt.Sprintf("%s/%d", a, plen), "dev", "uplink"}, extra...))
		}
		if m.name != "outside" && m.name != "neighbour" && m.name != "etcd" {
			for _, gw := range s.Outside.Addrs {
				fam := "-4"
				if gw.Is6() {
					fam = "-6"
				}
				cmds = append(cmds, []string{"-n", m.netns, fam, "route", "add", "default", "via", gw.String(), "dev", "uplink"})
			}
		}
		for _, c := range cmds {
			if err := ip(c...); err != nil {
				return err
			}
		}
	}
	return nil
}

func startDuetd(binDir string, s State, n Node) (int, error) {
	var addrs []string
	for _, a := range n.Addrs {
		addrs = append(addrs, a.String())
	}
	logf, err := os.Create(filepath.Join(s.Datadir, n.Name+".log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	args := []string{"netns", "exec", n.NetNS, filepath.Join(binDir, "duetd"),
		"--node-name", n.Name, "--address", strings.Join(addrs, ","), "--routing", s.Options.Routing,
		"--etcd-endpoints", strings.Join(s.EtcdEndpoints(), ","), "--socket", s.NodeSocket(n.Name), "--http", "", "--interval", "1s"}
	for i, m := range s.Nodes {
		if m.Name == n.Name {
			args = append(args, duetdRoutingArgs(s, i+1)...)
		}
	}
	if s.Options.Runtime == "docker" {
		args = append(args, "--docker", "--docker-name", DockerDriver(n.Name), "--docker-sysctl-log", s.NodeSysctlLog(n.Name))
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives duetctl
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting duetd for %s: %w", n.Name, err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// RestartDuetd stops a node's duetd and starts a new one, as an operator
// upgrading it would; the dataplane must not notice. It returns the new
// state (with the new pid), already saved.
func RestartDuetd(s State, binDir, node string) (State, error) {
	if err := StopDuetd(s, node); err != nil {
		return s, err
	}
	return StartDuetd(s, binDir, node)
}

// StopDuetd stops a node's duetd (SIGTERM, then waits up to a second), and
// leaves everything it programmed in place.
func StopDuetd(s State, node string) error {
	_, err := signalDuetd(s, node, syscall.SIGTERM)
	return err
}

// KillDuetd kills a node's duetd with SIGKILL, as the OOM killer or a
// crashing node would, and waits for it to be gone: nothing it programmed
// is cleaned up, no BGP NOTIFICATION is sent.
func KillDuetd(s State, node string) error {
	gone, err := signalDuetd(s, node, syscall.SIGKILL)
	if err == nil && !gone {
		err = fmt.Errorf("duetd of %s still runs a second after SIGKILL", node)
	}
	return err
}

// signalDuetd signals a node's duetd and waits up to a second for it to
// exit; gone says whether it did.
func signalDuetd(s State, node string, sig syscall.Signal) (gone bool, err error) {
	i, err := nodeIndex(s, node)
	if err != nil {
		return false, err
	}
	p, err := os.FindProcess(s.PIDs[i])
	if err != nil {
		return true, nil
	}
	_ = p.Signal(sig)
	for j := 0; j < 250; j++ {
		if p.Signal(syscall.Signal(0)) != nil {
			return true, nil
		}
		time.Sleep(4 * time.Millisecond)
	}
	return false, nil
}

// StartDuetd starts a node's duetd again and saves its new pid.
func StartDuetd(s State, binDir, node string) (State, error) {
	i, err := nodeIndex(s, node)
	if err != nil {
		return s, err
	}
	pid, err := startDuetd(binDir, s, s.Nodes[i])
	if err != nil {
		return s, err
	}
	s.PIDs[i] = pid
	return s, s.save()
}

func nodeIndex(s State, node string) (int, error) {
	for i, n := range s.Nodes {
		if n.Name == node {
			return i, nil
		}
	}
	return 0, fmt.Errorf("no node %q in the lab", node)
}

// NodeSocket is the status socket of the node's duetd, for duetctl node
// status: beside the lab's state, or in the kube lab where duet's
// DaemonSet mounts the node's /run/duet.
func (s State) NodeSocket(node string) string {
	if s.Kubernetes != nil {
		return filepath.Join(s.Kubernetes.Root, "nodes", node, "run", "duetd.sock")
	}
	return filepath.Join(s.Datadir, node+".sock")
}

// ConfList is the lab's network: the real duet plugin, on the lab's
// etcd, with this node's name.
func ConfList(s State, node string) ([]byte, error) {
	var pools []map[string]any
	for _, p := range s.Pools {
		pool := map[string]any{"cidr": p}
		if p == ProxyPool4.String() {
			pool["blockSize"] = proxyBlockSize4
		}
		if s.Options.BlockSize6 != 0 && strings.Contains(p, ":") {
			pool["blockSize"] = s.Options.BlockSize6
		}
		pools = append(pools, pool)
	}
	plugin := map[string]any{
		"type": "duet", "families": s.Options.Family, "pools": pools, "nodeName": node,
		"datastore": map[string]any{"type": "etcd", "endpoints": s.EtcdEndpoints()},
		"sysctlLog": s.NodeSysctlLog(node),
	}
	if s.Options.Routing == "vxlan" {
		plugin["mtu"] = 1500 - 70 // the lab's underlay MTU, less IPv6 VXLAN overhead
	}
	conf := map[string]any{"cniVersion": "1.1.0", "name": "duet-lab", "plugins": []any{plugin}}
	return json.Marshal(conf)
}

// AddPod adds one more pod to a lab that is up, as up does, and returns
// its addresses; benchmarks use it to time a pod's arrival.
func AddPod(ctx context.Context, s State, binDir string, p Pod) ([]netip.Addr, error) {
	return addPod(ctx, binDir, s, p, &linePrefixer{w: os.Stderr, prefix: p.Node + ": "})
}

// DelPod runs CNI DEL for a pod AddPod added, inside its node's namespace,
// and removes the pod's namespace.
func DelPod(ctx context.Context, s State, binDir string, p Pod) error {
	err := inNodeCNI(s, binDir, p.Node, &linePrefixer{w: os.Stderr, prefix: p.Node + ": "}, func(cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		return cni.DelNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: p.Name, NetNS: "/var/run/netns/" + p.NetNS, IfName: "eth0"})
	})
	if err != nil {
		return fmt.Errorf("CNI DEL of %s on %s: %w", p.Name, p.Node, err)
	}
	return ip("netns", "delete", p.NetNS)
}

// inNodeCNI runs f with the lab's CNI configuration for node, in node's
// namespace, so the plugin's host is the node.
func inNodeCNI(s State, binDir, node string, stderr io.Writer, f func(*libcni.CNIConfig, *libcni.NetworkConfigList) error) error {
	cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(s.Datadir, "cni-cache"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: stderr}, PluginDecoder: version.PluginDecoder{}})
	raw, err := ConfList(s, node)
	if err != nil {
		return err
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return err
	}
	nodeNS, err := ns.GetNS("/var/run/netns/" + Prefix + node)
	if err != nil {
		return err
	}
	defer nodeNS.Close()
	return nodeNS.Do(func(ns.NetNS) error { return f(cni, list) })
}

// linePrefixer writes each line with a prefix: the plugin's log lines
// (the sysctls it changed) name the lab node they concern, since every
// node's plugin writes to the same terminal.
type linePrefixer struct {
	w       io.Writer
	prefix  string
	midLine bool
}

func (l *linePrefixer) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !l.midLine {
			out = append(out, l.prefix...)
		}
		out = append(out, c)
		l.midLine = c != '\n'
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// NodeSysctlLog is where a lab node's plugin records the sysctls it
// changed in the node's namespace: inside the lab, not in the machine's
// cni.SysctlLogPath, so that the machine's record stays its own. In the
// kube lab it is beside the node's datastore (kube.Conflist).
func (s State) NodeSysctlLog(node string) string {
	if s.Kubernetes != nil {
		return filepath.Join(s.Kubernetes.Root, "nodes", node, "lib", "sysctl-changes.jsonl")
	}
	return filepath.Join(s.Datadir, node+".sysctl-changes.jsonl")
}

// Node returns the lab's node of that name, or an error that lists them.
func (s State) Node(name string) (Node, error) {
	var names []string
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, nil
		}
		names = append(names, n.Name)
	}
	return Node{}, fmt.Errorf("the lab has no node %q: use one of %s", name, strings.Join(names, ", "))
}

// addPod creates the pod's namespace and runs CNI ADD inside its node's
// namespace, so the plugin's host is the node.
func addPod(ctx context.Context, binDir string, s State, p Pod, stderr io.Writer) ([]netip.Addr, error) {
	if err := ip("netns", "add", p.NetNS); err != nil {
		return nil, err
	}
	var res *current.Result
	err := inNodeCNI(s, binDir, p.Node, stderr, func(cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		r, err := cni.AddNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: p.Name, NetNS: "/var/run/netns/" + p.NetNS, IfName: "eth0"})
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("CNI ADD of %s on %s: %w", p.Name, p.Node, err)
	}
	var ips []netip.Addr
	for _, c := range res.IPs {
		if a, ok := netip.AddrFromSlice(c.Address.IP); ok {
			ips = append(ips, a.Unmap())
		}
	}
	return ips, nil
}
