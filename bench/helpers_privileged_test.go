package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// podIf is the pod's interface name for both plugins.
const podIf = "eth0"

// plugin is one side of the comparison: a name for the table and its
// network configuration list, given a directory for its state.
type plugin struct {
	name string
	conf func(state string) string
}

// network is one plugin's network on a private "host" namespace: the
// plugins run there (libcni execs them from a thread switched into it), so
// their bridges, routes, nftables tables and forwarding sysctls never touch
// the machine's own, and deleting the namespace removes all of it.
type network struct {
	b        testing.TB
	plugin   *plugin
	hostName string // the host namespace's name for ip netns
	host     ns.NetNS
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
}

// newNetwork makes a fresh network for p: a new host namespace with lo up
// and forwarding already on for both families (as on any node that has run
// a pod; it also keeps duet from logging a "host" sysctl change to
// /var/lib/duet for a namespace that is about to go), and its own state
// directory (datastore, host-local's dataDir, libcni's cache).
func newNetwork(b testing.TB, bins string, p *plugin) *network {
	b.Helper()
	path := kerneltest.NetNS(b)
	name := kerneltest.NetNSName(path)
	kerneltest.Run(b, "ip", "-n", name, "link", "set", "lo", "up")
	kerneltest.Run(b, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	host, err := ns.GetNS(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { host.Close() })
	state, err := os.MkdirTemp(bins, "net-")
	if err != nil {
		b.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes([]byte(p.conf(state)))
	if err != nil {
		b.Fatalf("%s configuration: %v", p.name, err)
	}
	return &network{
		b: b, plugin: p, hostName: name, host: host, list: list,
		cni: libcni.NewCNIConfigWithCacheDir([]string{bins, refPluginDir}, filepath.Join(state, "cache"), nil),
	}
}

func runtimeConf(pod string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: pod, NetNS: netnsPath(pod), IfName: podIf}
}

func netnsPath(pod string) string { return filepath.Join("/var/run/netns", pod) }

// add runs CNI ADD for pod from the host namespace and returns the result,
// the ADD's duration (exec and all, as a runtime sees it) and the moment it
// returned.
func (n *network) add(pod string) (*current.Result, time.Duration, time.Time, error) {
	var res *current.Result
	var took time.Duration
	var done time.Time
	err := n.host.Do(func(ns.NetNS) error {
		start := time.Now()
		r, err := n.cni.AddNetworkList(context.Background(), n.list, runtimeConf(pod))
		done = time.Now()
		took = done.Sub(start)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("%s ADD %s: %w", n.plugin.name, pod, err)
	}
	return res, took, done, nil
}

// del runs CNI DEL for pod from the host namespace.
func (n *network) del(pod string) (time.Duration, error) {
	var took time.Duration
	err := n.host.Do(func(ns.NetNS) error {
		start := time.Now()
		err := n.cni.DelNetworkList(context.Background(), n.list, runtimeConf(pod))
		took = time.Since(start)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s DEL %s: %w", n.plugin.name, pod, err)
	}
	return took, nil
}

// leftovers lists the veth links still in the host namespace: after every
// pod's DEL there should be none.
func (n *network) leftovers() []string {
	out := kerneltest.Run(n.b, "ip", "-n", n.hostName, "-o", "link", "show", "type", "veth")
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

// pods is a batch of pod network namespaces, made before the timed part.
type pods struct {
	b     testing.TB
	names []string
	once  sync.Once
}

// makePods creates count network namespaces named prefix-0 … and removes
// them when remove is called or, at the latest, when the benchmark ends.
func makePods(b testing.TB, prefix string, count int) *pods {
	b.Helper()
	p := &pods{b: b}
	b.Cleanup(p.remove)
	for i := range count {
		name := fmt.Sprintf("%s-%d", prefix, i)
		kerneltest.Run(b, "ip", "netns", "add", name)
		p.names = append(p.names, name)
	}
	return p
}

// remove deletes the namespaces (and whatever a failed DEL left in them).
func (p *pods) remove() {
	p.once.Do(func() {
		for _, name := range p.names {
			if _, err := os.Stat(netnsPath(name)); os.IsNotExist(err) {
				continue
			}
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				p.b.Errorf("ip netns del %s: %v: %s", name, err, out)
			}
		}
	})
}

// gateway6 returns the pod's IPv6 address and its gateway from an ADD
// result: fe80::1 for duet in routed mode, the bridge's address
// (fd00:bf::1) for the reference.
func gateway6(res *current.Result) (src, gw netip.Addr, err error) {
	for _, ip := range res.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok || a.Unmap().Is4() {
			continue
		}
		g, ok := netip.AddrFromSlice(ip.Gateway)
		if !ok {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("IPv6 address %s has no gateway in the result", a)
		}
		return a, g, nil
	}
	return netip.Addr{}, netip.Addr{}, errors.New("no IPv6 address in the result")
}

// probe is a raw ICMPv6 socket opened inside a pod's namespace before its
// ADD (a socket stays in the namespace it was made in), so that nothing
// but sending is left to do once ADD returns.
type probe struct {
	conn *net.IPConn
	pc   *ipv6.PacketConn
	id   int
}

func openProbe(podNetNS string) (*probe, error) {
	var c net.PacketConn
	err := ns.WithNetNSPath(podNetNS, func(ns.NetNS) error {
		var err error
		c, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ICMPv6 socket in %s: %w", podNetNS, err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeEchoReply)
	if err := pc.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, err
	}
	return &probe{conn: c.(*net.IPConn), pc: pc, id: rand.IntN(0xffff)}, nil
}

func (p *probe) Close() error { return p.conn.Close() }

// ifIndex asks the pod's namespace (through the socket, which lives there)
// for an interface's index: one ioctl.
func (p *probe) ifIndex(name string) (int, error) {
	rc, err := p.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var idx uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			ierr = err
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr); ierr == nil {
			idx = ifr.Uint32()
		}
	}); err != nil {
		return 0, err
	}
	return int(idx), ierr
}

// pingResult is the time from ADD's return to the first echo reply, and
// how many echo requests it took (the first send included).
type pingResult struct {
	after time.Duration
	tries int
}

// firstReply sends an ICMPv6 echo request from src (the pod's own IPv6
// address, set per packet with IPV6_PKTINFO, out of ifName) to dst every
// `every`, starting at once, until a reply comes back or `limit` has passed
// since `since`. A send that fails (e.g. EINVAL while src is still
// tentative) counts as a try and is repeated at the next tick.
func (p *probe) firstReply(ifName string, src, dst netip.Addr, since time.Time, every, limit time.Duration) (pingResult, error) {
	deadline := since.Add(limit)
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	var lastErr error
	idx := 0
	for seq := 1; ; seq++ {
		tick := time.Now()
		if tick.After(deadline) {
			return pingResult{tries: seq - 1}, fmt.Errorf("no echo reply from %s within %v (last error: %v)", dst, limit, lastErr)
		}
		next := tick.Add(every)
		if next.After(deadline) {
			next = deadline
		}
		if idx == 0 {
			var err error
			if idx, err = p.ifIndex(ifName); err != nil {
				lastErr = fmt.Errorf("index of %s: %w", ifName, err)
				time.Sleep(time.Until(next))
				continue
			}
		}
		msg, err := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("duet-bench")}}).Marshal(nil)
		if err != nil {
			return pingResult{}, err
		}
		// The kernel fills in the ICMPv6 checksum on raw sockets.
		if _, err := p.pc.WriteTo(msg, &ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: idx}, to); err != nil {
			lastErr = err
			time.Sleep(time.Until(next))
			continue
		}
		for {
			if err := p.pc.SetReadDeadline(next); err != nil {
				return pingResult{}, err
			}
			n, _, from, err := p.pc.ReadFrom(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					lastErr = errors.New("timed out")
					break
				}
				return pingResult{}, err
			}
			at := time.Now()
			m, err := icmp.ParseMessage(ipv6.ICMPTypeEchoReply.Protocol(), buf[:n])
			if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); !ok || e.ID != p.id {
				continue
			}
			if a, ok := from.(*net.IPAddr); !ok || !a.IP.Equal(to.IP) {
				continue
			}
			return pingResult{after: at.Sub(since), tries: seq}, nil
		}
	}
}

// dist is a set of durations with the few statistics the table prints.
type dist []time.Duration

func (d dist) sorted() dist {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// pct is the nearest-rank percentile (p in 0..100); 0 when empty.
func (d dist) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d.sorted()
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(len(s)-1, rank))]
}

func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// ms formats a duration in milliseconds with enough digits for sub-ms
// figures; "-" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 10:
		return strconv.FormatFloat(f, 'f', 2, 64)
	case f < 100:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio formats a/b as "0.83x"; "-" when either is missing.
func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

// parallel runs f(i) for i in [0, n) on `workers` goroutines and returns
// the first error.
func parallel(n, workers int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first error
			for i := range next {
				if err := f(i); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
