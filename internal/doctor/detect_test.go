package doctor

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []Kind
	}{
		{"daemon.json", `{"ipv6": true}`, []Kind{KindDockerDaemon}},
		{"x.json", `{"log-driver": "local"}`, []Kind{KindDockerDaemon}},
		{"10-br.conflist", `{"cniVersion": "1.0.0", "name": "br", "plugins": []}`, []Kind{KindCNI}},
		{"10-br.conf", `{"cniVersion": "1.0.0", "name": "br", "type": "bridge"}`, []Kind{KindCNI}},
		{"net-conf.json", `{"Network": "10.244.0.0/16"}`, []Kind{KindFlannel}},
		{"svc.json", `{"apiVersion": "v1", "kind": "Service"}`, []Kind{KindKubernetes}},
		{"compose.yaml", "services:\n  web: {image: nginx}\n", []Kind{KindCompose}},
		{"all.yaml", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n---\napiVersion: crd.projectcalico.org/v1\nkind: IPPool\n---\n---\napiVersion: v1\nkind: Service\n",
			[]Kind{KindKubeadm, KindKubeProxy, KindCalicoPool, KindKubernetes}},
		{"init.sh", "#!/bin/sh\nset -e\n$ sudo -E kubeadm init --pod-network-cidr=fd3c::/56 \\\n  --service-cidr fd3c:1::/112\n", []Kind{KindKubeadm}},
		{"notes.md", "Run:\n\n    dockerd --ipv6 --fixed-cidr-v6 fd3c::/64\n", []Kind{KindDockerDaemon}},
		{"plain.sh", "dockerd &\nkubeadm init --config c.yaml\n", []Kind{KindUnknown}},
		{"notes.txt", "just words", []Kind{KindUnknown}},
		{"flow.yaml", "{services: {web: {image: nginx}}}", []Kind{KindCompose}},
	} {
		f := Parse(tc.name, []byte(tc.data))
		var got []Kind
		for _, d := range f.Docs {
			got = append(got, d.Kind)
		}
		if len(f.Findings) > 0 {
			t.Errorf("%s: findings %v", tc.name, codes(f.Findings))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestLines: JSON and command lines keep the line of every value.
func TestLines(t *testing.T) {
	f := Parse("d.json", []byte("{\n  \"a\": {\n    \"b\": [1,\n      \"x\"]\n  }\n}"))
	root := f.Docs[0].Root
	if got := []int{keyLine(root, "a"), lineOf(get(root, "a", "b")), lineOf(items(get(root, "a", "b"))[1])}; !cmp.Equal(got, []int{2, 3, 4}) {
		t.Errorf("JSON lines %v, want [2 3 4]", got)
	}
	f = Parse("s.sh", []byte("# x\nkubeadm init \\\n  --pod-network-cidr 10.0.0.0/16 \\\n\t--service-cidr=\"10.1.0.0/16\"\n"))
	root = f.Docs[0].Root
	if got := []int{lineOf(get(root, "networking", "podSubnet")), lineOf(get(root, "networking", "serviceSubnet"))}; !cmp.Equal(got, []int{3, 4}) {
		t.Errorf("command line lines %v, want [3 4]", got)
	}
	if s := strOf(get(root, "networking", "serviceSubnet")); s != "10.1.0.0/16" {
		t.Errorf("quoted flag value %q", s)
	}
}

func TestMalformed(t *testing.T) {
	for name, data := range map[string]string{
		"trailing.json": "{\n  \"ipv6\": true,\n}",
		"cut.json":      "{\n  \"ipv6\": tr",
		"tabs.yaml":     "services:\n\tweb: {}\n",
		"bad.conflist":  "{\"plugins\": [}",
	} {
		f := Parse(name, []byte(data))
		if len(f.Findings) != 1 || f.Findings[0].Code != "INPUT001" || f.Findings[0].Line < 1 {
			t.Errorf("%s: want one INPUT001 with a line, got %+v", name, f.Findings)
		}
	}
}
