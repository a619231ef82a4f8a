package netpol

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/duetnet/duet/internal/policy"
)

// Builders for the objects tests need; addresses are IPv6 first.

func mkPod(ns, name string, lbl map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}}
	p.Status.Phase = corev1.PodRunning
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	p.Spec.Containers = []corev1.Container{{Name: "c"}}
	return p
}

// withPorts gives the pod's container named ports: "http", 8080, "TCP".
func withPorts(p *corev1.Pod, ports ...corev1.ContainerPort) *corev1.Pod {
	p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, ports...)
	return p
}

func cport(name string, port int32, proto corev1.Protocol) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: proto}
}

func mkNS(name string, lbl map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl}}
}

func mkPolicy(ns, name string, spec netv1.NetworkPolicySpec) *netv1.NetworkPolicy {
	return &netv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func lbl(kv ...string) map[string]string { return sel(kv...).MatchLabels }

func block(cidr string, except ...string) netv1.NetworkPolicyPeer {
	return netv1.NetworkPolicyPeer{IPBlock: &netv1.IPBlock{CIDR: cidr, Except: except}}
}

func podPeer(s *metav1.LabelSelector) netv1.NetworkPolicyPeer {
	return netv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) netv1.NetworkPolicyPeer {
	return netv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func port(proto corev1.Protocol, p int) netv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return netv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func portRange(proto corev1.Protocol, from, to int32) netv1.NetworkPolicyPort {
	pp := port(proto, int(from))
	pp.EndPort = &to
	return pp
}

func namedPortOf(proto corev1.Protocol, name string) netv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return netv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

// tcpPort has no protocol: the API's default, policy.TCP, applies.
func tcpPort(p int) netv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return netv1.NetworkPolicyPort{Port: &v}
}

func protoOnly(proto corev1.Protocol) netv1.NetworkPolicyPort {
	return netv1.NetworkPolicyPort{Protocol: &proto}
}

func types(t ...netv1.PolicyType) []netv1.PolicyType { return t }

// probe is one packet, seen from the selected pod: from peer (ingress) or
// to peer (egress).
type probe struct {
	pod   string // "ns/name"
	dir   policy.Dir
	peer  string
	proto policy.Proto
	port  uint16
	want  bool
}

const icmpv6 = policy.ICMPv6

func in(pod, peer string, proto policy.Proto, port uint16, want bool) probe {
	return probe{pod, policy.Ingress, peer, proto, port, want}
}

func out(pod, peer string, proto policy.Proto, port uint16, want bool) probe {
	return probe{pod, policy.Egress, peer, proto, port, want}
}

// check runs every probe through Allows and, as a second opinion,
// through Flatten, which the firewall renders.
func check(t *testing.T, res policy.Result, probes []probe) {
	t.Helper()
	for _, pr := range probes {
		p, ok := res.Pod(splitKey(pr.pod))
		if !ok {
			t.Errorf("%s: pod not in the result", pr.pod)
			continue
		}
		d := p.Ingress
		if pr.dir == policy.Egress {
			d = p.Egress
		}
		addr := netip.MustParseAddr(pr.peer)
		got, by := d.Allows(addr, pr.proto, pr.port)
		if got != pr.want {
			t.Errorf("%s %s %s %s/%d: allowed=%v (by %v), want %v", pr.pod, pr.dir, pr.peer, pr.proto, pr.port, got, by, pr.want)
		}
		if d != nil {
			if g := d.Flatten().Allows(addr, pr.proto, pr.port); g != got {
				t.Errorf("%s %s %s %s/%d: Flatten says %v, Allows %v", pr.pod, pr.dir, pr.peer, pr.proto, pr.port, g, got)
			}
		}
	}
}

func splitKey(k string) (string, string) {
	for i := range k {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}
