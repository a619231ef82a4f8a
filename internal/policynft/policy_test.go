package policynft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/policy"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func tcpRange(from, to uint16) policy.PortRange {
	return policy.PortRange{Proto: policy.TCP, From: from, To: to}
}

// The node in most tests: web and db are isolated, client is not.
//
//	web ingress: tcp/8080 from client; all traffic from 2001:db8::/32
//	web egress:  udp/53 to anyone; tcp/5432 to db
//	db ingress:  tcp/5432 from web
func nodePods() []policy.PodRules {
	web, db, client := addrs("fd00:10::10", "10.0.0.10"), addrs("fd00:10::20", "10.0.0.20"), addrs("fd00:10::30", "10.0.0.30")
	host := func(as []netip.Addr) []netip.Prefix {
		var out []netip.Prefix
		for _, a := range as {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		return policy.Union(out)
	}
	return []policy.PodRules{
		{Namespace: "prod", Name: "web", Addrs: web,
			Ingress: &policy.Direction{Policies: []string{"prod/web"}, Rules: []policy.Rule{
				{Peers: host(client), Ports: []policy.PortRange{tcpRange(8080, 8080)}},
				{Peers: pfx("2001:db8::/32")},
			}},
			Egress: &policy.Direction{Policies: []string{"prod/web"}, Rules: []policy.Rule{
				{AnyPeer: true, Ports: []policy.PortRange{{Proto: policy.UDP, From: 53, To: 53}}},
				{Peers: host(db), Ports: []policy.PortRange{tcpRange(5432, 5432)}},
			}}},
		{Namespace: "prod", Name: "db", Addrs: db,
			Ingress: &policy.Direction{Policies: []string{"prod/db"}, Rules: []policy.Rule{
				{Peers: host(web), Ports: []policy.PortRange{tcpRange(5432, 5432)}},
			}}},
		{Namespace: "prod", Name: "client", Addrs: client},
	}
}

func newPolicyFake() *knftables.Fake { return knftables.NewFake(knftables.InetFamily, Table) }

func syncPolicy(t *testing.T, s *Syncer, pods []policy.PodRules) {
	t.Helper()
	if err := s.Sync(context.Background(), pods); err != nil {
		t.Fatal(err)
	}
}

func tcp(src, dst string, port uint16) vpacket {
	return vpacket{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: policy.TCP, dport: port}
}

func udp(src, dst string, port uint16) vpacket {
	p := tcp(src, dst, port)
	p.proto = policy.UDP
	return p
}

func icmp6(src, dst string, typ uint8) vpacket {
	return vpacket{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: policy.ICMPv6, icmpType: typ}
}

func withCT(p vpacket, ct string) vpacket { p.ct = ct; return p }

func TestPolicyPackets(t *testing.T) {
	fake := newPolicyFake()
	syncPolicy(t, NewSyncer(fake), nodePods())
	tr := newTracer(t, fake)
	for _, c := range []struct {
		p    vpacket
		want string
	}{
		{tcp("fd00:10::30", "fd00:10::10", 8080), "accept"}, // client -> web
		{tcp("10.0.0.30", "10.0.0.10", 8080), "accept"},
		{tcp("fd00:10::30", "fd00:10::10", 8081), "drop"},
		{udp("fd00:10::30", "fd00:10::10", 8080), "drop"},
		{tcp("2001:db8:5::1", "fd00:10::10", 22), "accept"}, // all traffic from 2001:db8::/32
		{icmp6("2001:db8:5::1", "fd00:10::10", 128), "accept"},
		{icmp6("fd00:10::30", "fd00:10::10", 128), "drop"},  // client may only use tcp/8080
		{tcp("198.51.100.1", "10.0.0.10", 22), "drop"},      // an IPv6 block opens nothing in IPv4
		{tcp("fd00:10::10", "fd00:10::20", 5432), "accept"}, // web -> db: web's egress, then db's ingress
		{tcp("10.0.0.10", "10.0.0.20", 5432), "accept"},
		{tcp("fd00:10::10", "fd00:10::20", 22), "drop"},
		{tcp("fd00:10::30", "fd00:10::20", 5432), "drop"}, // client -> db: db's ingress
		{udp("fd00:10::10", "2001:4860:4860::8888", 53), "accept"},
		{udp("10.0.0.10", "8.8.8.8", 53), "accept"},
		{tcp("fd00:10::10", "2001:4860:4860::8888", 443), "drop"},
		{tcp("fd00:10::30", "2001:4860:4860::8888", 443), "accept"}, // client is not isolated
		{tcp("fd00:10::30", "fd00:10::31", 1), "accept"},
		{withCT(tcp("198.51.100.1", "10.0.0.10", 22), "established"), "accept"},
		{withCT(tcp("fd00:10::10", "2001:4860:4860::8888", 443), "related"), "accept"},
		{withCT(tcp("2001:db8:5::1", "fd00:10::10", 22), "invalid"), "drop"},
		{withCT(tcp("fd00:10::30", "fd00:10::31", 1), "invalid"), "accept"},       // only isolated pods drop invalid
		{withCT(icmp6("fe80::1", "ff02::1:ff00:10", 135), "untracked"), "accept"}, // ND always passes
		{withCT(icmp6("fd00:10::30", "fd00:10::10", 135), "untracked"), "accept"},
		{withCT(icmp6("fd00:10::10", "fd00:10::30", 136), "untracked"), "accept"},
		{withCT(icmp6("fe80::2", "ff02::2", 133), "untracked"), "accept"},
		{withCT(icmp6("fe80::2", "ff02::16", 143), "untracked"), "accept"}, // MLD
		{withCT(icmp6("fe80::2", "ff02::1", 134), "untracked"), "drop"},    // RA from a pod
		{withCT(icmp6("fe80::2", "fd00:10::10", 137), "untracked"), "drop"},
	} {
		if got := tr.verdict(knftables.ForwardHook, c.p); got != c.want {
			t.Errorf("%s: %s, want %s; path:\n  %s", c.p, got, c.want, strings.Join(tr.path, "\n  "))
		}
	}
	// The node's own traffic to its pods never crosses forward.
	if got := tr.verdict(knftables.OutputHook, tcp("fd00:10::1", "fd00:10::20", 22)); got != "accept" {
		t.Errorf("host -> db: %s", got)
	}
}

// TestPolicyCost: the rules never mention a pod or a peer, and their
// number does not grow with the number of policies, rules or peers.
func TestPolicyCost(t *testing.T) {
	count := func(pods []policy.PodRules) map[string]int {
		fake := newPolicyFake()
		syncPolicy(t, NewSyncer(fake), pods)
		n := map[string]int{}
		for name, c := range fake.Table.Chains {
			for _, r := range c.Rules {
				if strings.ContainsAny(r.Rule, ":/") && !strings.Contains(r.Rule, "@") {
					t.Errorf("rule mentions an address: %s", r.Rule)
				}
			}
			n[strings.SplitN(name, "-", 2)[0]] += len(c.Rules)
		}
		return n
	}
	small := nodePods()
	big := nodePods()
	for i := 0; i < 50; i++ { // 50 more policies selecting web, 50 peers each
		var peers []netip.Prefix
		for j := 0; j < 50; j++ {
			peers = append(peers, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x:%x::/64", i, j)))
		}
		big[0].Ingress.Policies = append(big[0].Ingress.Policies, fmt.Sprintf("prod/p%d", i))
		big[0].Ingress.Rules = append(big[0].Ingress.Rules, policy.Rule{Peers: peers, Ports: []policy.PortRange{tcpRange(uint16(1000+i), uint16(1000+i))}})
	}
	a, b := count(small), count(big)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("rules per chain kind: %v with one policy, %v with 51", a, b)
	}
	if a["in"] != 2*len(polPodRules(policy.Ingress, "x")) || a["out"] != len(polPodRules(policy.Egress, "x")) {
		t.Errorf("rules: %v", a)
	}
}

// sortedDump is the fake's content as sorted lines: the same table
// written in another order compares equal.
func sortedDump(fake *knftables.Fake) string {
	lines := strings.Split(strings.TrimSpace(fake.Dump()), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestPolicySyncIdempotent(t *testing.T) {
	fake := newPolicyFake()
	s := NewSyncer(fake)
	syncPolicy(t, s, nodePods())
	first, tx := sortedDump(fake), fake.LastTransaction
	syncPolicy(t, s, nodePods())
	if fake.LastTransaction != tx {
		t.Errorf("a second sync with the same pods ran a transaction:\n%s", fake.LastTransaction)
	}
	if got := sortedDump(fake); got != first {
		t.Errorf("a second sync changed the table")
	}
	// A restarted agent rewrites the table whole: the same content.
	syncPolicy(t, NewSyncer(fake), nodePods())
	if got := sortedDump(fake); got != first {
		t.Errorf("a full rewrite over the table changed it:\n%s\n---\n%s", first, got)
	}
	// Someone edits the table: Resync repairs it.
	edit := fake.NewTransaction()
	edit.Add(&knftables.Chain{Name: "stray"})
	edit.Add(&knftables.Rule{Chain: "stray", Rule: "accept"})
	edit.Add(&knftables.Set{Name: "stray-set", Type: "ipv6_addr"})
	edit.Flush(&knftables.Chain{Name: polForward})
	edit.Add(&knftables.Rule{Chain: polForward, Rule: "accept"})
	edit.Add(&knftables.Element{Set: polChainName(policy.Ingress, "prod/web") + "-all6", Key: []string{"::/0"}})
	if err := fake.Run(context.Background(), edit); err != nil {
		t.Fatal(err)
	}
	s.Resync()
	syncPolicy(t, s, nodePods())
	if got := sortedDump(fake); got != first {
		t.Errorf("Resync did not repair the table:\n%s\n---\n%s", first, got)
	}
}

// TestPolicyStates replays states in random order (like tailscale's
// TestRouterStates): after every incremental sync the table is what a
// full rewrite into an empty table makes, and packets get the verdicts
// the policy model gives.
func TestPolicyStates(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var states [][]policy.PodRules
	states = append(states, nil, nodePods())
	for i := 0; i < 6; i++ {
		states = append(states, randomPods(r))
	}
	fake := newPolicyFake()
	s := NewSyncer(fake)
	for step := 0; step < 40; step++ {
		i := r.IntN(len(states))
		syncPolicy(t, s, states[i])
		fresh := newPolicyFake()
		syncPolicy(t, NewSyncer(fresh), states[i])
		if got, want := sortedDump(fake), sortedDump(fresh); got != want {
			t.Fatalf("step %d (state %d): incremental sync differs from a full one:\n%s\n---\n%s", step, i, got, want)
		}
		checkOracle(t, r, fake, states[i], 50)
	}
	syncPolicy(t, s, nil)
	for name, c := range fake.Table.Chains {
		if name != polForward && name != polICMPv6 {
			t.Errorf("chain %s left after the last pod went: %d rules", name, len(c.Rules))
		}
	}
	if len(fake.Table.Sets) != 0 {
		t.Errorf("sets left: %v", sortedKeys(fake.Table.Sets))
	}
}

// TestPolicyMatchesModel: for random pods and rules, every packet's
// verdict is the one the policy model gives.
func TestPolicyMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 40; i++ {
		pods := randomPods(r)
		fake := newPolicyFake()
		syncPolicy(t, NewSyncer(fake), pods)
		checkOracle(t, r, fake, pods, 200)
	}
}

// oracle is the verdict the model gives: the sender's egress, then the
// receiver's ingress, each when isolated; a pod reaching one of its own
// addresses always passes.
func oracle(pods []policy.PodRules, p vpacket) string {
	switch {
	case p.ct == "established" || p.ct == "related":
		return "accept"
	case p.proto == policy.ICMPv6 && (p.icmpType == 134 || p.icmpType == 137):
		return "drop"
	case p.proto == policy.ICMPv6 && slices.Contains([]uint8{130, 131, 132, 133, 135, 136, 143}, p.icmpType):
		return "accept"
	}
	find := func(a netip.Addr) *policy.PodRules {
		for i := range pods {
			if slices.Contains(pods[i].Addrs, a) {
				return &pods[i]
			}
		}
		return nil
	}
	if src := find(p.src); src != nil && slices.Contains(src.Addrs, p.dst) && p.ct != "invalid" {
		return "accept"
	}
	if src := find(p.src); src != nil && src.Egress != nil {
		if ok, _ := src.Egress.Allows(p.dst, p.proto, p.dport); !ok || p.ct == "invalid" {
			return "drop"
		}
	}
	if dst := find(p.dst); dst != nil && dst.Ingress != nil {
		if ok, _ := dst.Ingress.Allows(p.src, p.proto, p.dport); !ok || p.ct == "invalid" {
			return "drop"
		}
	}
	return "accept"
}

func checkOracle(t *testing.T, r *rand.Rand, fake *knftables.Fake, pods []policy.PodRules, n int) {
	t.Helper()
	tr := newTracer(t, fake)
	var v6, v4 []netip.Addr
	for _, p := range pods {
		for _, a := range p.Addrs {
			if a.Is6() {
				v6 = append(v6, a)
			} else {
				v4 = append(v4, a)
			}
		}
	}
	v6 = append(v6, addrs("2001:db8::1", "2001:db8:1::7", "fd00:99::1", "fe80::1")...)
	v4 = append(v4, addrs("198.51.100.1", "10.9.0.1", "192.0.2.200")...)
	for i := 0; i < n; i++ {
		pool := v6
		if r.IntN(3) == 0 {
			pool = v4
		}
		p := vpacket{src: pool[r.IntN(len(pool))], dst: pool[r.IntN(len(pool))], dport: uint16(r.IntN(8))}
		p.proto = []policy.Proto{policy.TCP, policy.UDP, policy.SCTP, policy.ICMPv6, policy.ICMP}[r.IntN(5)]
		if p.proto == policy.ICMPv6 && !p.src.Is6() || p.proto == policy.ICMP && p.src.Is6() {
			p.proto = policy.TCP
		}
		if p.proto == policy.ICMPv6 {
			p.icmpType = []uint8{128, 129, 133, 134, 135, 136, 137, 143}[r.IntN(8)]
		}
		p.ct = []string{"", "", "", "established", "invalid"}[r.IntN(5)]
		if got, want := tr.verdict(knftables.ForwardHook, p), oracle(pods, p); got != want {
			t.Fatalf("%s: %s, the model says %s; path:\n  %s", p, got, want, strings.Join(tr.path, "\n  "))
		}
	}
}

// randomPods makes a node of a few pods, some isolated, with rules over
// each other's addresses, blocks around them and outside addresses.
func randomPods(r *rand.Rand) []policy.PodRules {
	n := 2 + r.IntN(4)
	var pods []policy.PodRules
	for i := 0; i < n; i++ {
		p := policy.PodRules{Namespace: "ns", Name: fmt.Sprintf("p%d", i)}
		p.Addrs = addrs(fmt.Sprintf("fd00:10::%x", 16+i))
		if r.IntN(3) > 0 {
			p.Addrs = append(p.Addrs, netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 16+i)))
		}
		pods = append(pods, p)
	}
	peerPool := pfx("::/0", "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "fd00:10::/64", "fd00:10::10/124", "10.0.0.0/24", "10.0.0.16/30", "198.51.100.0/24")
	for _, p := range pods {
		for _, a := range p.Addrs {
			peerPool = append(peerPool, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	dir := func() *policy.Direction {
		if r.IntN(3) == 0 {
			return nil
		}
		d := &policy.Direction{Policies: []string{"ns/x"}}
		for k := r.IntN(4); k > 0; k-- {
			rule := policy.Rule{AnyPeer: r.IntN(6) == 0}
			for j := r.IntN(3); j > 0 && !rule.AnyPeer; j-- {
				rule.Peers = append(rule.Peers, peerPool[r.IntN(len(peerPool))])
			}
			rule.Peers = policy.Union(rule.Peers)
			for j := r.IntN(3); j > 0; j-- {
				from := uint16(r.IntN(6))
				rule.Ports = append(rule.Ports, policy.PortRange{Proto: []policy.Proto{policy.TCP, policy.UDP, policy.SCTP}[r.IntN(3)], From: from, To: from + uint16(r.IntN(3))})
			}
			rule.Ports = policy.MergePorts(rule.Ports)
			d.Rules = append(d.Rules, rule)
		}
		return d
	}
	for i := range pods {
		pods[i].Ingress, pods[i].Egress = dir(), dir()
	}
	return pods
}

func TestPolicyChainName(t *testing.T) {
	a, b := polChainName(policy.Ingress, "prod/web"), polChainName(policy.Egress, "prod/web")
	if !strings.HasPrefix(a, "in-") || !strings.HasSuffix(a, "-prod/web") || !strings.HasPrefix(b, "out-") || a[3:11] != b[4:12] {
		t.Errorf("names %q %q", a, b)
	}
	if polChainName(policy.Ingress, "prod/web2") == a {
		t.Error("two pods share a chain name")
	}
	long := polChainName(policy.Ingress, "ns/"+strings.Repeat("x", 250)+"!")
	if len(long) > 80 || strings.Contains(long, "!") {
		t.Errorf("long name %q", long)
	}
}

// TestPolicyRulesNeedNoProtocolsFile: nft resolves a protocol name that is
// not one of its own keywords through /etc/protocols, which duet's
// container image does not have ("Could not resolve protocol name" for
// ipv6-icmp, found on the kube lab). Every protocol the rules name must be
// a keyword or a number.
func TestPolicyRulesNeedNoProtocolsFile(t *testing.T) {
	keywords := map[string]bool{"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmpv6": true}
	var rules []rule
	rules = append(rules, polForwardRules...)
	rules = append(rules, polICMPv6Rules...)
	rules = append(rules, polPodRules(policy.Ingress, "in-x")...)
	rules = append(rules, polPodRules(policy.Egress, "out-x")...)
	for _, r := range rules {
		f := strings.Fields(r.expr)
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "meta" && f[i+1] == "l4proto" && f[i+2] != "." && !keywords[f[i+2]] {
				if _, err := strconv.Atoi(f[i+2]); err != nil {
					t.Errorf("rule %q names protocol %q, which nft looks up in /etc/protocols", r.expr, f[i+2])
				}
			}
		}
	}
	for _, p := range []policy.Proto{policy.TCP, policy.UDP, policy.SCTP} {
		if !keywords[p.String()] {
			t.Errorf("set elements name protocol %q, which nft looks up in /etc/protocols", p)
		}
	}
}
