package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The routed topology (seed 001's routed cluster, seed 003's BGP): each
// node on its own subnet behind one router namespace running BIRD 2, which
// learns every node's blocks over BGP and hands them to the others.
//
//	node1 fd00:d0e7:f001::2 ─┐
//	node2 fd00:d0e7:f002::2 ─┤ router (BIRD, AS 65000)
//	etcd    fd00:d0e7:f0fe::2 ┤
//	outside fd00:d0e7:f0ff::2 ┘
const routerASN = 65000

func nodeASN(i int) int { return routerASN + i }

// routedSubnets returns the IPv6 and IPv4 subnet of link i (1..N for
// nodes, 254 for the store, 255 for the outside); the router is .1 / ::1, the host .2 / ::2.
func routedSubnets(i int) (netip.Prefix, netip.Prefix) {
	v6 := netip.MustParsePrefix(fmt.Sprintf("fd00:d0e7:f0%02x::/64", i))
	v4 := netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", 100+i%100))
	return v6, v4
}

func planRouted(s State, o Options) State {
	s.Underlay = Underlay{Kind: "router", NetNS: Prefix + "router"}
	o6, o4 := routedSubnets(255)
	s.Outside = Endpoint{NetNS: Prefix + "outside", Addrs: []netip.Addr{hostAddr(o6, 2), hostAddr(o4, 2)}}
	e6, e4 := routedSubnets(254)
	s.Store = Endpoint{NetNS: Prefix + "etcd", Addrs: []netip.Addr{hostAddr(e6, 2), hostAddr(e4, 2)}}
	for i := range s.Nodes {
		n6, n4 := routedSubnets(i + 1)
		s.Nodes[i].Addrs = []netip.Addr{hostAddr(n6, 2), hostAddr(n4, 2)}
	}
	return s
}

// routerAddrs are the router's addresses on link i.
func routerAddrs(i int) []netip.Addr {
	v6, v4 := routedSubnets(i)
	return []netip.Addr{hostAddr(v6, 1), hostAddr(v4, 1)}
}

// birdConfig peers with every node, one session per family, and installs
// what it learns into the router's kernel.
func birdConfig(s State) string {
	var b strings.Builder
	_, o4 := routedSubnets(255)
	// The router's log is beside the nodes' (sessions, graceful restart).
	fmt.Fprintf(&b, "log %q all;\ndebug protocols { states, events };\n", filepath.Join(s.Datadir, "bird.log"))
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\nprotocol direct { ipv4; ipv6; }\n", hostAddr(o4, 1))
	fmt.Fprintf(&b, "protocol kernel { ipv4 { export all; }; }\nprotocol kernel { ipv6 { export all; }; }\n")
	for i, n := range s.Nodes {
		for _, a := range n.Addrs {
			fam := "ipv4"
			if a.Is6() {
				fam = "ipv6"
			}
			fmt.Fprintf(&b, "protocol bgp %s_%s {\n  local as %d;\n  neighbor %s as %d;\n  graceful restart on;\n  %s { import all; export where source = RTS_BGP; };\n}\n",
				n.Name, fam, routerASN, a, nodeASN(i+1), fam)
		}
	}
	return b.String()
}

// buildRouted makes the router and its links, starts BIRD, and returns its
// pid.
func buildRouted(s State) (int, error) {
	r := s.Underlay.NetNS
	cmds := [][]string{
		{"netns", "add", r},
		{"netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		{"-n", r, "link", "set", "lo", "up"},
	}
	type member struct {
		name, netns string
		addrs       []netip.Addr
		link        int
	}
	ms := []member{{"outside", s.Outside.NetNS, s.Outside.Addrs, 255}, {"etcd", s.Store.NetNS, s.Store.Addrs, 254}}
	for i, n := range s.Nodes {
		ms = append(ms, member{n.Name, n.NetNS, n.Addrs, i + 1})
	}
	for _, m := range ms {
		port := "to-" + m.name
		cmds = append(cmds,
			[]string{"netns", "add", m.netns},
			[]string{"netns", "exec", m.netns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"},
			[]string{"-n", m.netns, "link", "set", "lo", "up"},
			[]string{"link", "add", port, "netns", r, "type", "veth", "peer", "name", "uplink", "netns", m.netns},
			[]string{"-n", r, "link", "set", port, "up"},
			[]string{"-n", m.netns, "link", "set", "uplink", "up"})
		for j, a := range m.addrs {
			gw := routerAddrs(m.link)[j]
			plen, extra := "24", []string{}
			if a.Is6() {
				plen, extra = "64", []string{"nodad"}
			}
			fam := "-4"
			if a.Is6() {
				fam = "-6"
			}
			cmds = append(cmds,
				append([]string{"-n", r, "addr", "add", gw.String() + "/" + plen, "dev", port}, extra...),
				append([]string{"-n", m.netns, "addr", "add", a.String() + "/" + plen, "dev", "uplink"}, extra...),
				[]string{"-n", m.netns, fam, "route", "add", "default", "via", gw.String(), "dev", "uplink"})
		}
	}
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return 0, err
		}
	}
	conf := filepath.Join(s.Datadir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(s)), 0o600); err != nil {
		return 0, err
	}
	pidfile := filepath.Join(s.Datadir, "bird.pid")
	out, err := exec.Command("ip", "netns", "exec", r, "bird", "-c", conf, "-s", filepath.Join(s.Datadir, "bird.ctl"), "-P", pidfile).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("starting BIRD in %s: %v: %s (is Debian's bird2 installed?)", r, err, out)
	}
	for i := 0; i < 50; i++ {
		if raw, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
				return pid, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("BIRD wrote no pid file %s", pidfile)
}

// duetdRoutingArgs are the extra duetd flags of node i (1-based).
func duetdRoutingArgs(s State, i int) []string {
	if s.Options.Routing != "bgp" {
		return nil
	}
	if s.Underlay.Kind != "router" {
		// Switched: no router, so the nodes peer with each other.
		return []string{"--bgp-asn", strconv.Itoa(routerASN), "--bgp-mesh"}
	}
	args := []string{"--bgp-asn", strconv.Itoa(nodeASN(i))}
	for _, a := range routerAddrs(i) {
		args = append(args, "--bgp-peer", fmt.Sprintf("%s/%d", a, routerASN))
	}
	return args
}
