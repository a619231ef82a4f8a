package netpol

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
)

func TestExplain(t *testing.T) {
	pods, nss := cluster()
	host := mkPod("prod", "host", nil, "2001:db8::1")
	host.Spec.HostNetwork = true
	pods = append(pods, host)
	pols := []*netv1.NetworkPolicy{
		mkPolicy("prod", "allow-ipv6", netv1.NetworkPolicySpec{PodSelector: *sel("app", "web"),
			Ingress: []netv1.NetworkPolicyIngressRule{
				{From: []netv1.NetworkPolicyPeer{block("2001:db8::/32"), block("fd00::/8")}},
				{From: []netv1.NetworkPolicyPeer{podPeer(sel("role", "client"))}, Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "http")}},
				{Ports: []netv1.NetworkPolicyPort{namedPortOf(tcp, "metrics")}}},
			Egress: []netv1.NetworkPolicyEgressRule{{To: []netv1.NetworkPolicyPeer{block("::/0", "fc00::/7")}}}}),
	}
	res, probs := Compile(pols, pods, nss)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	for _, tc := range []struct {
		pod  string
		want []string
	}{
		{"prod/web", []string{
			"pod prod/web: fd00:10::10, 10.0.0.10\n",
			"ingress: isolated by prod/allow-ipv6\n",
			"  prod/allow-ipv6 ingress[0]: from ipBlock 2001:db8::/32; ipBlock fd00::/8: all traffic\n    2001:db8::/32 fd00::/8\n",
			"  prod/allow-ipv6 ingress[1]: from pods role=client in namespace prod (1): tcp/8080\n    fd00:10::30 (prod/client) 10.0.0.30 (prod/client)\n",
			"  note: prod/allow-ipv6 ingress[2] allows nothing: this pod has no port named tcp/metrics\n",
			"  IPv6: allowed by prod/allow-ipv6 ingress[0], prod/allow-ipv6 ingress[1]\n",
			"  IPv4: allowed by prod/allow-ipv6 ingress[1]\n",
			"egress: isolated by prod/allow-ipv6\n",
			"  prod/allow-ipv6 egress[0]: to ipBlock ::/0 except fc00::/7: all traffic\n    ::/1 8000::/2 c000::/3 e000::/4 f000::/5 f800::/6 fe00::/7\n",
			"  IPv4: nothing is allowed out\n", // the pitfall: an IPv6-only policy cuts IPv4 off
		}},
		{"prod/db", []string{
			"ingress: not isolated (no policy selects the pod for ingress): everything is allowed in\n",
			"egress: not isolated",
		}},
		{"prod/host", []string{"pod prod/host: not subject to NetworkPolicy: on the host's network\n"}},
		{"prod/nope", []string{"pod prod/nope: unknown\n"}},
	} {
		got := res.Explain(splitKey(tc.pod))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("Explain(%s) lacks %q:\n%s", tc.pod, w, got)
			}
		}
	}
}

func TestExplainDenyAll(t *testing.T) {
	pods := []*corev1.Pod{mkPod("prod", "web", nil, "fd00:10::10")}
	res, _ := Compile([]*netv1.NetworkPolicy{mkPolicy("prod", "deny", netv1.NetworkPolicySpec{})}, pods, nil)
	got := res.Explain("prod", "web")
	for _, w := range []string{"ingress: isolated by prod/deny\n  no rule allows anything in\n", "  IPv6: nothing is allowed in\n"} {
		if !strings.Contains(got, w) {
			t.Errorf("Explain lacks %q:\n%s", w, got)
		}
	}
}
