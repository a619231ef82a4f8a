package image

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// The names the pinned upstream e2e.test (k8s.io/kubernetes v1.37.2, see
// hack/kube/go.mod) pulls, from its test/utils/image/manifest.go. The lab's
// nodes reach no registry, so each must be imported under exactly this
// name; lab_test.go checks them against the module cache's manifest.go.
const (
	AgnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	// AgnhostPrevRef is manifest.go's AgnhostPrev (StatefulSet fixtures);
	// the same image, since nothing in the lab's suites tells them apart.
	AgnhostPrevRef     = "registry.k8s.io/e2e-test-images/agnhost:2.55"
	BusyBoxRef         = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	GlibcDNSTestingRef = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	// PauseRef is manifest.go's Pause and the kubelet's and kubeadm's
	// default sandbox image (kubeadm's constants.PauseVersion).
	PauseRef = "registry.k8s.io/pause:3.10.2"
	// CoreDNSRef is the CoreDNS the lab runs: tagged with the version
	// hack/kube builds (github.com/coredns/coredns v1.15.0), not kubeadm's
	// default v1.14.6, so the name says what the binary is.
	CoreDNSRef = "registry.k8s.io/coredns/coredns:v1.15.0"
)

// pauseRefs are the pause tags a node may ask for: this release's, the
// two before it, and 3.6, which older containerd configs name.
var pauseRefs = []string{PauseRef, "registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.6"}

// Lab returns the images the Kubernetes lab and its upstream e2e.test need,
// built from the upstream binaries in k8sBinDir (hack/kube/build.sh's
// output: agnhost, coredns), duet's bin/ (duet-pause) and the host's own
// tools:
//
//   - pause, duet-pause as /pause, under every pauseRefs tag;
//   - agnhost, /agnhost with the shell and tools the e2e specs exec in
//     agnhost pods (see tools), porter's certificate, and /coredns;
//   - busybox, the e2e's: Debian's busybox with every applet in /bin;
//   - glibc-dns-testing, the DNS conformance specs' second querier: the
//     same tools as agnhost on glibc, which is what it tests;
//   - CoreDNS, /coredns alone.
//
// Nginx (Endpoints conformance) is not among them.
func Lab(k8sBinDir, duetBinDir string) ([]Spec, error) {
	agnhost, err := kubeBinary(k8sBinDir, "agnhost")
	if err != nil {
		return nil, err
	}
	coredns, err := kubeBinary(k8sBinDir, "coredns")
	if err != nil {
		return nil, err
	}
	pause, err := duetBinary(duetBinDir, "duet-pause")
	if err != nil {
		return nil, err
	}
	tools, err := tools()
	if err != nil {
		return nil, err
	}
	crt, key, err := porterCert()
	if err != nil {
		return nil, err
	}
	corednsFile := File{Path: "/coredns", Src: coredns, Mode: 0o755}

	agnhostFiles := append(base(), tools...)
	agnhostFiles = append(agnhostFiles,
		File{Path: "/agnhost", Src: agnhost, Mode: 0o755},
		File{Path: "/agnhost-2", Link: "agnhost"},
		File{Path: "/localhost.crt", Data: crt, Mode: 0o644},
		File{Path: "/localhost.key", Data: key, Mode: 0o600},
		File{Path: "/uploads", Mode: os.ModeDir | 0o755}, // netexec's /upload
		corednsFile, // dns.go's "configurable pod resolv.conf" runs /coredns from agnhost
	)

	bb, err := busybox()
	if err != nil {
		return nil, err
	}
	return []Spec{
		{Refs: pauseRefs, Files: []File{{Path: "/pause", Src: pause, Mode: 0o755}}, Entrypoint: []string{"/pause"}},
		{Refs: []string{AgnhostRef, AgnhostPrevRef}, Files: agnhostFiles, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, WorkDir: "/"},
		{Refs: []string{BusyBoxRef}, Files: append(base(), bb...), Cmd: []string{"sh"}},
		{Refs: []string{GlibcDNSTestingRef}, Files: append(base(), tools...), Cmd: []string{"sh"}},
		{Refs: []string{CoreDNSRef}, Files: []File{corednsFile}, Entrypoint: []string{"/coredns"}},
	}, nil
}

// kubeBinary finds an upstream binary, or says how to build it.
func kubeBinary(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: build the upstream binaries with `bash hack/kube/build.sh` (WHAT=%s for just this one); it prints their directory", p, name)
	}
	return p, nil
}

// base is what every lab image with a shell has: the users and groups
// upstream's agnhost defines (node e2e specs run as them), a /tmp, and an
// nsswitch.conf so getent and the resolver read /etc/hosts first, as the
// "/etc/hosts entries" conformance spec expects.
func base() []File {
	return []File{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
			"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\n" +
			"group-defined-in-image:x:50000:user-defined-in-image\n")},
		{Path: "/etc/nsswitch.conf", Data: []byte("passwd: files\ngroup: files\nhosts: files dns\n")},
		{Path: "/tmp", Mode: os.ModeDir | os.ModeSticky | 0o777},
		{Path: "/root", Mode: os.ModeDir | 0o700},
	}
}

// hostTool is a host binary an image carries, with the Debian package
// that installs it, for the error when it is missing.
type hostTool struct{ src, dst, pkg string }

// agnhostTools are the programs the e2e specs run inside agnhost pods
// (test/e2e/network, framework/network and framework/service of v1.37.2):
//
//   - sh: every exec is `/bin/sh -c ...`; dash, since a busybox ash would
//     run its own nc applet ahead of PATH when built standalone;
//   - curl: dual_stack.go's connectivity check, the services, hostport and
//     session-affinity specs, and the /dial probes;
//   - nc (OpenBSD's, as upstream's Alpine image has): `nc -u -w` for UDP
//     services and hostPorts, `nc -v -t -w 2` in the service jig;
//   - wget: `wget -T 5 -qO-` in the service specs;
//   - dig, nslookup, host: the DNS conformance probes and the jig's lookups;
//   - getent: `getent hosts` in the /etc/hosts conformance probe.
//
// Busybox supplies the rest (seq, test, sleep, echo, cat, tr, grep,
// timeout, hostname, ...), as on upstream's Alpine.
var agnhostTools = []hostTool{
	{"/usr/bin/dash", "/bin/dash", "dash"},
	{"/usr/bin/curl", "/usr/bin/curl", "curl"},
	{"/usr/bin/wget", "/usr/bin/wget", "wget"},
	{"/usr/bin/nc.openbsd", "/usr/bin/nc", "netcat-openbsd"},
	{"/usr/bin/dig", "/usr/bin/dig", "bind9-dnsutils"},
	{"/usr/bin/nslookup", "/usr/bin/nslookup", "bind9-dnsutils"},
	{"/usr/bin/host", "/usr/bin/host", "bind9-host"},
	{"/usr/bin/getent", "/usr/bin/getent", "libc-bin"},
}

// toolPackages is the command that installs every tool Lab takes from the
// host.
const toolPackages = "apt-get install busybox dash curl wget netcat-openbsd bind9-dnsutils"

// tools returns busybox with its applets in /bin, except those a real tool
// replaces, then the real tools, and /bin/sh pointing at dash.
func tools() ([]File, error) {
	real := map[string]bool{"sh": true}
	var files []File
	for _, t := range agnhostTools {
		real[path.Base(t.dst)] = true
		fs, err := HostBinary(t.src, t.dst)
		if err != nil {
			return nil, fmt.Errorf("%w (Debian package %s; all of them: %s)", err, t.pkg, toolPackages)
		}
		files = append(files, fs...)
	}
	bb, err := busybox(keys(real)...)
	if err != nil {
		return nil, err
	}
	return append(append(bb, files...), File{Path: "/bin/sh", Link: "dash"}), nil
}

// busybox returns the host's dynamic busybox at /bin/busybox and a /bin
// symlink for each of its applets but those in skip. The dynamic one,
// not busybox-static, whose shell runs its own applets before PATH.
func busybox(skip ...string) ([]File, error) {
	const src = "/usr/bin/busybox"
	files, err := HostBinary(src, "/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	out, err := exec.Command(src, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %v (is it busybox? apt-get install busybox-static)", src, err)
	}
	skipped := map[string]bool{"busybox": true}
	for _, s := range skip {
		skipped[s] = true
	}
	for _, a := range strings.Fields(string(out)) {
		if !skipped[a] && !strings.Contains(a, "/") {
			files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
		}
	}
	return files, nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
