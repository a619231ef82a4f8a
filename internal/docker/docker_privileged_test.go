// Privileged: run as root with `go test ./internal/docker/`, against the
// machine's Docker Engine. duetd --docker runs in a namespace of its own
// (a Docker host's network, as in the lab), serving a driver name of its
// own; a client namespace stands for the outside.
package docker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/docker"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/open"
)

// Addresses of the test's "host" (where duetd runs) and its outside
// client, IPv6 first.
const (
	host6, host4     = "fd00:d0e7:d0c::1", "10.251.0.1"
	client6, client4 = "fd00:d0e7:d0c::2", "10.251.0.2"
)

type dockerEnv struct {
	t          *testing.T
	dir, bin   string
	hostNS     string // path
	clientNS   string // name
	name       string // the driver name duetd serves
	db         string
	duetd      *exec.Cmd
	containers []string
	networks   []string
}

func requireDocker(t *testing.T) {
	kerneltest.RequireRoot(t)
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Docker Engine is not running (CI must test the Docker driver): %v %s", err, out)
		}
		t.Skipf("no Docker Engine: %v", err)
	}
}

func newDockerEnv(t *testing.T) *dockerEnv {
	requireDocker(t)
	e := &dockerEnv{t: t, dir: t.TempDir()}
	e.bin = filepath.Join(e.dir, "duetd")
	if out, err := exec.Command("go", "build", "-o", e.dir+"/", "../../cmd/duetd", "../../cmd/duetctl").CombinedOutput(); err != nil {
		t.Fatalf("build duetd and duetctl: %v\n%s", err, out)
	}
	if err := docker.EnsureImage(docker.BusyboxImage); err != nil {
		t.Fatal(err)
	}
	e.hostNS = kerneltest.NetNS(t)
	e.clientNS = kerneltest.NetNSName(kerneltest.NetNS(t))
	h := kerneltest.NetNSName(e.hostNS)
	veth := kerneltest.Name("dkv")
	kerneltest.Run(t, "ip", "link", "add", veth, "netns", h, "type", "veth", "peer", "name", "up0", "netns", e.clientNS)
	for _, c := range [][]string{
		{"-n", h, "link", "set", "lo", "up"}, {"-n", e.clientNS, "link", "set", "lo", "up"},
		{"-n", h, "addr", "add", host6 + "/64", "dev", veth, "nodad"}, {"-n", h, "addr", "add", host4 + "/24", "dev", veth},
		{"-n", e.clientNS, "addr", "add", client6 + "/64", "dev", "up0", "nodad"}, {"-n", e.clientNS, "addr", "add", client4 + "/24", "dev", "up0"},
		{"-n", h, "link", "set", veth, "up"}, {"-n", e.clientNS, "link", "set", "up0", "up"},
		{"-n", h, "-6", "route", "add", "default", "via", client6}, {"-n", h, "route", "add", "default", "via", client4},
	} {
		kerneltest.Run(t, "ip", c...)
	}
	e.name = "duet-" + strings.TrimPrefix(h, "duet-test-")
	if len(e.name) > 24 {
		e.name = e.name[:24]
	}
	e.db = filepath.Join(e.dir, "duet.db")
	e.startDuetd()
	t.Cleanup(e.cleanup)
	return e
}

// startDuetd runs duetd in the host namespace but the machine's mount
// namespace (nsenter --net, not ip netns exec), so it sees the plugin
// directory Docker reads.
func (e *dockerEnv) startDuetd() {
	e.t.Helper()
	e.duetd = exec.Command("nsenter", "--net="+e.hostNS, e.bin, "--docker", "--docker-name", e.name,
		"--node-name", "dockerhost", "--datastore-path", e.db, "--socket", filepath.Join(e.dir, "duetd.sock"), "--http", "", "--interval", "200ms")
	logf, err := os.OpenFile(filepath.Join(e.dir, "duetd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	e.duetd.Stdout, e.duetd.Stderr = logf, logf
	if err := e.duetd.Start(); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(docker.SocketPath(e.name)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("duetd did not serve %s:\n%s", docker.SocketPath(e.name), e.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *dockerEnv) stopDuetd(kill bool) {
	if e.duetd == nil || e.duetd.Process == nil {
		return
	}
	if kill {
		_ = e.duetd.Process.Kill()
	} else {
		_ = e.duetd.Process.Signal(os.Interrupt)
	}
	_ = e.duetd.Wait()
	e.duetd = nil
}

func (e *dockerEnv) log() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "duetd.log"))
	return string(b)
}

func (e *dockerEnv) cleanup() {
	for _, c := range e.containers {
		_ = exec.Command("docker", "rm", "-f", c).Run()
	}
	for _, n := range e.networks {
		_ = exec.Command("docker", "network", "rm", n).Run()
	}
	e.stopDuetd(false)
	_ = os.Remove(docker.SocketPath(e.name))
	if e.t.Failed() {
		e.t.Logf("duetd's log:\n%s", e.log())
	}
}

func (e *dockerEnv) docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (e *dockerEnv) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s\nduetd's log:\n%s", strings.Join(args, " "), err, out, e.log())
	}
	return out
}

func (e *dockerEnv) network(name string, args ...string) {
	e.t.Helper()
	e.networks = append(e.networks, name)
	e.mustDocker(append(append([]string{"network", "create", "-d", e.name, "--ipam-driver", e.name}, args...), name)...)
}

func (e *dockerEnv) run(name, network string, args ...string) {
	e.t.Helper()
	e.containers = append(e.containers, name)
	a := append([]string{"run", "-d", "--name", name, "--network", network}, args...)
	if !containsImage(args) {
		a = append(a, docker.BusyboxImage, "sleep", "600")
	}
	e.mustDocker(a...)
}

func containsImage(args []string) bool {
	for _, a := range args {
		if a == docker.BusyboxImage {
			return true
		}
	}
	return false
}

// addrs are a container's addresses on its networks, IPv6 first.
func (e *dockerEnv) addrs(name string) (v6, v4 string) {
	e.t.Helper()
	out := e.mustDocker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{.IPAddress}}{{end}}", name)
	f := strings.Fields(out)
	for _, a := range f {
		if strings.Contains(a, ":") {
			v6 = a
		} else {
			v4 = a
		}
	}
	return v6, v4
}

func (e *dockerEnv) ping(from, to string) {
	e.t.Helper()
	if out, err := e.docker("exec", from, "ping", "-c", "1", "-W", "2", to); err != nil {
		e.t.Errorf("%s cannot ping %s: %v\n%s", from, to, err, out)
	}
}

// state is what duet holds for Docker: the host end links in duetd's
// namespace, container ends left in Docker's, the port table, the pods'
// nftables elements, and the store's Docker keys and allocations.
func (e *dockerEnv) state() string {
	e.t.Helper()
	var b strings.Builder
	links := kerneltest.Run(e.t, "ip", "-n", kerneltest.NetNSName(e.hostNS), "-o", "link", "show")
	for _, l := range strings.Split(links, "\n") {
		if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], "dt") || strings.HasPrefix(f[1], "duet-")) {
			fmt.Fprintf(&b, "link %s\n", strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	for _, l := range strings.Split(kerneltest.Run(e.t, "ip", "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "dc") {
			fmt.Fprintf(&b, "engine link %s\n", f[1])
		}
	}
	out, _ := exec.Command("ip", "netns", "exec", kerneltest.NetNSName(e.hostNS), "nft", "list", "table", "inet", docker.PortsTable).CombinedOutput()
	if !strings.Contains(string(out), "No such file") {
		fmt.Fprintf(&b, "table %s\n", docker.PortsTable)
	}
	out, _ = exec.Command("ip", "netns", "exec", kerneltest.NetNSName(e.hostNS), "nft", "-j", "list", "set", "inet", "duet", "pod_addrs6").CombinedOutput()
	if strings.Contains(string(out), `"elem"`) {
		fmt.Fprintf(&b, "pod_addrs6 not empty: %s\n", out)
	}
	s, err := open.Store(config.Datastore{Type: config.DatastoreBolt, Path: e.db})
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx store.Tx) error {
		for _, p := range []string{"docker/networks/", "docker/endpoints/"} {
			kvs, err := tx.List(p)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				fmt.Fprintf(&b, "key %s\n", kv.Key)
			}
		}
		all, err := ipam.List(tx, "")
		for _, a := range all {
			fmt.Fprintf(&b, "allocation %s %v\n", a.Handle, a.IPs)
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

func TestDockerDriver(t *testing.T) {
	e := newDockerEnv(t)
	before := e.state()
	if before != "" {
		t.Fatalf("state before the test is not empty:\n%s", before)
	}

	t.Run("zero-config dual-stack", func(t *testing.T) {
		e.t = t
		e.network("dz", "--ipv6")
		e.run("dz1", "dz")
		e.run("dz2", "dz")
		v6, v4 := e.addrs("dz2")
		if !strings.HasPrefix(v6, "fd") || v4 == "" {
			t.Fatalf("dz2 has %q and %q, want a ULA IPv6 and an IPv4 address", v6, v4)
		}
		// Usable at once: no address tentative, both families through
		// the host to the other container and to the outside.
		if out := e.mustDocker("exec", "dz1", "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"); strings.Contains(out, "tentative") {
			t.Errorf("a global address is tentative:\n%s", out)
		}
		for _, dst := range []string{v6, v4, client6, client4} {
			e.ping("dz1", dst)
		}
		info := e.mustDocker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", "dz")
		if !strings.Contains(info, ":") || !strings.Contains(info, ".") {
			t.Errorf("network dz has subnets %q, want one of each family", info)
		}
	})

	t.Run("protections", func(t *testing.T) {
		e.t = t
		// A container that may change its own interface still cannot
		// send from an address it was not given, in either family.
		// The client counts what arrives from the fake sources (no reply
		// could come back: nothing routes them), so the count is the test.
		e.run("dspoof", "dz", "--cap-add", "NET_ADMIN")
		kerneltest.Run(t, "ip", "netns", "exec", e.clientNS, "nft", "add table inet spoof { chain in { type filter hook input priority 0; ip6 saddr fd00:d0e7:d0c:ffff::99 counter; ip saddr 10.251.255.99 counter; }; }")
		for _, c := range []struct{ fake, dst string }{{"fd00:d0e7:d0c:ffff::99", client6}, {"10.251.255.99", client4}} {
			e.mustDocker("exec", "dspoof", "ip", "addr", "add", c.fake, "dev", "eth0")
			_, _ = e.docker("exec", "dspoof", "ping", "-c", "2", "-W", "1", "-I", c.fake, c.dst)
			e.ping("dspoof", c.dst)
		}
		if out := kerneltest.Run(t, "ip", "netns", "exec", e.clientNS, "nft", "list", "table", "inet", "spoof"); strings.Count(out, "packets 0 ") != 2 {
			t.Errorf("spoofed packets reached the client:\n%s", out)
		}
	})

	t.Run("user subnets and addresses", func(t *testing.T) {
		e.t = t
		e.network("du", "--ipv6", "--subnet", "fd00:d0e7:d0c:1::/64", "--subnet", "10.251.64.0/24")
		e.run("du1", "du", "--ip6", "fd00:d0e7:d0c:1::42", "--ip", "10.251.64.42")
		v6, v4 := e.addrs("du1")
		if v6 != "fd00:d0e7:d0c:1::42" || v4 != "10.251.64.42" {
			t.Fatalf("du1 has %q and %q, want the addresses asked for", v6, v4)
		}
		e.run("du2", "du")
		e.ping("du2", v6)
		e.ping("du2", v4)
		// The same address twice is refused, naming the holder.
		out, err := e.docker("run", "--rm", "--network", "du", "--ip6", "fd00:d0e7:d0c:1::42", docker.BusyboxImage, "true")
		if err == nil || !strings.Contains(out, "already in use") {
			t.Errorf("a second container on fd00:d0e7:d0c:1::42: err %v, %s", err, out)
		}
	})

	t.Run("ULA masqueraded, GUA routed", func(t *testing.T) {
		e.t = t
		// The client routes the GUA subnet back to the host; it counts
		// echoes by source: the container's own GUA address, or the
		// host's address when the ULA container was masqueraded.
		e.network("dg", "--ipv6", "--subnet", "2001:db8:d0c:1::/64", "--subnet", "10.251.70.0/24")
		kerneltest.Run(t, "ip", "-n", e.clientNS, "-6", "route", "add", "2001:db8:d0c:1::/64", "via", host6)
		e.run("dg1", "dg")
		g6, _ := e.addrs("dg1")
		u6, _ := e.addrs("dz1")
		kerneltest.Run(t, "ip", "netns", "exec", e.clientNS, "nft", fmt.Sprintf("add table inet nat66 { chain in { type filter hook input priority 0; ip6 saddr %s icmpv6 type echo-request counter; ip6 saddr %s icmpv6 type echo-request counter; ip6 saddr %s icmpv6 type echo-request counter; }; }", g6, host6, u6))
		t.Cleanup(func() {
			_, _ = exec.Command("ip", "netns", "exec", e.clientNS, "nft", "delete", "table", "inet", "nat66").CombinedOutput()
		})
		e.ping("dg1", client6)
		e.ping("dz1", client6)
		out := kerneltest.Run(t, "ip", "netns", "exec", e.clientNS, "nft", "list", "table", "inet", "nat66")
		for _, c := range []struct{ src, want string }{{g6, "packets 1 "}, {host6, "packets 1 "}, {u6, "packets 0 "}} {
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "saddr "+c.src+" ") {
					line = l
				}
			}
			if !strings.Contains(line, c.want) {
				t.Errorf("echoes from %s: %q, want %s(GUA %s routed as itself, ULA %s masqueraded to the host's %s)", c.src, line, c.want, g6, u6, host6)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		e.t = t
		snap := e.state()
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--ipv6", "--subnet", "fd00:d0e7:d0c:1:8000::/65", "--subnet", "10.251.65.0/24"}, "overlaps"},
			{[]string{"--ipv6", "--subnet", "fd00:d0e7:d0c:2::/127", "--subnet", "10.251.66.0/24"}, "fewer than duet can serve"},
			{[]string{"--ipv6", "-o", "duet.colour=blue"}, "not one of duet's options"},
			{[]string{"--ipv6", "--subnet", "fd00:d0e7:d0c:3::/64", "--ip-range", "fd00:d0e7:d0c:3::/80", "--subnet", "10.251.67.0/24"}, "--ip-range"},
		} {
			out, err := e.docker(append(append([]string{"network", "create", "-d", e.name, "--ipam-driver", e.name}, c.args...), "dbad")...)
			if err == nil {
				_, _ = e.docker("network", "rm", "dbad")
				t.Errorf("network create %v succeeded", c.args)
				continue
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("network create %v: %s\nwant an error saying %q", c.args, out, c.want)
			}
		}
		if after := e.state(); after != snap {
			t.Errorf("failed creates left state behind:\nbefore:\n%s\nafter:\n%s", snap, after)
		}
	})

	t.Run("published ports keep the client's address", func(t *testing.T) {
		e.t = t
		e.run("dweb", "dz", "-p", "18080:80", docker.BusyboxImage, "sh", "-c", "while true; do nc -l -p 80; done")
		for _, c := range []struct{ host, client, flag string }{{host6, client6, "-6"}, {host4, client4, "-4"}} {
			cmd := exec.Command("ip", "netns", "exec", e.clientNS, "sh", "-c", fmt.Sprintf("sleep 3 | nc %s %s 18080", c.flag, c.host))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			seen := ""
			for i := 0; i < 50 && !strings.Contains(seen, c.client); i++ {
				time.Sleep(50 * time.Millisecond)
				seen, _ = e.docker("exec", "dweb", "netstat", "-tn")
			}
			_ = cmd.Wait()
			if !strings.Contains(seen, c.client) {
				t.Errorf("the container did not see client %s on its published port:\n%s", c.client, seen)
			}
		}
	})

	t.Run("duetd restart", func(t *testing.T) {
		e.t = t
		e.stopDuetd(true)
		v6, v4 := e.addrs("dz2")
		e.ping("dz1", v6) // the dataplane outlives duetd
		// With the plugin gone, the doctor names the networks that need it.
		out, _ := exec.Command(filepath.Join(e.dir, "duetctl"), "doctor", "--host").CombinedOutput()
		if !strings.Contains(string(out), "DOCKERH003") || !strings.Contains(string(out), "docker network dz") {
			t.Errorf("doctor --host with duetd down does not name network dz's missing plugin:\n%s", out)
		}
		e.startDuetd()
		e.run("dz3", "dz")
		e.ping("dz3", v6)
		e.ping("dz3", v4)
	})

	t.Run("Docker restart", func(t *testing.T) {
		e.t = t
		// Docker stops its containers, restarts those with a restart
		// policy, and keeps its networks; duet keeps its own state, and
		// Docker asks for no replay of pools or addresses.
		e.run("drs1", "dz", "--restart", "unless-stopped")
		e.run("drs2", "dz", "--restart", "unless-stopped")
		restartEngine(t)
		for _, c := range []string{"drs1", "drs2"} {
			deadline := time.Now().Add(30 * time.Second)
			for {
				if out, _ := e.docker("inspect", "-f", "{{.State.Running}}", c); out == "true" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not come back after Docker's restart:\n%s", c, e.log())
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		v6, v4 := e.addrs("drs2")
		e.ping("drs1", v6)
		e.ping("drs1", v4)
		e.run("drs3", "dz")
		e.ping("drs3", v6)
		// Containers without a restart policy stayed stopped: remove them,
		// as their owner would, before the state is compared at the end.
		for _, c := range e.containers {
			if out, _ := e.docker("inspect", "-f", "{{.State.Running}}", c); out == "false" {
				_, _ = e.docker("rm", "-f", c)
			}
		}
	})

	t.Run("compose", func(t *testing.T) {
		e.t = t
		if _, err := exec.LookPath("docker-compose"); err != nil {
			t.Fatal("docker-compose is missing: hack/deps.sh installs it")
		}
		file := filepath.Join(e.dir, "compose.yaml")
		yaml := fmt.Sprintf(`services:
  a:
    image: %[1]s
    command: sleep 600
    networks: [app]
  b:
    image: %[1]s
    command: sleep 600
    networks: [app]
networks:
  app:
    driver: %[2]s
    enable_ipv6: true
    ipam:
      driver: %[2]s
`, docker.BusyboxImage, e.name)
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		project := "duettest"
		compose := func(args ...string) (string, error) {
			out, err := exec.Command("docker-compose", append([]string{"-f", file, "-p", project}, args...)...).CombinedOutput()
			return string(out), err
		}
		t.Cleanup(func() { _, _ = compose("down", "-t", "0") })
		if out, err := compose("up", "-d"); err != nil {
			t.Fatalf("docker-compose up: %v\n%s\n%s", err, out, e.log())
		}
		a := project + "_a_1"
		b6, b4 := e.addrs(project + "_b_1")
		if b6 == "" || b4 == "" {
			t.Fatalf("b has %q and %q: want both families", b6, b4)
		}
		e.ping(a, b6)
		e.ping(a, b4)
		e.ping(a, "b") // Docker's DNS answers for the service
		if out, err := compose("down", "-t", "0"); err != nil {
			t.Fatalf("docker-compose down: %v\n%s", err, out)
		}
	})

	t.Run("removal leaves nothing", func(t *testing.T) {
		e.t = t
		for _, c := range e.containers {
			_, _ = e.docker("rm", "-f", c)
		}
		for _, n := range e.networks {
			e.mustDocker("network", "rm", n)
		}
		e.containers, e.networks = nil, nil
		if after := e.state(); after != before {
			t.Errorf("left behind:\n%s", after)
		}
	})
}

// restartEngine stops dockerd and starts it again with the same command
// line and log, in a session of its own so it outlives the test, as a
// service manager would; it returns once the engine answers.
func restartEngine(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(docker.EnginePIDFile)
	if err != nil {
		t.Fatalf("no dockerd pid: %v", err)
	}
	pid := strings.TrimSpace(string(raw))
	cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	logPath, _ := os.Readlink("/proc/" + pid + "/fd/2")
	if st, err := os.Stat(logPath); err != nil || !st.Mode().IsRegular() {
		logPath = os.DevNull
	}
	if out, err := exec.Command("kill", "-TERM", pid).CombinedOutput(); err != nil {
		t.Fatalf("kill dockerd: %v %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dockerd did not stop within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v again: %v", args, err)
	}
	go func() { _ = cmd.Wait() }()
	for {
		if exec.Command("docker", "info").Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd %v did not answer within 60s of its restart", args)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
