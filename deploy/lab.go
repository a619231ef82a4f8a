package deploy

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// LabOptions say how Lab rewrites the manifest for the kube lab.
type LabOptions struct {
	// Image replaces the manifest's image; it must already be in every
	// node's runtime (Lab sets imagePullPolicy Never).
	Image string
	// HostRoot is the lab's data directory, an absolute path. What one
	// host would own alone is under HostRoot/nodes/NODE: net.d (the CNI
	// config dir), lib (duet's bolt file) and run (duetd's socket).
	HostRoot string
	// CNIBinDir is the plugin directory every node's runtime uses, shared
	// by all nodes, an absolute path.
	CNIBinDir string
	// Families (dual, ipv6, ipv4) and Routing (direct, vxlan, bgp) go into
	// the ConfigMap; empty keeps the manifest's.
	Families string
	Routing  string
	// NetworkPolicy, when set, goes into the ConfigMap's network-policy
	// ("true" or "false"); nil keeps the manifest's.
	NetworkPolicy *bool
}

// perNode maps the manifest's per-host directories to their
// subdirectory of HostRoot/nodes/NODE in the lab.
var perNode = map[string]string{
	"/etc/cni/net.d": "net.d",
	"/var/lib/duet":  "lib",
	"/run/duet":      "run",
}

const (
	cniBinHostPath     = "/opt/cni/bin"
	defaultDatastore   = "/var/lib/duet/duet.db" // duetd's --datastore-path default
	nodeNameEnv        = "NODE_NAME"
	datastoreFlag      = "--datastore-path"
	cniDatastoreFlag   = "--cni-datastore-path"
	nodeNameFieldPath  = "spec.nodeName"
	labImagePullPolicy = corev1.PullNever
)

func (o LabOptions) validate() error {
	switch {
	case o.Image == "":
		return fmt.Errorf("LabOptions.Image is empty: name the image loaded into the nodes' runtimes")
	case !path.IsAbs(o.HostRoot) || strings.Contains(o.HostRoot, "$"):
		return fmt.Errorf("LabOptions.HostRoot %q: use an absolute path without '$' (the lab's data directory)", o.HostRoot)
	case !path.IsAbs(o.CNIBinDir) || strings.Contains(o.CNIBinDir, "$"):
		return fmt.Errorf("LabOptions.CNIBinDir %q: use an absolute path without '$' (the nodes' shared CNI plugin directory)", o.CNIBinDir)
	case o.Families != "" && o.Families != "dual" && o.Families != "ipv6" && o.Families != "ipv4":
		return fmt.Errorf("LabOptions.Families %q: use dual, ipv6 or ipv4", o.Families)
	case o.Routing != "" && o.Routing != "direct" && o.Routing != "vxlan" && o.Routing != "bgp":
		return fmt.Errorf("LabOptions.Routing %q: use direct, vxlan or bgp", o.Routing)
	}
	return nil
}

// Lab returns Manifest rewritten for duet's kube lab, whose nodes are
// network namespaces sharing one host's file system. The DaemonSet stays
// one object; it changes only:
//   - every container's image to o.Image, with imagePullPolicy Never;
//   - the ConfigMap's families, routing and network-policy;
//   - the per-host hostPath volumes (/etc/cni/net.d, /var/lib/duet,
//     /run/duet), which become HostRoot/nodes mounted with subPathExpr
//     $(NODE_NAME)/net.d, /lib and /run, so each node has its own conf
//     dir, bolt file and socket (containers mounting them get NODE_NAME
//     from the downward API if they lack it: subPathExpr expands the
//     container's own env);
//   - the /opt/cni/bin volume, which becomes o.CNIBinDir, shared;
//   - duetd's --cni-datastore-path, set to the bolt file as the plugin on
//     the host sees it: HostRoot/nodes/$(NODE_NAME)/lib/duet.db.
//
// A hostPath volume Lab does not know is an error, so a volume added to
// the manifest later is never silently shared between nodes.
func Lab(o LabOptions) ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.HostRoot, o.CNIBinDir = path.Clean(o.HostRoot), path.Clean(o.CNIBinDir)
	objs, err := decode(Manifest)
	if err != nil {
		return nil, fmt.Errorf("deploy/duet.yaml: %w", err)
	}
	var cm *corev1.ConfigMap
	var ds *appsv1.DaemonSet
	for _, obj := range objs {
		switch obj := obj.(type) {
		case *corev1.ConfigMap:
			if obj.Name == ConfigMapName {
				cm = obj
			}
		case *appsv1.DaemonSet:
			if obj.Name == DaemonSetName {
				ds = obj
			}
		}
	}
	if cm == nil || ds == nil {
		return nil, fmt.Errorf("deploy/duet.yaml: no ConfigMap %s or DaemonSet %s", ConfigMapName, DaemonSetName)
	}
	if o.Families != "" {
		cm.Data["families"] = o.Families
	}
	if o.Routing != "" {
		cm.Data["routing"] = o.Routing
	}
	if o.NetworkPolicy != nil {
		cm.Data["network-policy"] = fmt.Sprint(*o.NetworkPolicy)
	}
	if err := labPodSpec(&ds.Spec.Template.Spec, o); err != nil {
		return nil, fmt.Errorf("deploy/duet.yaml: DaemonSet %s: %w", ds.Name, err)
	}
	return encode(objs)
}

// labPodSpec makes the DaemonSet's pod spec's changes described at Lab.
func labPodSpec(spec *corev1.PodSpec, o LabOptions) error {
	sub := map[string]string{} // per-node volume name -> its subdirectory
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.HostPath == nil {
			continue
		}
		if s, ok := perNode[v.HostPath.Path]; ok {
			sub[v.Name] = s
			v.HostPath.Path = path.Join(o.HostRoot, "nodes")
		} else if v.HostPath.Path == cniBinHostPath {
			v.HostPath.Path = o.CNIBinDir
		} else {
			return fmt.Errorf("volume %s: hostPath %s is neither per node nor shared in the lab (add it to deploy.perNode, or share it in Lab)", v.Name, v.HostPath.Path)
		}
		dirOrCreate := corev1.HostPathDirectoryOrCreate
		v.HostPath.Type = &dirOrCreate
	}
	all := []*corev1.Container{}
	for i := range spec.InitContainers {
		all = append(all, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		all = append(all, &spec.Containers[i])
	}
	agent := false
	for _, c := range all {
		c.Image, c.ImagePullPolicy = o.Image, labImagePullPolicy
		if err := labMounts(c, sub); err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		if c.Name == AgentContainer {
			agent = true
			if err := labDatastoreArg(c, sub, o.HostRoot); err != nil {
				return fmt.Errorf("container %s: %w", c.Name, err)
			}
		}
	}
	if !agent {
		return fmt.Errorf("no container %s", AgentContainer)
	}
	return nil
}

// labMounts mounts c's per-node volumes at $(NODE_NAME)/SUB and makes sure
// c has NODE_NAME for the kubelet to expand.
func labMounts(c *corev1.Container, sub map[string]string) error {
	uses := false
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		s, ok := sub[m.Name]
		if !ok {
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			return fmt.Errorf("volume mount %s already has a subPath; Lab cannot make it per node", m.Name)
		}
		m.SubPathExpr = "$(" + nodeNameEnv + ")/" + s
		uses = true
	}
	if !uses {
		return nil
	}
	for _, e := range c.Env {
		if e.Name != nodeNameEnv {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != nodeNameFieldPath {
			return fmt.Errorf("env %s is not from the downward API's %s", nodeNameEnv, nodeNameFieldPath)
		}
		return nil
	}
	// First, so that later variables may refer to it too.
	c.Env = append([]corev1.EnvVar{{
		Name:      nodeNameEnv,
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: nodeNameFieldPath}},
	}}, c.Env...)
	return nil
}

// labDatastoreArg sets duetd's --cni-datastore-path to its --datastore-path
// as the host sees it: the per-node mount holding the file, under
// HostRoot/nodes/$(NODE_NAME).
func labDatastoreArg(c *corev1.Container, sub map[string]string, hostRoot string) error {
	db := defaultDatastore
	var args []string
	for _, a := range c.Args {
		switch {
		case a == datastoreFlag || a == cniDatastoreFlag:
			return fmt.Errorf("arg %s: write it as %s=PATH, which Lab can read", a, a)
		case strings.HasPrefix(a, datastoreFlag+"="):
			db = strings.TrimPrefix(a, datastoreFlag+"=")
		case strings.HasPrefix(a, cniDatastoreFlag+"="):
			continue // replaced below
		}
		args = append(args, a)
	}
	for _, m := range c.VolumeMounts {
		s, ok := sub[m.Name]
		if !ok || !strings.HasPrefix(db, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		rel := strings.TrimPrefix(db, strings.TrimSuffix(m.MountPath, "/")+"/")
		host := path.Join(hostRoot, "nodes", "$("+nodeNameEnv+")", s, rel)
		c.Args = append(args, cniDatastoreFlag+"="+host)
		return nil
	}
	return fmt.Errorf("%s %s is on no per-node volume: the plugin on the host could not find it", datastoreFlag, db)
}
