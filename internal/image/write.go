package image

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on index.json's entries. containerd names an imported image
// after the first (its own, the full reference); the OCI one is the tag
// alone, as the image-spec suggests and `docker save` writes it.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// Write builds every Spec and writes them as one tarball at path, for
// `ctr -n k8s.io images import` and `docker load -i`. Blobs shared by
// several images are stored once. The file appears complete or not at all:
// it is written beside path and renamed over it, so a reader (a node's
// containerd) never imports half a file.
func Write(path string, specs ...Spec) error {
	if len(specs) == 0 {
		return fmt.Errorf("image.Write %s: no images given", path)
	}
	var imgs []built
	owner := map[string]int{}
	for i, s := range specs {
		b, err := build(s)
		if err != nil {
			return err
		}
		for _, r := range b.refs {
			if j, ok := owner[r.full]; ok {
				return fmt.Errorf("image %s is named by two specs (%d and %d); give each ref to one", r.full, j, i)
			}
			owner[r.full] = i
		}
		imgs = append(imgs, b)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := writeArchive(bw, imgs); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ref is one name of an image, parsed once.
type ref struct {
	full string // registry/repository:tag, with docker.io's library/
	tag  string
}

// parseRef insists on a registry and a tag: a name like "pause" would be
// completed differently by Docker (docker.io/library/pause:latest) than a
// lab expecting registry.k8s.io/pause:3.10.2, and the kubelet looks images
// up by their full name.
func parseRef(s string) (ref, error) {
	t, err := name.NewTag(s, name.StrictValidation)
	if err != nil {
		return ref{}, fmt.Errorf("image ref %q: %w (write it in full, like registry.k8s.io/pause:3.10.2)", s, err)
	}
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io" // what containerd and the kubelet call it
	}
	return ref{full: reg + "/" + t.RepositoryStr() + ":" + t.TagStr(), tag: t.TagStr()}, nil
}

// built is a Spec made into an image.
type built struct {
	img  v1.Image
	refs []ref
}

// build turns a Spec into an OCI image with go-containerregistry: its
// layers are rendered once here for their digests, and again when written.
func build(s Spec) (built, error) {
	if len(s.Refs) == 0 {
		return built{}, fmt.Errorf("image spec with %d files has no Refs; name it", len(s.Files))
	}
	var b built
	for _, r := range s.Refs {
		p, err := parseRef(r)
		if err != nil {
			return built{}, err
		}
		b.refs = append(b.refs, p)
	}
	groups, err := entries(s.Files)
	if err != nil {
		return built{}, fmt.Errorf("image %s: %w", b.refs[0].full, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH, // the host's binaries go in
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.env(), WorkingDir: s.WorkDir,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return built{}, err
	}
	var adds []mutate.Addendum
	for _, g := range groups {
		l, err := newLayer(g)
		if err != nil {
			return built{}, fmt.Errorf("image %s: %w", b.refs[0].full, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCIUncompressedLayer,
			History: v1.History{
				Created:   v1.Time{Time: epoch},
				CreatedBy: fmt.Sprintf("duet image: %s", describe(g)),
			},
		})
	}
	if b.img, err = mutate.Append(img, adds...); err != nil {
		return built{}, err
	}
	return b, nil
}

// describe names a layer for `docker history`: its file when it holds one
// (big files get their own), else how many entries it has.
func describe(es []entry) string {
	var files []string
	for _, e := range es {
		if e.typ != tar.TypeDir {
			files = append(files, "/"+e.name)
		}
	}
	if len(files) == 1 {
		return files[0]
	}
	return fmt.Sprintf("%d files", len(files))
}

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeArchive writes the docker-archive and OCI layout in one tar.
func writeArchive(w io.Writer, imgs []built) error {
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	written := map[v1.Hash]bool{}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	var manifests []dockerManifest
	for _, b := range imgs {
		dm := dockerManifest{}
		layers, err := b.img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			dm.Layers = append(dm.Layers, blobPath(d))
			if written[d] {
				continue
			}
			written[d] = true
			if err := putLayer(tw, l, d); err != nil {
				return err
			}
		}
		cfgName, err := b.img.ConfigName()
		if err != nil {
			return err
		}
		cfg, err := b.img.RawConfigFile()
		if err != nil {
			return err
		}
		dm.Config = blobPath(cfgName)
		raw, err := b.img.RawManifest()
		if err != nil {
			return err
		}
		digest, err := b.img.Digest()
		if err != nil {
			return err
		}
		for _, blob := range []struct {
			h    v1.Hash
			data []byte
		}{{cfgName, cfg}, {digest, raw}} {
			if !written[blob.h] {
				written[blob.h] = true
				if err := put(blobPath(blob.h), blob.data); err != nil {
					return err
				}
			}
		}
		for _, r := range b.refs {
			dm.RepoTags = append(dm.RepoTags, r.full)
			index.Manifests = append(index.Manifests, v1.Descriptor{
				MediaType: types.OCIManifestSchema1, Digest: digest, Size: int64(len(raw)),
				Platform:    &v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
				Annotations: map[string]string{annotationImageName: r.full, annotationRefName: r.tag},
			})
		}
		manifests = append(manifests, dm)
	}
	idx, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := put("index.json", idx); err != nil {
		return err
	}
	mj, err := json.Marshal(manifests)
	if err != nil {
		return err
	}
	if err := put("manifest.json", mj); err != nil {
		return err
	}
	return tw.Close()
}

// putLayer copies a layer into the tar under its digest, checking the
// bytes against it: a layer renders from host files, which a concurrent
// build could replace.
func putLayer(tw *tar.Writer, l v1.Layer, d v1.Hash) error {
	size, err := l.Size()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(d), Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: epoch}); err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.Copy(tw, rc)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("layer %s: wrote %d bytes of %d; a source changed meanwhile, build again", d, n, size)
	}
	return nil
}
