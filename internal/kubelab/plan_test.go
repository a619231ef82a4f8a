package kubelab

import (
	"fmt"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/lab"
)

func TestFamilies(t *testing.T) {
	for _, tc := range []struct {
		family             string
		cluster, svc, dns  string
		nodeIPs, apiFamily string
	}{
		{"ipv6", "[fd00:d0e7::/56]", "[fd00:d0e7:fff0::/112]", "[fd00:d0e7:fff0::a]", "[fd00:d0e7:ffff::1]", "6"},
		{"dual", "[fd00:d0e7::/56 10.250.0.0/20]", "[fd00:d0e7:fff0::/112 10.250.16.0/20]", "[fd00:d0e7:fff0::a 10.250.16.10]", "[fd00:d0e7:ffff::1 10.250.255.1]", "6"},
		{"ipv4", "[10.250.0.0/20]", "[10.250.16.0/20]", "[10.250.16.10]", "[10.250.255.1]", "4"},
	} {
		t.Run(tc.family, func(t *testing.T) {
			o := Options{Nodes: 2, Family: tc.family, Routing: "direct", ProxyMode: "nftables"}
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			s := lab.Plan(lab.Options{Nodes: 2, Family: tc.family, Routing: "direct", Topology: "switched"}, "/x")
			got := []string{fmt.Sprint(o.ClusterCIDRs()), fmt.Sprint(o.ServiceCIDRs()), fmt.Sprint(o.DNSService()), fmt.Sprint(o.nodeIPs(s.Nodes[0]))}
			want := []string{tc.cluster, tc.svc, tc.dns, tc.nodeIPs}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("got %s, want %s", got[i], want[i])
				}
			}
			// kube-controller-manager refuses the per-family mask flags
			// on a single-stack cluster.
			if masks := fmt.Sprint(o.nodeMaskFlags()); (tc.family == "dual") != strings.Contains(masks, "-ipv6") {
				t.Errorf("node mask flags %s for family %s", masks, tc.family)
			}
			if api := o.apiAddr(s); (api.Is6() && tc.apiFamily != "6") || (api.Is4() && tc.apiFamily != "4") {
				t.Errorf("API address %s is not of the primary family", api)
			}
			// The kubernetes Service's address must be in the certificate,
			// and be the first of the primary range.
			if k := o.KubernetesService()[0]; !o.ServiceCIDRs()[0].Contains(k) {
				t.Errorf("kubernetes Service %s outside %s", k, o.ServiceCIDRs()[0])
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := Options{Nodes: 2, Family: "dual", Routing: "direct", ProxyMode: "nftables"}
	for _, tc := range []struct {
		mut  func(*Options)
		flag string
	}{
		{func(o *Options) { o.Nodes = 17 }, "--nodes"},
		{func(o *Options) { o.Family = "both" }, "--family"},
		{func(o *Options) { o.Routing = "ospf" }, "--routing"},
		{func(o *Options) { o.ProxyMode = "ipvs" }, "--proxy-mode"},
	} {
		o := good
		tc.mut(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: %v, want an error naming %s", o, err, tc.flag)
		}
	}
}

func TestConfigs(t *testing.T) {
	c := &cluster{o: Options{Nodes: 1, Family: "dual", ProxyMode: "iptables"}, p: paths{root: "/run/duet-lab/kube"}}
	kl := c.kubeletConfig("node1")
	for _, want := range []string{"cgroupRoot: /duet-lab-node1", `clusterDNS: ["fd00:d0e7:fff0::a"]`, "failCgroupV1: false",
		"containerRuntimeEndpoint: unix:///run/duet-lab/kube/nodes/node1/containerd/containerd.sock"} {
		if !strings.Contains(kl, want) {
			t.Errorf("kubelet config lacks %q:\n%s", want, kl)
		}
	}
	kp := c.proxyConfig("node1")
	for _, want := range []string{"mode: iptables", `clusterCIDR: "fd00:d0e7::/56,10.250.0.0/20"`, "detectLocalMode: NodeCIDR"} {
		if !strings.Contains(kp, want) {
			t.Errorf("kube-proxy config lacks %q:\n%s", want, kp)
		}
	}
	cd := c.containerdConfig("node1")
	for _, want := range []string{`conf_dir = "/run/duet-lab/kube/nodes/node1/net.d"`, `bin_dir = "/run/duet-lab/kube/cni-bin"`, "restrict_oom_score_adj = true"} {
		if !strings.Contains(cd, want) {
			t.Errorf("containerd config lacks %q:\n%s", want, cd)
		}
	}
}
