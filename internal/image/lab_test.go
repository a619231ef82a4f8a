package image

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// kubeMod reads a module's version from hack/kube/go.mod, the pin of the
// upstream build the lab runs.
func kubeMod(t *testing.T, module string) string {
	t.Helper()
	raw, err := os.ReadFile("../../hack/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	t.Fatalf("hack/kube/go.mod does not require %s", module)
	return ""
}

// upstreamManifest returns image names by manifest.go's ImageID, from the
// copy of the pinned k8s.io/kubernetes in hack/kube's module cache.
func upstreamManifest(t *testing.T) map[string]string {
	t.Helper()
	cache := os.Getenv("DUET_KUBE_CACHE")
	if cache == "" {
		cache = "/var/cache/duet/kube"
	}
	file := filepath.Join(cache, "gomod", "k8s.io", "kubernetes@"+kubeMod(t, "k8s.io/kubernetes"), "test", "utils", "image", "manifest.go")
	raw, err := os.ReadFile(file)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v: run `bash hack/kube/build.sh` first (it downloads the module)", err)
		}
		t.Skipf("%v: run `bash hack/kube/build.sh` to download the upstream module", err)
	}
	src := string(raw)
	registries := map[string]string{} // GcRegistry -> registry.k8s.io
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+Registry):\s*"([^"]+)"`).FindAllStringSubmatch(src, -1) {
		registries[m[1]] = m[2]
	}
	images := map[string]string{}
	for _, m := range regexp.MustCompile(`configs\[(\w+)\] = Config\{list\.(\w+), "([^"]+)", "([^"]+)"\}`).FindAllStringSubmatch(src, -1) {
		reg, ok := registries[m[2]]
		if !ok {
			t.Fatalf("manifest.go: %s uses registry %s, which initRegistry does not set", m[1], m[2])
		}
		images[m[1]] = reg + "/" + m[3] + ":" + m[4]
	}
	if len(images) < 10 {
		t.Fatalf("parsed only %d images from %s: has its format changed?", len(images), file)
	}
	return images
}

// TestLabRefsAreUpstreams checks that each lab image is named as the
// pinned e2e.test will ask for it; a Kubernetes bump that changes a tag
// fails here rather than as ErrImageNeverPull in the lab.
func TestLabRefsAreUpstreams(t *testing.T) {
	up := upstreamManifest(t)
	for id, ref := range map[string]string{
		"Agnhost":         AgnhostRef,
		"AgnhostPrev":     AgnhostPrevRef,
		"BusyBox":         BusyBoxRef,
		"GlibcDnsTesting": GlibcDNSTestingRef,
		"Pause":           PauseRef,
	} {
		if up[id] != ref {
			t.Errorf("%s: upstream names %q, we %q", id, up[id], ref)
		}
	}
	if pauseRefs[0] != PauseRef {
		t.Errorf("pauseRefs start with %s, want PauseRef", pauseRefs[0])
	}
}

func TestCoreDNSRefIsTheBuiltVersion(t *testing.T) {
	v := kubeMod(t, "github.com/coredns/coredns")
	if want := "registry.k8s.io/coredns/coredns:" + v; CoreDNSRef != want {
		t.Errorf("CoreDNSRef = %s, but hack/kube builds CoreDNS %s: want %s", CoreDNSRef, v, want)
	}
}

func TestLabNamesTheBuildOfMissingBinaries(t *testing.T) {
	_, err := Lab(t.TempDir(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "agnhost") || !strings.Contains(err.Error(), "hack/kube/build.sh") {
		t.Errorf("Lab without binaries: %v; want an error naming agnhost and hack/kube/build.sh", err)
	}
	_, err = Duet(t.TempDir(), DuetRef)
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Duet without binaries: %v; want an error naming make build", err)
	}
}

// TestLabAgnhostTools builds the lab's specs from stand-in upstream
// binaries and the host's tools, and checks what agnhost carries.
func TestLabAgnhostTools(t *testing.T) {
	for _, tool := range append(agnhostTools, hostTool{"/usr/bin/busybox", "", "busybox"}) {
		if _, err := os.Stat(tool.src); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: %s", tool.src, toolPackages)
			}
			t.Skipf("%s is missing: %s", tool.src, toolPackages)
		}
	}
	kube, duet := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(kube, "agnhost"), filepath.Join(kube, "coredns"), filepath.Join(duet, "duet-pause")} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := Lab(kube, duet)
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]Spec{}
	for _, s := range specs {
		for _, r := range s.Refs {
			byRef[r] = s
		}
	}
	for _, r := range append(slices.Clone(pauseRefs), AgnhostRef, AgnhostPrevRef, BusyBoxRef, GlibcDNSTestingRef, CoreDNSRef) {
		if _, ok := byRef[r]; !ok {
			t.Errorf("no image named %s", r)
		}
	}
	files := func(s Spec) map[string]File {
		m := map[string]File{}
		for _, f := range s.Files {
			m[f.Path] = f // later wins, as in the image
		}
		return m
	}
	ag := files(byRef[AgnhostRef])
	for _, p := range []string{"/agnhost", "/coredns", "/localhost.crt", "/localhost.key", "/usr/bin/curl", "/usr/bin/nc", "/usr/bin/wget", "/usr/bin/dig", "/usr/bin/nslookup", "/usr/bin/getent", "/bin/seq", "/bin/sleep", "/bin/busybox", "/lib64/ld-linux-x86-64.so.2"} {
		if _, ok := ag[p]; !ok {
			t.Errorf("agnhost has no %s", p)
		}
	}
	if ag["/bin/sh"].Link != "dash" {
		t.Errorf("agnhost /bin/sh = %+v, want a link to dash", ag["/bin/sh"])
	}
	// The real tools must be the only ones by their names: a busybox
	// /bin/nc would answer `nc -u` differently from OpenBSD's.
	for _, p := range []string{"/bin/nc", "/bin/wget", "/bin/nslookup"} {
		if f, ok := ag[p]; ok {
			t.Errorf("agnhost has %s (%+v) besides the real tool", p, f)
		}
	}
	if bb := files(byRef[BusyBoxRef]); bb["/bin/sh"].Link != "busybox" || bb["/bin/nc"].Link != "busybox" {
		t.Errorf("busybox image: /bin/sh %+v, /bin/nc %+v; want busybox's applets", bb["/bin/sh"], bb["/bin/nc"])
	}
}

func TestPorterCertIsStable(t *testing.T) {
	c1, k1, err := porterCert()
	if err != nil {
		t.Fatal(err)
	}
	c2, k2, _ := porterCert()
	if string(c1) != string(c2) || string(k1) != string(k2) {
		t.Error("the porter certificate differs between builds; agnhost's layer digest would too")
	}
	pair, err := tls.X509KeyPair(c1, k1)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c1)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("porter's certificate for %s: %v", host, err)
		}
	}
}
