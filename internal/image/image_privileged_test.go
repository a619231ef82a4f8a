// Privileged tests: they import tarballs into a private containerd (its
// own root, state and socket in a temporary directory, killed afterwards)
// and into the host's Docker, and run containers from them. Run as root:
//
//	go test ./internal/image/
//
// Without root they skip, or fail when CI is set. The lab images' test
// also needs the upstream binaries (bash hack/kube/build.sh; DUET_KUBE_BIN
// overrides where to find them) and skips without them.
package image

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// requireCommand skips without a command on PATH, or fails in CI.
func requireCommand(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI is set, so this is a failure, not a skip)", name)
	}
	t.Skipf("%s is not installed", name)
}

// containerd is a private containerd for one test.
type containerd struct {
	t    *testing.T
	sock string
}

// startContainerd runs containerd with a minimal config of its own, with
// CRI off (importing and running need only the content store, the
// snapshotter and runc), and stops it when the test ends.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	requireCommand(t, "containerd")
	requireCommand(t, "ctr")
	// Not t.TempDir: a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "duet-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{t: t, sock: filepath.Join(dir, "containerd.sock")}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt")), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(log.Name())
			t.Logf("containerd's log:\n%s", raw)
		}
		// Snapshots are overlay mounts only while a container runs, and
		// every container here is --rm, so the tree removes as files.
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing containerd's directory: %v", err)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := c.ctr("version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(log.Name())
			t.Fatalf("containerd did not answer on %s in 20 s:\n%s", c.sock, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctr runs ctr against the private containerd, in the k8s.io namespace
// the kubelet's CRI uses.
func (c *containerd) ctr(args ...string) (string, error) {
	out, err := exec.Command("ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *containerd) mustCtr(args ...string) string {
	c.t.Helper()
	out, err := c.ctr(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// run runs a throwaway container from ref in the host's network
// namespace (a fresh one would have lo down) and returns its output.
func (c *containerd) run(ref string, argv ...string) string {
	c.t.Helper()
	id := fmt.Sprintf("duet-test-%08x", rand.Uint32())
	return c.mustCtr(append([]string{"run", "--rm", "--net-host", ref, id}, argv...)...)
}

// runnable is an image that runs: the host's dash as /bin/sh (so
// HostBinary's libraries and loader are tested too), a file, and a big
// file in a layer of its own.
func runnable(t *testing.T, refs ...string) Spec {
	t.Helper()
	sh, err := HostBinary("/usr/bin/dash", "/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, bigFile), 0o644); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Refs:  refs,
		Files: append(sh, File{Path: "/hello", Data: []byte("hello from duet\n")}, File{Path: "/data/big", Src: big}),
		// dash's builtins only: the image has no cat.
		Cmd: []string{"/bin/sh", "-c", `while read -r l; do echo "$l"; done </hello`},
	}
}

func TestCtrImportsAndRuns(t *testing.T) {
	kerneltest.RequireRoot(t)
	c := startContainerd(t)
	refs := []string{"registry.example/duet-test/runnable:1", "docker.io/duet-test/runnable:latest"}
	file := filepath.Join(t.TempDir(), "images.tar")
	if err := Write(file, runnable(t, refs...)); err != nil {
		t.Fatal(err)
	}
	c.mustCtr("images", "import", file)
	ls := c.mustCtr("images", "ls", "-q")
	for _, r := range refs {
		if !strings.Contains(ls, r+"\n") {
			t.Errorf("ctr images ls has no %s:\n%s", r, ls)
		}
	}
	if out := c.run(refs[0]); out != "hello from duet\n" {
		t.Errorf("running %s printed %q", refs[0], out)
	}
	if out := c.run(refs[1], "/bin/sh", "-c", "test -s /data/big && echo big"); out != "big\n" {
		t.Errorf("the big file's layer: %q", out)
	}
	// Importing the same tarball again is a no-op, as a lab re-run does.
	c.mustCtr("images", "import", file)
}

func TestDockerLoadsAndRuns(t *testing.T) {
	kerneltest.RequireRoot(t)
	requireCommand(t, "docker")
	tag := fmt.Sprintf("%08x", rand.Uint32())
	refs := []string{"registry.example/duet-test/runnable:" + tag, "docker.io/duet-test/runnable:" + tag}
	file := filepath.Join(t.TempDir(), "images.tar")
	if err := Write(file, runnable(t, refs...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", append([]string{"image", "rm"}, refs...)...).CombinedOutput(); err != nil {
			t.Errorf("docker image rm: %v: %s", err, out)
		}
	})
	out := kerneltest.Run(t, "docker", "load", "-i", file)
	for _, r := range []string{refs[0], "duet-test/runnable:" + tag} { // Docker shortens docker.io names
		if !strings.Contains(out, "Loaded image: "+r+"\n") {
			t.Errorf("docker load did not load %s:\n%s", r, out)
		}
	}
	if out := kerneltest.Run(t, "docker", "run", "--rm", "--network", "none", refs[1]); out != "hello from duet\n" {
		t.Errorf("docker run %s printed %q", refs[1], out)
	}
}

// kubeBin finds the upstream binaries hack/kube/build.sh made.
func kubeBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DUET_KUBE_BIN")
	if dir == "" {
		dir = filepath.Join("/var/cache/duet/kube", kubeMod(t, "k8s.io/kubernetes"), "bin")
	}
	for _, b := range []string{"agnhost", "coredns"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("%s/%s is missing: run `bash hack/kube/build.sh` (or set DUET_KUBE_BIN)", dir, b)
		}
	}
	return dir
}

// TestLabImagesRun imports the lab's images and runs in each what the
// e2e specs run there.
func TestLabImagesRun(t *testing.T) {
	kerneltest.RequireRoot(t)
	k8s := kubeBin(t)
	duet := t.TempDir()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go") // the toolchain running this test
	}
	kerneltest.Run(t, gobin, "build", "-o", duet, "../../cmd/duet-pause")
	// Stand-ins for the rest of duet's binaries: the test runs nft from
	// duet's image, not duetd.
	for _, b := range []string{"duetd", "duetctl", "duet", "duet-ipam", "portmap", "loopback"} {
		if err := os.WriteFile(filepath.Join(duet, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := Lab(k8s, duet)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Duet(duet, DuetRef)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "lab.tar")
	if err := Write(file, append(specs, d)...); err != nil {
		t.Fatal(err)
	}
	c := startContainerd(t)
	c.mustCtr("images", "import", file)

	port := 20000 + rand.IntN(20000)
	agnhost := c.run(AgnhostRef, "/bin/sh", "-c", fmt.Sprintf(`set -e
/agnhost --help >/dev/null; /agnhost-2 --help >/dev/null; /coredns -version
curl --version | head -1
wget --version | head -1
dig -v 2>&1
nslookup -version 2>&1
getent hosts localhost | head -1
seq 1 3 | tr '\n' ' '; echo
timeout 5 sleep 0.1
test -s /localhost.crt && test -s /localhost.key && test -d /uploads
# OpenBSD nc over UDP, as the hostPort and service specs use it.
nc -u -l 127.0.0.1 %[1]d > /tmp/got & sleep 0.3
echo hostname | nc -u -w 1 127.0.0.1 %[1]d
sleep 0.3; kill $! 2>/dev/null || true
grep -q hostname /tmp/got && echo udp-ok`, port))
	t.Logf("agnhost:\n%s", agnhost)
	for _, want := range []string{"curl ", "Wget", "DiG", "localhost", "1 2 3", "udp-ok", "CoreDNS-"} {
		if !strings.Contains(agnhost, want) {
			t.Errorf("agnhost's tools: no %q in the output", want)
		}
	}
	if out := c.run(BusyBoxRef, "sh", "-c", "nc --help 2>&1 | head -1; wget --help 2>&1 | head -1; nslookup 2>&1 | head -1; echo ok"); !strings.Contains(out, "BusyBox") || !strings.HasSuffix(out, "ok\n") {
		t.Errorf("busybox image: %q", out)
	}
	if out := c.run(GlibcDNSTestingRef, "sh", "-c", "dig -v 2>&1 && getent hosts localhost"); !strings.Contains(out, "DiG") {
		t.Errorf("glibc-dns-testing image: %q", out)
	}
	if out := c.run(CoreDNSRef, "/coredns", "-version"); !strings.Contains(out, "CoreDNS-") {
		t.Errorf("coredns image: %q", out)
	}
	if out := c.run(DuetRef, "/usr/sbin/nft", "--version"); !strings.Contains(out, "nftables") {
		t.Errorf("duet image's nft: %q", out)
	}
	ls := c.mustCtr("images", "ls", "-q")
	for _, r := range pauseRefs {
		if !strings.Contains(ls, r+"\n") {
			t.Errorf("no %s after import", r)
		}
	}
	// pause stops with 0 on SIGTERM, as the runtime asks it to.
	id := fmt.Sprintf("duet-test-pause-%08x", rand.Uint32())
	cmd := exec.Command("ctr", "--address", c.sock, "--namespace", "k8s.io", "run", "--rm", PauseRef, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		out, _ := c.ctr("task", "ls")
		if strings.Contains(out, id) && strings.Contains(out, "RUNNING") {
			break
		}
		if i == 100 {
			t.Fatalf("pause never ran:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.mustCtr("task", "kill", "--signal", "SIGTERM", id)
	if err := cmd.Wait(); err != nil {
		t.Errorf("pause after SIGTERM: %v, want exit status 0", err)
	}
}
