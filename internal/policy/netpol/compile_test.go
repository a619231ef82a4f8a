package netpol

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/duetnet/duet/internal/policy"
)

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

// The cluster most cases use: namespace prod (team=web) holds the
// selected pods, namespace dev (team=web too) and ops (team=ops) hold
// clients; kube-system exists only through its pods.
func cluster() ([]*corev1.Pod, []*corev1.Namespace) {
	pods := []*corev1.Pod{
		withPorts(mkPod("prod", "web", lbl("app", "web"), "fd00:10::10", "10.0.0.10"), cport("http", 8080, tcp), cport("dns", 5353, udp)),
		withPorts(mkPod("prod", "web2", lbl("app", "web"), "fd00:10::11", "10.0.0.11"), cport("http", 9090, "")), // protocol defaults to policy.TCP
		withPorts(mkPod("prod", "db", lbl("app", "db"), "fd00:10::20", "10.0.0.20"), cport("pg", 5432, tcp)),
		withPorts(mkPod("prod", "db2", lbl("app", "db"), "fd00:10::21"), cport("pg", 6432, tcp)), // IPv6 only
		mkPod("prod", "client", lbl("role", "client"), "fd00:10::30", "10.0.0.30"),
		mkPod("dev", "client", lbl("role", "client"), "fd00:20::30", "10.0.1.30"),
		mkPod("dev", "other", lbl("role", "other"), "fd00:20::31", "10.0.1.31"),
		mkPod("ops", "client", lbl("role", "client"), "fd00:30::30", "10.0.2.30"),
		mkPod("kube-system", "dns", lbl("k8s-app", "kube-dns"), "fd00:40::53", "10.0.3.53"),
	}
	nss := []*corev1.Namespace{mkNS("prod", lbl("team", "web")), mkNS("dev", lbl("team", "web")), mkNS("ops", lbl("team", "ops"))}
	return pods, nss
}

func TestCompile(t *testing.T) {
	webSel := *sel("app", "web")
	for _, tc := range []struct {
		name   string
		pols   []*netv1.NetworkPolicy
		probes []probe
	}{
		{"no policy allows everything", nil, []probe{
			in("prod/web", "2001:db8::1", policy.TCP, 80, true),
			out("prod/web", "198.51.100.1", policy.UDP, 53, true),
		}},
		{"default deny ingress (empty rules, types defaulted)", []*netv1.NetworkPolicy{
			mkPolicy("prod", "deny", netv1.NetworkPolicySpec{}),
		}, []probe{
			in("prod/web", "fd00:10::30", policy.TCP, 8080, false),
			in("prod/web", "10.0.0.30", policy.TCP, 8080, false),
			in("prod/web", "fd00:10::30", icmpv6, 0, false),
			out("prod/web", "2001:db8::1", policy.TCP, 443, true), // egress not isolated
			in("dev/client", "fd00:10::10", policy.TCP, 80, true), // other namespace untouched
		}},
		{"default deny egress", []*netv1.NetworkPolicy{
			mkPolicy("prod", "deny", netv1.NetworkPolicySpec{PolicyTypes: types(netv1.PolicyTypeEgress)}),
		}, []probe{
			out("prod/web", "fd00:40::53", policy.UDP, 53, false),
			out("prod/web", "10.0.3.53", policy.UDP, 53, false),
			in("prod/web", "fd00:10::30", policy.TCP, 8080, true), // ingress not isolated
		}},
		{"allow all ingress: a rule with no peers and no ports", []*netv1.NetworkPolicy{
			mkPolicy("prod", "all", netv1.NetworkPolicySpec{Ingress: []netv1.NetworkPolicyIngressRule{{}}}),
		}, []probe{
			in("prod/web", "2001:db8::1", policy.TCP, 1, true),
			in("prod/web", "203.0.113.1", icmpv6, 0, true),
		}},
		{"podSelector alone: the policy's namespace only", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{podPeer(sel("role", "client"))}}}}),
		}, []probe{
			in("prod/web", "fd00:10::30", policy.TCP, 8080, true),
			in("prod/web", "10.0.0.30", policy.TCP, 8080, true),
			in("prod/web", "fd00:20::30", policy.TCP, 8080, false), // dev/client: same labels, other namespace
			in("prod/web", "fd00:10::20", policy.TCP, 8080, false), // prod/db
			in("prod/db", "fd00:10::30", policy.TCP, 5432, true),   // db is not selected
		}},
		{"namespaceSelector alone: every pod in those namespaces", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{nsPeer(sel("team", "web"))}}}}),
		}, []probe{
			in("prod/web", "fd00:20::31", policy.TCP, 80, true), // dev/other
			in("prod/web", "10.0.1.31", policy.TCP, 80, true),
			in("prod/web", "fd00:10::20", policy.TCP, 80, true),  // prod/db
			in("prod/web", "fd00:30::30", policy.TCP, 80, false), // ops
		}},
		{"both selectors in one peer: matching pods in matching namespaces", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{{PodSelector: sel("role", "client"), NamespaceSelector: sel("team", "web")}}}}}),
		}, []probe{
			in("prod/web", "fd00:20::30", policy.TCP, 80, true),  // dev/client
			in("prod/web", "fd00:10::30", policy.TCP, 80, true),  // prod/client
			in("prod/web", "fd00:20::31", policy.TCP, 80, false), // dev/other: wrong pod labels
			in("prod/web", "fd00:30::30", policy.TCP, 80, false), // ops/client: wrong namespace
		}},
		{"namespace known only from its pods, by kubernetes.io/metadata.name", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Egress: []netv1.NetworkPolicyEgressRule{
				{To: []netv1.NetworkPolicyPeer{{NamespaceSelector: sel(corev1.LabelMetadataName, "kube-system"), PodSelector: sel("k8s-app", "kube-dns")}},
					Ports: []netv1.NetworkPolicyPort{port(udp, 53), port(tcp, 53)}}}}),
		}, []probe{
			out("prod/web", "fd00:40::53", policy.UDP, 53, true),
			out("prod/web", "10.0.3.53", policy.TCP, 53, true),
			out("prod/web", "fd00:40::53", policy.UDP, 54, false),
			out("prod/web", "2001:4860::8888", policy.UDP, 53, false),
		}},
		{"empty selectors: all pods in the namespace, all namespaces", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{podPeer(sel())}}},
				Egress: []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{nsPeer(sel())}}}}),
		}, []probe{
			in("prod/web", "fd00:10::20", policy.TCP, 1, true),
			in("prod/web", "fd00:20::30", policy.TCP, 1, false),
			out("prod/web", "fd00:30::30", policy.TCP, 1, true),
			out("prod/web", "10.0.3.53", policy.UDP, 53, true),
			out("prod/web", "2001:db8::1", policy.TCP, 1, false), // not a pod
		}},
		{"ipBlock except is scoped to its own ipBlock", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8::/32", "2001:db8:bad::/48"), block("2001:db8:bad:1::/64")}},
				{From: []netv1.NetworkPolicyPeer{block("2001:db8:bad::/48")}, Ports: []netv1.NetworkPolicyPort{tcpPort(22)}},
				{From: []netv1.NetworkPolicyPeer{block("192.0.2.0/24", "192.0.2.128/25")}}}}),
		}, []probe{
			in("prod/web", "2001:db8:1::1", policy.TCP, 80, true),
			in("prod/web", "2001:db8:bad::1", policy.TCP, 80, false),  // excepted
			in("prod/web", "2001:db8:bad:1::1", policy.TCP, 80, true), // the other ipBlock lists it
			in("prod/web", "2001:db8:bad::1", policy.TCP, 22, true),   // the other rule lists it
			in("prod/web", "2001:db9::1", policy.TCP, 80, false),
			in("prod/web", "192.0.2.1", policy.TCP, 80, true),
			in("prod/web", "192.0.2.129", policy.TCP, 80, false),
		}},
		{"0.0.0.0/0 opens IPv4 only (Cilium #22610)", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, PolicyTypes: types(netv1.PolicyTypeIngress, netv1.PolicyTypeEgress),
				Ingress: []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{block("0.0.0.0/0")}}},
				Egress:  []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("0.0.0.0/0")}}}}),
		}, []probe{
			in("prod/web", "203.0.113.9", policy.TCP, 80, true),
			in("prod/web", "2001:db8::1", policy.TCP, 80, false),
			in("prod/web", "::ffff:203.0.113.9", policy.TCP, 80, false), // an IPv6 packet, whatever its address looks like
			out("prod/web", "10.0.3.53", policy.UDP, 53, true),
			out("prod/web", "fd00:40::53", policy.UDP, 53, false),
		}},
		{"::/0 opens IPv6 only", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel,
				Ingress: []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{block("::/0")}}}}),
		}, []probe{
			in("prod/web", "2001:db8::1", policy.TCP, 80, true),
			in("prod/web", "fe80::1", policy.UDP, 5, true),
			in("prod/web", "203.0.113.9", policy.TCP, 80, false),
			in("prod/web", "10.0.0.30", policy.TCP, 80, false),
		}},
		{"ports: numbers, ranges, protocols, TCP by default", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{Ports: []netv1.NetworkPolicyPort{tcpPort(80), portRange(tcp, 8000, 8100), port(sctp, 9000), protoOnly(udp)}}}}),
		}, []probe{
			in("prod/web", "2001:db8::1", policy.TCP, 80, true),
			in("prod/web", "2001:db8::1", policy.UDP, 80, true), // all policy.UDP
			in("prod/web", "2001:db8::1", policy.UDP, 65535, true),
			in("prod/web", "2001:db8::1", policy.TCP, 81, false),
			in("prod/web", "2001:db8::1", policy.TCP, 8000, true),
			in("prod/web", "2001:db8::1", policy.TCP, 8100, true),
			in("prod/web", "2001:db8::1", policy.TCP, 8101, false),
			in("prod/web", "2001:db8::1", policy.SCTP, 9000, true),
			in("prod/web", "2001:db8::1", policy.TCP, 9000, false),
			in("prod/web", "2001:db8::1", icmpv6, 0, false), // a rule with ports only matches those
			in("prod/web", "192.0.2.1", policy.TCP, 8050, true),
		}},
		{"named port, ingress: each selected pod's own number, for every peer", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8::/32"), podPeer(sel("role", "client"))},
					Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "http"), namedPortOf(udp, "dns")}}}}),
		}, []probe{
			in("prod/web", "2001:db8::1", policy.TCP, 8080, true), // ipBlock peer, named port of the destination
			in("prod/web", "2001:db8::1", policy.TCP, 9090, false),
			in("prod/web", "2001:db8::1", policy.UDP, 5353, true),
			in("prod/web", "2001:db8::1", policy.TCP, 5353, false), // the name is policy.UDP's
			in("prod/web2", "2001:db8::1", policy.TCP, 9090, true),
			in("prod/web2", "fd00:10::30", policy.TCP, 9090, true),
			in("prod/web2", "fd00:10::30", policy.TCP, 8080, false),
			in("prod/web2", "fd00:10::30", policy.UDP, 5353, false), // web2 has no "dns"
		}},
		{"named port, egress: each destination pod's own number; an ipBlock's non-pod addresses never match", []*netv1.NetworkPolicy{
			mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: *sel("role", "client"), Egress: []netv1.NetworkPolicyEgressRule{
				{To: []netv1.NetworkPolicyPeer{podPeer(sel("app", "db"))}, Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "pg"), tcpPort(22)}},
				{To: []netv1.NetworkPolicyPeer{block("fd00:10::/64"), block("2001:db8::/32")}, Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "http")}}}}),
		}, []probe{
			out("prod/client", "fd00:10::20", policy.TCP, 5432, true),
			out("prod/client", "10.0.0.20", policy.TCP, 5432, true),
			out("prod/client", "fd00:10::20", policy.TCP, 6432, false),
			out("prod/client", "fd00:10::21", policy.TCP, 6432, true),
			out("prod/client", "fd00:10::21", policy.TCP, 5432, false),
			out("prod/client", "fd00:10::21", policy.TCP, 22, true),
			out("prod/client", "fd00:10::10", policy.TCP, 8080, true), // web, inside the ipBlock, has http=8080
			out("prod/client", "fd00:10::11", policy.TCP, 9090, true),
			out("prod/client", "10.0.0.10", policy.TCP, 8080, false), // web's IPv4 address is outside the ipBlock
			out("prod/client", "fd00:10::10", policy.TCP, 9090, false),
			out("prod/client", "2001:db8::80", policy.TCP, 8080, false), // not a pod: the name cannot resolve
		}},
		{"named port with no peers, egress: every pod with the name", []*netv1.NetworkPolicy{
			mkPolicy("dev", "p", netv1.NetworkPolicySpec{PodSelector: *sel("role", "client"), Egress: []netv1.NetworkPolicyEgressRule{
				{Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "http"), port(udp, 53)}}}}),
		}, []probe{
			out("dev/client", "fd00:10::10", policy.TCP, 8080, true),
			out("dev/client", "10.0.0.11", policy.TCP, 9090, true),
			out("dev/client", "10.0.0.11", policy.TCP, 8080, false),
			out("dev/client", "2001:db8::1", policy.TCP, 8080, false),
			out("dev/client", "2001:db8::1", policy.UDP, 53, true),
		}},
		{"policyTypes: listed types only; Egress defaulted when egress rules exist", []*netv1.NetworkPolicy{
			mkPolicy("prod", "ingress-only", netv1.NetworkPolicySpec{PodSelector: *sel("app", "db"), PolicyTypes: types(netv1.PolicyTypeIngress),
				Egress: []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("2001:db8::/32")}}}}),
			mkPolicy("prod", "defaulted", netv1.NetworkPolicySpec{PodSelector: webSel,
				Egress: []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("2001:db8::/32")}}}}),
		}, []probe{
			out("prod/db", "2001:db9::1", policy.TCP, 1, true), // egress rules ignored: not isolated
			in("prod/db", "2001:db8::1", policy.TCP, 1, false),
			out("prod/web", "2001:db9::1", policy.TCP, 1, false),
			out("prod/web", "2001:db8::1", policy.TCP, 1, true),
			in("prod/web", "2001:db8::1", policy.TCP, 1, false), // policy.Ingress always defaulted
		}},
		{"several policies select one pod: union", []*netv1.NetworkPolicy{
			mkPolicy("prod", "a", netv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8:a::/48")}, Ports: []netv1.NetworkPolicyPort{tcpPort(80)}}}}),
			mkPolicy("prod", "b", netv1.NetworkPolicySpec{PodSelector: *sel(), Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8:b::/48")}, Ports: []netv1.NetworkPolicyPort{tcpPort(443)}}}}),
			mkPolicy("prod", "deny", netv1.NetworkPolicySpec{PodSelector: *sel()}),
		}, []probe{
			in("prod/web", "2001:db8:a::1", policy.TCP, 80, true),
			in("prod/web", "2001:db8:a::1", policy.TCP, 443, false),
			in("prod/web", "2001:db8:b::1", policy.TCP, 443, true),
			in("prod/web", "2001:db8:b::1", policy.TCP, 80, false),
			in("prod/db", "2001:db8:b::1", policy.TCP, 443, true),
			in("prod/db", "2001:db8:a::1", policy.TCP, 80, false),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, nss := cluster()
			res, probs := Compile(tc.pols, pods, nss)
			if len(probs) > 0 {
				t.Fatalf("problems: %v", probs)
			}
			check(t, res, tc.probes)
			// CompileFor one pod (as a node compiles its own) gives that
			// pod what Compile gives it, and no other pod.
			for _, want := range res.Pods {
				one, probs := CompileFor(tc.pols, pods, nss, func(ns, name string) bool { return ns == want.Namespace && name == want.Name })
				if len(probs) > 0 || len(one.Pods) != 1 {
					t.Fatalf("CompileFor %s: %d pods, problems %v", want.Key(), len(one.Pods), probs)
				}
				if a, b := res.Explain(want.Namespace, want.Name), one.Explain(want.Namespace, want.Name); a != b {
					t.Errorf("CompileFor %s differs from Compile:\n%s\n---\n%s", want.Key(), b, a)
				}
			}
		})
	}
}

// TestIneligiblePods: pods on the host's network, without IPs, or
// terminated are neither selected nor peers.
func TestIneligiblePods(t *testing.T) {
	host := mkPod("prod", "host", lbl("role", "client"), "2001:db8:ffff::1", "192.0.2.1")
	host.Spec.HostNetwork = true
	done := mkPod("prod", "done", lbl("role", "client"), "fd00:10::99", "10.0.0.99")
	done.Status.Phase = corev1.PodSucceeded
	failed := mkPod("prod", "failed", lbl("app", "web"), "fd00:10::98")
	failed.Status.Phase = corev1.PodFailed
	pending := mkPod("prod", "pending", lbl("app", "web"))
	pods, nss := cluster()
	pods = append(pods, host, done, failed, pending)
	pol := mkPolicy("prod", "p", netv1.NetworkPolicySpec{PodSelector: *sel(), Ingress: []netv1.NetworkPolicyIngressRule{
		{From: []netv1.NetworkPolicyPeer{podPeer(sel("role", "client"))}}}})
	res, probs := Compile([]*netv1.NetworkPolicy{pol}, pods, nss)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	for _, name := range []string{"host", "done", "failed", "pending"} {
		if _, ok := res.Pod("prod", name); ok {
			t.Errorf("prod/%s is in the result", name)
		}
		if !slices.ContainsFunc(res.Skipped, func(s policy.Skipped) bool { return s.Pod == "prod/"+name }) {
			t.Errorf("prod/%s is not in Skipped: %v", name, res.Skipped)
		}
	}
	check(t, res, []probe{
		in("prod/web", "fd00:10::30", policy.TCP, 80, true),
		in("prod/web", "2001:db8:ffff::1", policy.TCP, 80, false), // the hostNetwork pod is no peer
		in("prod/web", "192.0.2.1", policy.TCP, 80, false),
		in("prod/web", "fd00:10::99", policy.TCP, 80, false), // nor the finished one
	})
	if p, _ := res.Pod("prod", "web"); len(p.Addrs) != 2 || !p.Addrs[0].Is6() {
		t.Errorf("addresses %v: want IPv6 first", p.Addrs)
	}
}

// TestSeed004 is the seed's policy (allow ingress from 2001:db8::/32 and
// fd00::/8, egress to ::/0 except fc00::/7), first alone, then with its
// IPv4 twin. Alone it isolates the pod in IPv4 too: nothing IPv4 passes.
func TestSeed004(t *testing.T) {
	app := *sel("app", "myapp")
	v6 := mkPolicy("default", "allow-ipv6", netv1.NetworkPolicySpec{PodSelector: app,
		Ingress: []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{block("2001:db8::/32"), block("fd00::/8")}}},
		Egress:  []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("::/0", "fc00::/7")}}}})
	v4 := mkPolicy("default", "allow-ipv4", netv1.NetworkPolicySpec{PodSelector: app,
		Ingress: []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{block("198.51.100.0/24"), block("10.0.0.0/8")}}},
		Egress:  []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("0.0.0.0/0", "10.0.0.0/8")}}}})
	pods := []*corev1.Pod{mkPod("default", "myapp", lbl("app", "myapp"), "2001:db8:1::5", "10.1.0.5")}
	v6probes := []probe{
		in("default/myapp", "2001:db8::1", policy.TCP, 80, true),
		in("default/myapp", "2001:db8:ffff::1", policy.UDP, 53, true),
		in("default/myapp", "fd00::1", policy.TCP, 80, true),
		in("default/myapp", "fdff:ffff::1", policy.TCP, 80, true),
		in("default/myapp", "fc00::1", policy.TCP, 80, false), // ULA, but outside fd00::/8
		in("default/myapp", "2001:db9::1", policy.TCP, 80, false),
		in("default/myapp", "2001:db8::1", icmpv6, 0, true),
		out("default/myapp", "2001:4860:4860::8888", policy.TCP, 443, true),
		out("default/myapp", "fd00::1", policy.TCP, 443, false), // ULA blocked
		out("default/myapp", "fc00::1", policy.UDP, 53, false),
		out("default/myapp", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", policy.UDP, 53, false),
		out("default/myapp", "fe80::1", policy.UDP, 53, true),
		out("default/myapp", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", policy.UDP, 53, true),
	}
	t.Run("IPv6 alone", func(t *testing.T) {
		res, probs := Compile([]*netv1.NetworkPolicy{v6}, pods, nil)
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		check(t, res, append(v6probes,
			in("default/myapp", "10.0.0.1", policy.TCP, 80, false),
			in("default/myapp", "198.51.100.1", policy.TCP, 80, false),
			out("default/myapp", "8.8.8.8", policy.UDP, 53, false),
		))
		p, _ := res.Pod("default", "myapp")
		egress := p.Egress.Flatten()
		if len(egress.All) != 7 || egress.All[0].String() != "::/1" || len(egress.ByPort) != 0 {
			t.Errorf("egress = %+v, want all traffic to the 7 prefixes of ::/0 minus fc00::/7", egress)
		}
	})
	t.Run("with the IPv4 twin", func(t *testing.T) {
		res, probs := Compile([]*netv1.NetworkPolicy{v6, v4}, pods, nil)
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		check(t, res, append(v6probes,
			in("default/myapp", "10.200.0.1", policy.TCP, 80, true),
			in("default/myapp", "198.51.100.1", policy.TCP, 80, true),
			in("default/myapp", "192.0.2.1", policy.TCP, 80, false),
			out("default/myapp", "8.8.8.8", policy.UDP, 53, true),
			out("default/myapp", "10.0.3.53", policy.UDP, 53, false),
		))
	})
}

// TestProblems: a policy that cannot be rendered is reported by field;
// its broken rule allows nothing, the policy still isolates its pods, and
// other policies apply.
func TestProblems(t *testing.T) {
	bad := func(name string, peer netv1.NetworkPolicyPeer, ports ...netv1.NetworkPolicyPort) *netv1.NetworkPolicy {
		return mkPolicy("prod", name, netv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []netv1.NetworkPolicyIngressRule{
			{From: []netv1.NetworkPolicyPeer{block("2001:db8:1::/48")}},
			{From: []netv1.NetworkPolicyPeer{block("2001:db8:2::/48"), peer}, Ports: ports}}})
	}
	badPort := tcpPort(0)
	badEnd := portRange(tcp, 90, 80)
	namedEnd := namedPortOf(tcp, "http")
	end := int32(90)
	namedEnd.EndPort = &end
	badProto := port("ICMP", 1)
	numericName := namedPortOf(tcp, "80")
	for _, tc := range []struct {
		pol   *netv1.NetworkPolicy
		field string
	}{
		{bad("cidr", block("2001:db8::/129")), "spec.ingress[1].from[1].ipBlock.cidr"},
		{bad("except-outside", block("2001:db8:3::/48", "2001:db8:4::/64")), "spec.ingress[1].from[1].ipBlock.except[0]"},
		{bad("except-family", block("2001:db8:3::/48", "10.0.0.0/8")), "spec.ingress[1].from[1].ipBlock.except[0]"},
		{bad("except-equal", block("2001:db8:3::/48", "2001:db8:3::/48")), "spec.ingress[1].from[1].ipBlock.except[0]"},
		{bad("mapped", block("::ffff:10.0.0.0/104")), "spec.ingress[1].from[1].ipBlock.cidr"},
		{bad("mixed", netv1.NetworkPolicyPeer{IPBlock: &netv1.IPBlock{CIDR: "::/0"}, PodSelector: sel()}), "spec.ingress[1].from[1]"},
		{bad("empty-peer", netv1.NetworkPolicyPeer{}), "spec.ingress[1].from[1]"},
		{bad("selector", podPeer(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}})), "spec.ingress[1].from[1]"},
		{bad("port", block("2001:db8:3::/48"), badPort), "spec.ingress[1].ports[0].port"},
		{bad("endport", block("2001:db8:3::/48"), badEnd), "spec.ingress[1].ports[0].endPort"},
		{bad("named-endport", block("2001:db8:3::/48"), namedEnd), "spec.ingress[1].ports[0].endPort"},
		{bad("numeric-name", block("2001:db8:3::/48"), numericName), "spec.ingress[1].ports[0].port"},
		{bad("protocol", block("2001:db8:3::/48"), badProto), "spec.ingress[1].ports[0].protocol"},
	} {
		t.Run(tc.pol.Name, func(t *testing.T) {
			good := mkPolicy("prod", "good", netv1.NetworkPolicySpec{PodSelector: *sel("app", "db"), Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8:9::/48")}}}})
			pods, nss := cluster()
			res, probs := Compile([]*netv1.NetworkPolicy{tc.pol, good}, pods, nss)
			if len(probs) != 1 || probs[0].Field != tc.field || probs[0].Policy != "prod/"+tc.pol.Name {
				t.Fatalf("problems = %v, want one at %s", probs, tc.field)
			}
			if !strings.Contains(probs[0].Error(), tc.field) {
				t.Errorf("error %q does not name the field", probs[0].Error())
			}
			check(t, res, []probe{
				in("prod/web", "2001:db8:1::1", policy.TCP, 80, true),  // the good rule of the same policy
				in("prod/web", "2001:db8:2::1", policy.TCP, 80, false), // the broken rule allows nothing
				in("prod/web", "2001:db8:3::1", policy.TCP, 80, false),
				in("prod/web", "2001:db8:9::1", policy.TCP, 80, false),
				in("prod/db", "2001:db8:9::1", policy.TCP, 80, true), // the other policy applies
			})
		})
	}
	t.Run("podSelector", func(t *testing.T) {
		pol := mkPolicy("prod", "sel", netv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn}}}}) // In needs values
		pods, nss := cluster()
		_, probs := Compile([]*netv1.NetworkPolicy{pol}, pods, nss)
		if len(probs) != 1 || probs[0].Field != "spec.podSelector" {
			t.Fatalf("problems = %v", probs)
		}
	})
}

// TestDeterministic: the result does not depend on the order of inputs.
func TestDeterministic(t *testing.T) {
	pods, nss := cluster()
	pols := []*netv1.NetworkPolicy{
		mkPolicy("prod", "b", netv1.NetworkPolicySpec{PodSelector: *sel(), Egress: []netv1.NetworkPolicyEgressRule{
			{To: []netv1.NetworkPolicyPeer{podPeer(sel("app", "db"))}, Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "pg")}}}}),
		mkPolicy("prod", "a", netv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []netv1.NetworkPolicyIngressRule{
			{From: []netv1.NetworkPolicyPeer{nsPeer(sel("team", "web")), block("2001:db8::/32")}}}}),
	}
	first, _ := Compile(pols, pods, nss)
	slices.Reverse(pods)
	slices.Reverse(nss)
	slices.Reverse(pols)
	second, _ := Compile(pols, pods, nss)
	for i := range first.Pods {
		if a, b := first.Explain(first.Pods[i].Namespace, first.Pods[i].Name), second.Explain(first.Pods[i].Namespace, first.Pods[i].Name); a != b {
			t.Errorf("order changed the result:\n%s\n---\n%s", a, b)
		}
	}
}
