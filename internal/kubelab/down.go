package kubelab

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duetnet/duet/internal/lab"
)

// Down removes what a kube lab made beyond the plain lab: every kubelet,
// kube-proxy and containerd with their shims and containers (found by
// their cgroups, so none survives its containerd), the pods' network
// namespaces, every mount under the lab's directory, the node cgroups,
// the control plane and the host link. lab.Down then removes the
// namespaces and the data directory. It works after an interrupted up.
func Down(s lab.State, out io.Writer) error {
	k := s.Kubernetes
	if k == nil {
		return nil
	}
	p := paths{root: k.Root}
	var errs []string
	byPrefix := func(prefix string) []int {
		var pids []int
		for name, pid := range k.Procs {
			if strings.HasPrefix(name, prefix) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	for _, prefix := range []string{"kube-proxy-", "kubelet-"} {
		for _, pid := range byPrefix(prefix) {
			stop(pid, 5*time.Second)
		}
	}
	// The pods' namespaces, as each containerd knows them, before it goes.
	var podNetns []string
	for _, n := range s.Nodes {
		for _, sb := range sandboxes(filepath.Join(p.nodeDir(n.Name), "containerd", "containerd.sock")) {
			podNetns = append(podNetns, sb.netns)
		}
	}
	for _, pid := range byPrefix("containerd-") {
		stop(pid, 5*time.Second)
	}
	for _, n := range s.Nodes {
		killCgroup(cgroupRoot(n.Name))
	}
	// Shims outlive their containerd, outside the node's cgroup; each
	// names its containerd's socket, under the lab's directory.
	killByCmdline("containerd-shim", "-address "+k.Root+"/")
	for _, name := range []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		if pid, ok := k.Procs[name]; ok {
			stop(pid, 5*time.Second)
			fmt.Fprintf(out, "stopped %s\n", name)
		}
	}
	for _, m := range podNetns {
		if strings.HasPrefix(m, "/run/netns/") || strings.HasPrefix(m, "/var/run/netns/") {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
			_ = os.Remove(m)
		}
	}
	if n := unmountUnder(k.Root); n > 0 {
		fmt.Fprintf(out, "unmounted %d mounts under %s\n", n, k.Root)
	}
	for _, n := range s.Nodes {
		if err := removeCgroup(cgroupRoot(n.Name)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	_, _ = run("", "ip", "link", "del", hostLinkName)
	if len(errs) > 0 {
		return fmt.Errorf("kube lab down left something behind: %s", strings.Join(errs, "; "))
	}
	return nil
}

type sandbox struct{ pod, namespace, netns string }

// sandboxes lists a containerd's pod sandboxes with their network
// namespace paths (ctr containers info: Spec.linux.namespaces).
func sandboxes(sock string) []sandbox {
	if _, err := os.Stat(sock); err != nil {
		return nil
	}
	ctr := func(args ...string) (string, error) {
		return run("", append([]string{"timeout", "10", "ctr", "--address", sock, "-n", "k8s.io"}, args...)...)
	}
	ids, err := ctr("containers", "ls", "-q", `labels."io.cri-containerd.kind"==sandbox`)
	if err != nil {
		return nil
	}
	var out []sandbox
	for _, id := range strings.Fields(ids) {
		raw, err := ctr("containers", "info", id)
		if err != nil {
			continue
		}
		var info struct {
			Labels map[string]string `json:"Labels"`
			Spec   struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"Spec"`
		}
		if json.Unmarshal([]byte(raw), &info) != nil {
			continue
		}
		for _, ns := range info.Spec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				out = append(out, sandbox{info.Labels["io.kubernetes.pod.name"], info.Labels["io.kubernetes.pod.namespace"], ns.Path})
			}
		}
	}
	return out
}

// killByCmdline SIGKILLs every process whose command line contains all
// of the given strings.
func killByCmdline(parts ...string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(raw), "\x00", " ")
		all := true
		for _, p := range parts {
			all = all && strings.Contains(cmd, p)
		}
		if all {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// cgroupDirs lists a cgroup's directories in every hierarchy, deepest
// first.
func cgroupDirs(root string) []string {
	var dirs []string
	hs, _ := cgroupHierarchies()
	for _, h := range hs {
		_ = filepath.WalkDir(filepath.Join(h, root), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// killCgroup SIGKILLs every process in the cgroup and below: containers
// whose shim died would otherwise live on.
func killCgroup(root string) {
	for round := 0; round < 20; round++ {
		any := false
		for _, d := range cgroupDirs(root) {
			raw, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					any = true
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if !any {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func removeCgroup(root string) error {
	var last error
	for round := 0; round < 20; round++ {
		last = nil
		for _, d := range cgroupDirs(root) {
			if err := syscall.Rmdir(d); err != nil && !os.IsNotExist(err) {
				last = fmt.Errorf("cgroup %s: %v", d, err)
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// unmountUnder lazily unmounts every mount point below dir, deepest
// first (kubelet volumes, container root filesystems, shm).
func unmountUnder(dir string) int {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return 0
	}
	var ms []string
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			ms = append(ms, f[1])
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	n := 0
	for _, m := range ms {
		if syscall.Unmount(m, syscall.MNT_DETACH) == nil {
			n++
		}
	}
	return n
}
