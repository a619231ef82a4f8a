package deploy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

var labOpts = LabOptions{
	Image:     "localhost/duetnet/duet:lab",
	HostRoot:  "/var/lib/duet-lab/kube",
	CNIBinDir: "/var/lib/duet-lab/kube/cni-bin",
	Families:  "ipv6",
	Routing:   "vxlan",
}

func lab(t *testing.T, o LabOptions) manifest {
	t.Helper()
	before := bytes.Clone(Manifest)
	out, err := Lab(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, Manifest) {
		t.Fatal("Lab changed Manifest")
	}
	return mustDecode(t, out) // strictly, as kubectl apply's server would
}

func TestLabPerNodePaths(t *testing.T) {
	m := lab(t, labOpts)
	spec := m.ds.Spec.Template.Spec
	c := m.container(t, AgentContainer)
	for _, mount := range c.VolumeMounts {
		want := map[string]string{"/etc/cni/net.d": "$(NODE_NAME)/net.d", "/var/lib/duet": "$(NODE_NAME)/lib", "/run/duet": "$(NODE_NAME)/run"}[mount.MountPath]
		if mount.SubPathExpr != want || mount.SubPath != "" {
			t.Errorf("mount %s at %s: subPathExpr %q, want %q", mount.Name, mount.MountPath, mount.SubPathExpr, want)
		}
	}
	// Each node gets its own conf dir, bolt file and socket; the plugin on
	// the host opens the bolt file duetd opens.
	cniDB, ok := flagValue(c.Args, cniDatastoreFlag)
	if want := "/var/lib/duet-lab/kube/nodes/$(NODE_NAME)/lib/duet.db"; cniDB != want {
		t.Errorf("%s %q (ok %v), want %q", cniDatastoreFlag, cniDB, ok, want)
	}
	seen := map[string]string{}
	for _, node := range []string{"node1", "node2"} {
		for flag, want := range map[string]string{
			"--cni-conf-dir":   "/var/lib/duet-lab/kube/nodes/" + node + "/net.d",
			"--datastore-path": "/var/lib/duet-lab/kube/nodes/" + node + "/lib/duet.db",
			"--socket":         "/var/lib/duet-lab/kube/nodes/" + node + "/run/duetd.sock",
		} {
			p, _ := flagValue(c.Args, flag)
			h := hostPathOf(t, spec, *c, p, node)
			if h != want {
				t.Errorf("node %s: %s %s is %s on the host, want %s", node, flag, p, h, want)
			}
			if other, dup := seen[h]; dup {
				t.Errorf("%s is shared with %s", h, other)
			}
			seen[h] = node
			if flag == "--datastore-path" {
				if got := expand(t, *c, cniDB, node); got != h {
					t.Errorf("node %s: the plugin opens %s, duetd %s", node, got, h)
				}
			}
		}
	}
	// The plugins are shared by every node's runtime.
	ic := m.container(t, "install-cni")
	to, _ := flagValue(ic.Command, "--to")
	for _, node := range []string{"node1", "node2"} {
		if h := hostPathOf(t, spec, *ic, to, node); h != labOpts.CNIBinDir {
			t.Errorf("node %s: install-cni writes %s, want %s", node, h, labOpts.CNIBinDir)
		}
	}
	// Every container with a subPathExpr has NODE_NAME (expand checks
	// it is from spec.nodeName), and no hostPath is outside the lab.
	for _, ctr := range m.allContainers() {
		for _, mount := range ctr.VolumeMounts {
			expand(t, ctr, mount.SubPathExpr, "node1")
		}
	}
	for _, v := range spec.Volumes {
		if p := v.HostPath.Path; p != labOpts.HostRoot+"/nodes" && p != labOpts.CNIBinDir {
			t.Errorf("volume %s: hostPath %s outside the lab", v.Name, p)
		}
	}
}

func TestLabImageAndConfig(t *testing.T) {
	m := lab(t, labOpts)
	for _, c := range m.allContainers() {
		if c.Image != labOpts.Image || c.ImagePullPolicy != corev1.PullNever {
			t.Errorf("container %s: image %s, pull %s; want %s, Never", c.Name, c.Image, c.ImagePullPolicy, labOpts.Image)
		}
	}
	if m.cm.Data["families"] != "ipv6" || m.cm.Data["routing"] != "vxlan" {
		t.Errorf("ConfigMap data %v", m.cm.Data)
	}
	// Empty Families and Routing keep the manifest's.
	o := labOpts
	o.Families, o.Routing = "", ""
	if d := lab(t, o).cm.Data; d["families"] != "dual" || d["routing"] != "direct" || d["network-policy"] != "true" {
		t.Errorf("ConfigMap data %v, want the manifest's dual, direct, true", d)
	}
	off := false
	o.NetworkPolicy = &off
	if d := lab(t, o).cm.Data; d["network-policy"] != "false" {
		t.Errorf("NetworkPolicy false: ConfigMap data %v", d)
	}
}

// Lab changes nothing but what its doc comment lists.
func TestLabChangesNothingElse(t *testing.T) {
	base, m := mustDecode(t, Manifest), lab(t, labOpts)
	for i := range base.objs {
		if _, ok := base.objs[i].(*appsv1.DaemonSet); ok {
			continue
		}
		if _, ok := base.objs[i].(*corev1.ConfigMap); ok {
			continue
		}
		if d := cmp.Diff(base.objs[i], m.objs[i]); d != "" {
			t.Errorf("object %d changed (-manifest +lab):\n%s", i, d)
		}
	}
	if d := cmp.Diff(base.cm.ObjectMeta, m.cm.ObjectMeta); d != "" {
		t.Errorf("ConfigMap metadata changed:\n%s", d)
	}
	// Blank what Lab may change, in both, and compare the rest.
	blank := func(ds *appsv1.DaemonSet) {
		spec := &ds.Spec.Template.Spec
		for i := range spec.Volumes {
			spec.Volumes[i].HostPath.Path = ""
		}
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for i := range cs {
				c := &cs[i]
				c.Image, c.ImagePullPolicy = "", ""
				for j := range c.VolumeMounts {
					c.VolumeMounts[j].SubPathExpr = ""
				}
				var args []string
				for _, a := range c.Args {
					if !strings.HasPrefix(a, cniDatastoreFlag+"=") {
						args = append(args, a)
					}
				}
				c.Args = args
			}
		}
	}
	blank(base.ds)
	blank(m.ds)
	if d := cmp.Diff(base.ds, m.ds); d != "" {
		t.Errorf("DaemonSet changed beyond images, host paths, subPathExpr and %s (-manifest +lab):\n%s", cniDatastoreFlag, d)
	}
}

func TestLabAddsNodeName(t *testing.T) {
	c := corev1.Container{Name: "x", VolumeMounts: []corev1.VolumeMount{{Name: "lib", MountPath: "/var/lib/duet"}}, Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}
	if err := labMounts(&c, map[string]string{"lib": "lib"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Env) != 2 || c.Env[0].Name != nodeNameEnv || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env %+v, want NODE_NAME from spec.nodeName first", c.Env)
	}
	bad := corev1.Container{Name: "y", VolumeMounts: []corev1.VolumeMount{{Name: "lib", MountPath: "/var/lib/duet"}}, Env: []corev1.EnvVar{{Name: nodeNameEnv, Value: "node1"}}}
	if err := labMounts(&bad, map[string]string{"lib": "lib"}); err == nil || !strings.Contains(err.Error(), "downward API") {
		t.Errorf("a fixed NODE_NAME: error %v", err)
	}
}

func TestLabOptionsErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*LabOptions)
		want string
	}{
		{"no image", func(o *LabOptions) { o.Image = "" }, "Image"},
		{"relative root", func(o *LabOptions) { o.HostRoot = "lab" }, "HostRoot"},
		{"variable in root", func(o *LabOptions) { o.HostRoot = "/lab/$(X)" }, "HostRoot"},
		{"relative bin dir", func(o *LabOptions) { o.CNIBinDir = "bin" }, "CNIBinDir"},
		{"families", func(o *LabOptions) { o.Families = "ipv4v6" }, "use dual, ipv6 or ipv4"},
		{"routing", func(o *LabOptions) { o.Routing = "ospf" }, "use direct, vxlan or bgp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := labOpts
			c.edit(&o)
			if _, err := Lab(o); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLabUnknownHostPath(t *testing.T) {
	spec := corev1.PodSpec{
		Volumes:    []corev1.Volume{{Name: "modules", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/lib/modules"}}}},
		Containers: []corev1.Container{{Name: AgentContainer}},
	}
	if err := labPodSpec(&spec, labOpts); err == nil || !strings.Contains(err.Error(), "/lib/modules") {
		t.Errorf("error %v, want one naming /lib/modules", err)
	}
}
