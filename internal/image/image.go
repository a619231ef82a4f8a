// Package image builds container images without Docker, registry or
// daemon: a Spec lists files (copied from the host, inline, or symlinks)
// plus the image config, and Write puts any number of them in one tarball
// that both `docker load -i` and `ctr -n k8s.io images import` accept.
//
// The tarball is a docker-archive (manifest.json) whose blobs sit where an
// OCI image layout puts them (blobs/sha256/<hex>, beside index.json and
// oci-layout), so one file serves both loaders, as `docker save` does
// since Docker 25. containerd prefers the OCI index, Docker the manifest.
//
// Images are reproducible: layers have fixed mtimes, owners and order, are
// stored uncompressed (gzip output may change between Go releases; an
// uncompressed layer's digest depends on its files only), and the config's
// dates are fixed, so building again from the same files gives the same
// digests and a node that already holds a layer skips it.
//
// Building a whole image in Go, rather than with a Dockerfile, is what
// lets the lab run without a registry or Docker: see Duet and Lab for the
// images duet itself needs.
package image

import (
	"fmt"
	"os"
	"path"
	"strings"
	"time"
)

// File is one entry of an image's filesystem. Exactly one of Src, Data or
// Link says what it is, or none of them with Mode&os.ModeDir for an empty
// directory; parent directories are made as needed (0755, root).
type File struct {
	// Path is absolute inside the image, e.g. /usr/local/bin/duetd.
	Path string
	// Mode is the permission (and setuid, setgid, sticky) bits; zero means
	// the source file's own for Src, 0644 for Data and 0755 for a
	// directory. os.ModeDir makes a directory.
	Mode os.FileMode
	// Src is a host file whose content is copied (symlinks followed).
	Src string
	// Data is the content inline.
	Data []byte
	// Link makes Path a symlink to this target.
	Link string
}

// Spec is one image: its files, config and the names it is imported under.
type Spec struct {
	// Refs are fully qualified names with a tag, such as
	// registry.k8s.io/pause:3.10.2; every one names the same image.
	Refs []string
	// Files make the image's filesystem; a later File for the same path
	// replaces an earlier one, so a Spec can overlay tools on a base.
	Files []File
	// Entrypoint, Cmd, Env and WorkDir are the image config's. Env gets a
	// standard PATH when it sets none, because containerd's CRI, unlike
	// Docker, adds none for an image without one.
	Entrypoint, Cmd, Env []string
	WorkDir              string
}

// epoch is every layer entry's mtime and the config's creation date:
// 1980-01-01, the earliest date zip can hold, as ko and Bazel's rules_oci
// use, since some tools read a zero time as "unset".
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// defaultPath is the PATH Docker gives a container whose image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// clean checks a File and returns its path relative to the root, as tar
// entries name it.
func (f File) clean() (string, error) {
	if !path.IsAbs(f.Path) {
		return "", fmt.Errorf("image file %q: the path must be absolute (start it with /)", f.Path)
	}
	p := strings.TrimPrefix(path.Clean(f.Path), "/")
	if p == "" {
		return "", fmt.Errorf("image file %q: the root itself cannot be a file", f.Path)
	}
	kinds := 0
	for _, set := range []bool{f.Src != "", f.Data != nil, f.Link != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return "", fmt.Errorf("image file %s: set only one of Src, Data and Link", f.Path)
	case kinds == 0 && f.Mode&os.ModeDir == 0:
		return "", fmt.Errorf("image file %s: set Src, Data or Link, or os.ModeDir in Mode for a directory", f.Path)
	case kinds == 1 && f.Mode&os.ModeDir != 0:
		return "", fmt.Errorf("image file %s: a directory takes no Src, Data or Link", f.Path)
	}
	return p, nil
}

// env returns the Spec's environment with a PATH.
func (s Spec) env() []string {
	for _, e := range s.Env {
		if strings.HasPrefix(e, "PATH=") {
			return s.Env
		}
	}
	return append([]string{defaultPath}, s.Env...)
}
