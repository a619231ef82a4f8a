package deploy

import (
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// manifest is a decoded duet.yaml (or Lab output), by kind.
type manifest struct {
	objs    []any
	sa      *corev1.ServiceAccount
	role    *rbacv1.ClusterRole
	binding *rbacv1.ClusterRoleBinding
	cm      *corev1.ConfigMap
	ds      *appsv1.DaemonSet
}

func mustDecode(t *testing.T, b []byte) manifest {
	t.Helper()
	objs, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{objs: objs}
	seen := map[string]bool{}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			m.sa, seen["ServiceAccount"] = o, true
		case *rbacv1.ClusterRole:
			m.role, seen["ClusterRole"] = o, true
		case *rbacv1.ClusterRoleBinding:
			m.binding, seen["ClusterRoleBinding"] = o, true
		case *corev1.ConfigMap:
			m.cm, seen["ConfigMap"] = o, true
		case *appsv1.DaemonSet:
			m.ds, seen["DaemonSet"] = o, true
		default:
			t.Fatalf("unexpected object %T", obj)
		}
	}
	if len(objs) != 5 || len(seen) != 5 {
		t.Fatalf("want one each of ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet; got %d objects of %d kinds", len(objs), len(seen))
	}
	return m
}

func (m manifest) container(t *testing.T, name string) *corev1.Container {
	t.Helper()
	spec := &m.ds.Spec.Template.Spec
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			return &spec.InitContainers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func (m manifest) allContainers() []corev1.Container {
	spec := m.ds.Spec.Template.Spec
	return append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
}

// flagValue is the value of --name=V in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// hostPathOf is where containerPath in container c lands on the host of
// node, as the kubelet would mount it (subPathExpr expanded with the
// container's NODE_NAME, which must come from spec.nodeName).
func hostPathOf(t *testing.T, spec corev1.PodSpec, c corev1.Container, containerPath, node string) string {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (containerPath == mp || strings.HasPrefix(containerPath, mp+"/")) && (best == nil || len(mp) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		t.Fatalf("container %s: %s is on no volume (it is inside the container only)", c.Name, containerPath)
	}
	var host string
	for _, v := range spec.Volumes {
		if v.Name == best.Name {
			if v.HostPath == nil {
				t.Fatalf("volume %s is not a hostPath", v.Name)
			}
			host = v.HostPath.Path
		}
	}
	if host == "" {
		t.Fatalf("container %s mounts %s, which is not in volumes", c.Name, best.Name)
	}
	sub := best.SubPath
	if best.SubPathExpr != "" {
		sub = expand(t, c, best.SubPathExpr, node)
	}
	return path.Join(host, sub, strings.TrimPrefix(containerPath, best.MountPath))
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) the way the kubelet does, failing for a variable
// the container does not define (the kubelet would leave it as it is).
// Only NODE_NAME has a value here, the node's name.
func expand(t *testing.T, c corev1.Container, s, node string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		for _, e := range c.Env {
			if e.Name != name {
				continue
			}
			if name == nodeNameEnv {
				if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
					t.Errorf("container %s: %s is not from spec.nodeName", c.Name, name)
				}
				return node
			}
			return ref
		}
		t.Errorf("container %s: %q refers to $(%s), which its env does not define", c.Name, s, name)
		return ref
	})
}

func TestDecodeIsStrict(t *testing.T) {
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n", `unknown field "datta"`},
		{"nested unknown field", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwrk: true\n", `unknown field "hostNetwrk"`},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {a: c}\n", `key "data" already set`},
		{"unknown kind", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "not a kind"},
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: x}\n", "not a kind"},
		{"no kind", "metadata: {name: x}\n", "no apiVersion and kind"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decode([]byte("# first\n---\n" + c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestManifestObjects(t *testing.T) {
	m := mustDecode(t, Manifest)
	for _, ns := range []string{m.sa.Namespace, m.cm.Namespace, m.ds.Namespace} {
		if ns != Namespace {
			t.Errorf("namespace %q, want %s", ns, Namespace)
		}
	}
	if m.cm.Name != ConfigMapName || m.cm.Data["families"] != "dual" || m.cm.Data["routing"] != "direct" || m.cm.Data["network-policy"] != "true" {
		t.Errorf("ConfigMap %s: %v, want %s with families dual, routing direct, network-policy true", m.cm.Name, m.cm.Data, ConfigMapName)
	}
}

// The ClusterRole grants exactly what duetd's controllers need: no other
// verb, resource or group, no wildcard, no resource names or URLs.
func TestRBACLeastPrivilege(t *testing.T) {
	m := mustDecode(t, Manifest)
	want := map[string]bool{}
	for _, g := range []struct{ group, resource, verbs string }{
		{"", "nodes", "get list watch"},
		{"", "pods", "list watch"},
		{"", "namespaces", "list watch"},
		{"networking.k8s.io", "networkpolicies", "list watch"},
		{"", "events", "create patch"},
		{"events.k8s.io", "events", "create patch"},
	} {
		for _, v := range strings.Fields(g.verbs) {
			want[g.group+"/"+g.resource+":"+v] = true
		}
	}
	got := map[string]bool{}
	for _, r := range m.role.Rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("rule %v: no nonResourceURLs or resourceNames expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" || strings.Contains(res, "/") {
						t.Errorf("rule %v: wildcard or subresource", r)
					}
					got[g+"/"+res+":"+v] = true
				}
			}
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("ClusterRole grants %s, which duetd does not need", k)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("ClusterRole lacks %s", k)
		}
	}
	b := m.binding
	if b.RoleRef.APIGroup != rbacv1.GroupName || b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != m.role.Name {
		t.Errorf("binding's roleRef %+v, want ClusterRole %s", b.RoleRef, m.role.Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.ServiceAccountKind || b.Subjects[0].Name != m.sa.Name || b.Subjects[0].Namespace != m.sa.Namespace {
		t.Errorf("binding's subjects %+v, want only ServiceAccount %s/%s", b.Subjects, m.sa.Namespace, m.sa.Name)
	}
	if sa := m.ds.Spec.Template.Spec.ServiceAccountName; sa != m.sa.Name {
		t.Errorf("DaemonSet runs as %q, want %s", sa, m.sa.Name)
	}
}

func TestDaemonSetScheduling(t *testing.T) {
	m := mustDecode(t, Manifest)
	ds := m.ds
	spec := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %q; want true, ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g > 30 {
		t.Errorf("terminationGracePeriodSeconds %v, want set and small", g)
	}
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("updateStrategy %+v, want RollingUpdate maxUnavailable 1", u)
	}
	// Every taint a node may carry, especially those of a node without a
	// CNI yet, and ones nobody has invented.
	for _, taint := range []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/network-unavailable", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: corev1.TaintEffectNoSchedule},
		{Key: "example.com/anything", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule},
	} {
		ok := false
		for _, tol := range spec.Tolerations {
			ok = ok || tol.ToleratesTaint(logr.Discard(), &taint, false)
		}
		if !ok {
			t.Errorf("no toleration for taint %s", taint.ToString())
		}
	}
	for _, c := range m.allContainers() {
		if c.Image != "docker.io/duetnet/duet:dev" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("container %s: image %s, pull %s", c.Name, c.Image, c.ImagePullPolicy)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("container %s: no cpu and memory requests", c.Name)
		}
	}
}

func TestAgentContainer(t *testing.T) {
	m := mustDecode(t, Manifest)
	c := m.container(t, AgentContainer)
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("duetd is not privileged")
	}
	for _, a := range []string{"--kubernetes", "--families=$(DUET_FAMILIES)", "--routing=$(DUET_ROUTING)", "--network-policy=$(DUET_NETWORK_POLICY)", "--node-name=$(NODE_NAME)"} {
		found := false
		for _, b := range c.Args {
			found = found || a == b
		}
		if !found {
			t.Errorf("args %q lack %s", c.Args, a)
		}
	}
	// Every $(VAR) in the args is defined; ConfigMap references name keys
	// the ConfigMap has.
	for _, a := range c.Args {
		expand(t, *c, a, "node1")
	}
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.ConfigMapKeyRef != nil {
			if r.ConfigMapKeyRef.Name != m.cm.Name {
				t.Errorf("env %s from ConfigMap %s, want %s", e.Name, r.ConfigMapKeyRef.Name, m.cm.Name)
			} else if _, ok := m.cm.Data[r.ConfigMapKeyRef.Key]; !ok {
				t.Errorf("env %s from key %s, which %s lacks", e.Name, r.ConfigMapKeyRef.Key, m.cm.Name)
			}
		}
	}
	// The probes ask the address duetd serves, on the host's namespace.
	httpAddr, ok := flagValue(c.Args, "--http")
	if !ok {
		httpAddr = "127.0.0.1:9641"
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: not an httpGet", name)
			continue
		}
		g := p.HTTPGet
		// Readiness also says whether NetworkPolicy is enforced.
		path := "/healthz"
		if name == "readiness" {
			path = "/readyz"
		}
		if g.Host != "127.0.0.1" || g.Port.IntValue() != 9641 || g.Path != path || httpAddr != g.Host+":"+g.Port.String() {
			t.Errorf("%s probe %s:%s%s, want 127.0.0.1:9641%s, where --http=%s serves", name, g.Host, g.Port.String(), g.Path, path, httpAddr)
		}
	}
}

// The paths duetd uses inside its container are the same on the host: the
// conflist's datastore path (--cni-datastore-path defaults to
// --datastore-path) is read by the plugin on the host, and duetctl on the
// host finds the socket where duetd made it.
func TestHostPaths(t *testing.T) {
	m := mustDecode(t, Manifest)
	spec := m.ds.Spec.Template.Spec
	hostPaths := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
			continue
		}
		hostPaths[v.HostPath.Path] = true
	}
	for _, p := range []string{"/etc/cni/net.d", "/opt/cni/bin", "/var/lib/duet", "/run/duet"} {
		if !hostPaths[p] {
			t.Errorf("no hostPath volume %s", p)
		}
		delete(hostPaths, p)
	}
	for p := range hostPaths {
		t.Errorf("unexpected hostPath volume %s", p)
	}
	c := m.container(t, AgentContainer)
	for flag, def := range map[string]string{"--cni-conf-dir": "/etc/cni/net.d", "--datastore-path": defaultDatastore, "--socket": "/run/duet/duetd.sock"} {
		p, ok := flagValue(c.Args, flag)
		if !ok {
			p = def
		}
		if h := hostPathOf(t, spec, *c, p, "node1"); h != p {
			t.Errorf("%s %s is %s on the host", flag, p, h)
		}
	}
	if _, ok := flagValue(c.Args, cniDatastoreFlag); ok {
		t.Errorf("%s set: on a real host it must default to --datastore-path", cniDatastoreFlag)
	}
	// The init container copies into the host's /opt/cni/bin.
	ic := m.container(t, "install-cni")
	if len(ic.Command) < 2 || path.Base(ic.Command[0]) != "duetctl" || ic.Command[1] != "install-cni" {
		t.Fatalf("install-cni runs %q", ic.Command)
	}
	if from, _ := flagValue(ic.Command, "--from"); from != "/opt/duet/cni" {
		t.Errorf("--from %q, want the image's /opt/duet/cni", from)
	}
	to, _ := flagValue(ic.Command, "--to")
	if h := hostPathOf(t, spec, *ic, to, "node1"); h != "/opt/cni/bin" {
		t.Errorf("install-cni --to %s is %s on the host, want /opt/cni/bin", to, h)
	}
}
