package policynft

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/policy/netpol"
)

// TestPolicySeed004 takes seed 004's policy from the API object to
// packets: ingress from 2001:db8::/32 and fd00::/8, egress to ::/0 except
// fc00::/7. Alone it cuts the pod's IPv4 off in both directions; its
// IPv4 twin, added by an incremental sync, opens IPv4 as the seed's text
// intends.
func TestPolicySeed004(t *testing.T) {
	block := func(cidr string, except ...string) netv1.NetworkPolicyPeer {
		return netv1.NetworkPolicyPeer{IPBlock: &netv1.IPBlock{CIDR: cidr, Except: except}}
	}
	mk := func(name string, in []netv1.NetworkPolicyPeer, out netv1.NetworkPolicyPeer) *netv1.NetworkPolicy {
		return &netv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: netv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "myapp"}},
			Ingress:     []netv1.NetworkPolicyIngressRule{{From: in}},
			Egress:      []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{out}}},
		}}
	}
	v6 := mk("allow-ipv6", []netv1.NetworkPolicyPeer{block("2001:db8::/32"), block("fd00::/8")}, block("::/0", "fc00::/7"))
	v4 := mk("allow-ipv4", []netv1.NetworkPolicyPeer{block("198.51.100.0/24"), block("10.0.0.0/8")}, block("0.0.0.0/0", "10.0.0.0/8"))
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "myapp", Labels: map[string]string{"app": "myapp"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "2001:db8:1::5"}, {IP: "10.1.0.5"}}}}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "fd00:1::9"}, {IP: "10.1.0.9"}}}}
	pods := []*corev1.Pod{app, other}

	v6cases := []struct {
		p    vpacket
		want string
	}{
		{tcp("2001:db8:ffff::1", "2001:db8:1::5", 80), "accept"},
		{tcp("fd00:1::9", "2001:db8:1::5", 80), "accept"}, // other, from fd00::/8
		{udp("fdff::1", "2001:db8:1::5", 53), "accept"},
		{tcp("fc00::1", "2001:db8:1::5", 80), "drop"}, // ULA, outside fd00::/8
		{tcp("2001:db9::1", "2001:db8:1::5", 80), "drop"},
		{tcp("2001:db8:1::5", "2001:4860:4860::8888", 443), "accept"},
		{tcp("2001:db8:1::5", "fd00:1::9", 80), "drop"}, // ULA is blocked out
		{udp("2001:db8:1::5", "fc00::53", 53), "drop"},
		{tcp("2001:db8:1::5", "fe00::1", 80), "accept"},
		{tcp("fd00:1::9", "2001:4860:4860::8888", 443), "accept"}, // other is not isolated
	}
	fake := newPolicyFake()
	s := NewSyncer(fake)
	sync := func(pols ...*netv1.NetworkPolicy) {
		t.Helper()
		res, probs := netpol.Compile(pols, pods, nil)
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		syncPolicy(t, s, res.Pods)
	}
	run := func(cases []struct {
		p    vpacket
		want string
	}) {
		t.Helper()
		tr := newTracer(t, fake)
		for _, c := range cases {
			if got := tr.verdict(knftables.ForwardHook, c.p); got != c.want {
				t.Errorf("%s: %s, want %s; path:\n  %s", c.p, got, c.want, strings.Join(tr.path, "\n  "))
			}
		}
	}

	sync(v6)
	run(v6cases)
	run([]struct {
		p    vpacket
		want string
	}{
		{tcp("10.1.0.9", "10.1.0.5", 80), "drop"},
		{tcp("198.51.100.1", "10.1.0.5", 80), "drop"},
		{udp("10.1.0.5", "8.8.8.8", 53), "drop"},
		{tcp("10.1.0.9", "8.8.8.8", 53), "accept"},
	})

	sync(v6, v4)
	if fake.LastTransaction.String() == "" || strings.Contains(fake.LastTransaction.String(), "flush") {
		t.Errorf("adding a policy rewrote the table instead of adding elements:\n%s", fake.LastTransaction)
	}
	run(v6cases)
	run([]struct {
		p    vpacket
		want string
	}{
		{tcp("10.1.0.9", "10.1.0.5", 80), "accept"},
		{tcp("198.51.100.1", "10.1.0.5", 80), "accept"},
		{tcp("192.0.2.1", "10.1.0.5", 80), "drop"},
		{udp("10.1.0.5", "8.8.8.8", 53), "accept"},
		{udp("10.1.0.5", "10.1.0.9", 53), "drop"}, // 10.0.0.0/8 excepted
	})
}
