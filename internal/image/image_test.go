package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd5a3f2000)
	libcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4 (0x00007f0b1c3a0000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0b1c1bf000)
	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f0b1c1a0000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0b1c1bf000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0b1c4a3000)
`
	got, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libcurl.so.4", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(got, want) {
		t.Errorf("parseLdd = %q, want %q", got, want)
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil || !strings.Contains(err.Error(), "libfoo.so.1") {
		t.Errorf("a missing library: err = %v, want one naming libfoo.so.1", err)
	}
	if got, _ := parseLdd("\tstatically linked\n"); len(got) != 0 {
		t.Errorf("static: %q, want none", got)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]string{
		"registry.k8s.io/pause:3.10.2":                    "registry.k8s.io/pause:3.10.2",
		"docker.io/duetnet/duet:dev":                      "docker.io/duetnet/duet:dev",
		"index.docker.io/library/busybox:1.37":            "docker.io/library/busybox:1.37",
		"registry.k8s.io/e2e-test-images/agnhost:2.66.1":  "registry.k8s.io/e2e-test-images/agnhost:2.66.1",
		"localhost:5000/e2e-test-images/busybox:1.37.0-2": "localhost:5000/e2e-test-images/busybox:1.37.0-2",
	} {
		r, err := parseRef(in)
		if err != nil || r.full != want {
			t.Errorf("parseRef(%q) = %q, %v; want %q", in, r.full, err, want)
		}
	}
	// Implicit registries or tags are completed differently by Docker and
	// by a lab that expects an exact name: refuse them.
	for _, in := range []string{"pause", "busybox:1.37", "docker.io/busybox:1.37", "registry.k8s.io/pause", "registry.k8s.io/pause@sha256:" + strings.Repeat("0", 64)} {
		if _, err := parseRef(in); err == nil {
			t.Errorf("parseRef(%q) succeeded; want an error asking for a full ref", in)
		}
	}
}

func TestEntriesLayers(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), bigFile), 0o755); err != nil {
		t.Fatal(err)
	}
	groups, err := entries([]File{
		{Path: "/usr/local/bin/big", Src: big},
		{Path: "/etc/hosts", Data: []byte("old")},
		{Path: "/etc/hosts", Data: []byte("new")}, // the later one wins
		{Path: "/bin/sh", Link: "dash"},
		{Path: "/tmp", Mode: os.ModeDir | os.ModeSticky | 0o777},
		{Path: "/usr/local", Mode: os.ModeDir | 0o700},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 {
		t.Fatalf("%d layers, want 2 (small files, then the big one)", len(groups))
	}
	names := func(es []entry) (out []string) {
		for _, e := range es {
			out = append(out, e.name)
		}
		return out
	}
	if got, want := names(groups[0]), []string{"bin", "bin/sh", "etc", "etc/hosts", "tmp", "usr", "usr/local", "usr/local/bin"}; !slices.Equal(got, want) {
		t.Errorf("first layer %q, want %q", got, want)
	}
	if got, want := names(groups[1]), []string{"usr", "usr/local", "usr/local/bin", "usr/local/bin/big"}; !slices.Equal(got, want) {
		t.Errorf("big layer %q, want %q", got, want)
	}
	// A directory's mode is the Spec's wherever it appears, so the big
	// layer does not reset /usr/local to 0755 over the first.
	for _, g := range groups {
		for _, e := range g {
			if e.name == "usr/local" && e.mode != 0o700 {
				t.Errorf("usr/local mode %o in a layer, want 700", e.mode)
			}
			if e.name == "etc/hosts" && string(e.data) != "new" {
				t.Errorf("etc/hosts = %q, want the later File's", e.data)
			}
			if e.name == "tmp" && e.mode != 0o1777 {
				t.Errorf("tmp mode %o, want 1777", e.mode)
			}
		}
	}
	if _, err := entries([]File{{Path: "/lib", Link: "usr/lib"}, {Path: "/lib/libc.so.6", Data: []byte{}}}); err == nil {
		t.Error("a file under a symlink was accepted")
	}
	for _, f := range []File{{Path: "relative", Data: []byte{}}, {Path: "/x"}, {Path: "/x", Data: []byte{}, Link: "y"}} {
		if _, err := entries([]File{f}); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

// testSpecs are two images sharing a big file, which the tarball must
// store once.
func testSpecs(t *testing.T) []Spec {
	t.Helper()
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("duet"), bigFile/2), 0o755); err != nil {
		t.Fatal(err)
	}
	return []Spec{
		{
			Refs: []string{"registry.example/duet/one:1", "registry.example/duet/one:latest"},
			Files: []File{
				{Path: "/hello", Data: []byte("hello\n")},
				{Path: "/bin/link", Link: "../hello"},
				{Path: "/big", Src: big},
			},
			Entrypoint: []string{"/big"}, Cmd: []string{"arg"}, Env: []string{"A=b"},
		},
		{Refs: []string{"docker.io/duet/two:2"}, Files: []File{{Path: "/big", Src: big}}},
	}
}

func TestWriteLoadsAsDockerArchiveAndOCILayout(t *testing.T) {
	specs := testSpecs(t)
	out := filepath.Join(t.TempDir(), "images.tar")
	if err := Write(out, specs...); err != nil {
		t.Fatal(err)
	}
	// The docker-archive side, as go-containerregistry (and docker load)
	// reads it; validate checks every digest, diff ID and size.
	digests := map[string]v1.Hash{}
	for _, r := range []string{"registry.example/duet/one:1", "registry.example/duet/one:latest", "docker.io/duet/two:2"} {
		tag, err := name.NewTag(r)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatalf("docker-archive %s: %v", r, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("docker-archive %s: %v", r, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if r == "docker.io/duet/two:2" {
			if !slices.Equal(cfg.Config.Env, []string{defaultPath}) {
				t.Errorf("%s env %q, want the default PATH", r, cfg.Config.Env)
			}
		} else if !slices.Equal(cfg.Config.Entrypoint, []string{"/big"}) || !slices.Equal(cfg.Config.Env, []string{defaultPath, "A=b"}) {
			t.Errorf("%s config %+v", r, cfg.Config)
		}
		d, _ := img.ConfigName()
		digests[r] = d
	}
	if digests["registry.example/duet/one:1"] != digests["registry.example/duet/one:latest"] {
		t.Error("two tags of one spec name different images")
	}

	// The OCI layout side, as containerd reads it.
	dir := t.TempDir()
	untar(t, out, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkUncompressed(t, img)
	}
	var names []string
	for _, m := range im.Manifests {
		names = append(names, m.Annotations[annotationImageName]+" "+m.Annotations[annotationRefName])
	}
	want := []string{"registry.example/duet/one:1 1", "registry.example/duet/one:latest latest", "docker.io/duet/two:2 2"}
	if !slices.Equal(names, want) {
		t.Errorf("index.json names %q, want %q", names, want)
	}
	// The big file is one layer, stored once: image two is that layer
	// alone, and it is also image one's second.
	blobs, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if len(blobs) != 6 { // 2 layers (one's small, and the shared big one), 2 configs, 2 manifests
		t.Errorf("%d blobs, want 6 (the shared layer once)", len(blobs))
	}
	var mj []dockerManifest
	raw, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(raw, &mj); err != nil {
		t.Fatal(err)
	}
	if len(mj) != 2 || len(mj[0].Layers) != 2 || len(mj[1].Layers) != 1 || mj[0].Layers[1] != mj[1].Layers[0] {
		t.Errorf("manifest.json %+v: want image two's one layer to be image one's second", mj)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	specs := testSpecs(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, p := range []string{a, b} {
		if err := Write(p, specs...); err != nil {
			t.Fatal(err)
		}
	}
	ra, _ := os.ReadFile(a)
	rb, _ := os.ReadFile(b)
	if !bytes.Equal(ra, rb) {
		t.Error("two writes of the same specs differ")
	}
	// Writing over an existing file leaves no temporary beside it.
	if err := Write(a, specs...); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("%d files in the output directory, want a.tar and b.tar only", len(ents))
	}
}

func TestWriteRejects(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	for what, specs := range map[string][]Spec{
		"no specs":      nil,
		"no refs":       {{Files: []File{{Path: "/a", Data: []byte{}}}}},
		"shared ref":    {{Refs: []string{"r.example/a:1"}}, {Refs: []string{"r.example/a:1"}}},
		"missing src":   {{Refs: []string{"r.example/a:1"}, Files: []File{{Path: "/a", Src: "/nonexistent/duet"}}}},
		"short ref":     {{Refs: []string{"a"}}},
		"file over dir": {{Refs: []string{"r.example/a:1"}, Files: []File{{Path: "/a", Data: []byte{}}, {Path: "/a/b", Data: []byte{}}}}},
	} {
		if err := Write(out, specs...); err == nil {
			t.Errorf("%s: Write succeeded", what)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed Write left %s behind", out)
	}
}

func TestHostBinaryTakesLibraries(t *testing.T) {
	const sh = "/usr/bin/dash"
	if _, err := os.Stat(sh); err != nil {
		t.Skip("no dash on this host")
	}
	files, err := HostBinary(sh, "/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for _, f := range files[1:] {
		libc = libc || strings.Contains(f.Path, "libc.so")
		loader = loader || strings.Contains(f.Path, "ld-linux")
		if f.Path != f.Src {
			t.Errorf("library %s copied from %s: want its own path", f.Path, f.Src)
		}
	}
	if files[0].Path != "/bin/sh" || files[0].Src != sh || !libc || !loader {
		t.Errorf("HostBinary(%s) = %+v: want the binary, libc and the loader", sh, files)
	}
}

// checkUncompressed is validate.Image for uncompressed layers, which
// validate reads as gzip: each layer's bytes hash to its digest, which is
// also its diff ID, in the config's order, and the manifest's digest is
// the one the index gives.
func checkUncompressed(t *testing.T, img v1.Image) {
	t.Helper()
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Error(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		t.Fatalf("%d layers, %d diff IDs", len(layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, size, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		sz, _ := l.Size()
		if h != d || h != cfg.RootFS.DiffIDs[i] || size != sz {
			t.Errorf("layer %d: content %s (%d bytes), digest %s (%d), diff ID %s", i, h, size, d, sz, cfg.RootFS.DiffIDs[i])
		}
	}
}

// untar extracts the tarball's regular files into dir.
func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
}
