package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// bigFile is the size from which a file gets a layer of its own. A binary
// shared by two images (CoreDNS is both its own image and /coredns in
// agnhost's) is then one blob in the tarball, and a rebuild that changes
// only duetd changes only duetd's layer, so a node imports just that.
const bigFile = 4 << 20

// entry is one tar entry of a layer; name is relative, without a slash.
type entry struct {
	name string
	typ  byte
	mode int64
	size int64
	src  string
	data []byte
	link string
}

// entries resolves a Spec's files into tar entries grouped into layers: a
// first layer of everything small, then one per big file, each carrying
// the parent directories it needs. Directories are identical wherever
// they appear (a Spec's own directory entries set their modes), so layer
// order never changes a directory's attributes.
func entries(files []File) ([][]entry, error) {
	byPath := map[string]entry{}
	for _, f := range files {
		name, err := f.clean()
		if err != nil {
			return nil, err
		}
		e := entry{name: name}
		switch {
		case f.Link != "":
			e.typ, e.link, e.mode = tar.TypeSymlink, f.Link, 0o777
		case f.Mode&os.ModeDir != 0:
			e.typ, e.mode = tar.TypeDir, tarMode(f.Mode, 0o755)
		case f.Data != nil:
			e.typ, e.data, e.size, e.mode = tar.TypeReg, f.Data, int64(len(f.Data)), tarMode(f.Mode, 0o644)
		default:
			fi, err := os.Stat(f.Src)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w (build or install it first)", f.Path, err)
			}
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("image file %s: source %s is not a regular file; for a directory use os.ModeDir, for a symlink Link", f.Path, f.Src)
			}
			mode := f.Mode
			if mode == 0 {
				mode = fi.Mode()
			}
			e.typ, e.src, e.size, e.mode = tar.TypeReg, f.Src, fi.Size(), tarMode(mode, 0o644)
		}
		byPath[name] = e
	}
	// Every parent must be a directory: a file under a symlink would land
	// wherever the link points when unpacked, which differs by runtime.
	dirs := map[string]entry{}
	for name, e := range byPath {
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if d, ok := byPath[p]; ok {
				if d.typ != tar.TypeDir {
					return nil, fmt.Errorf("image file /%s: its parent /%s is not a directory; put the file at the link's target instead", name, p)
				}
				continue
			}
			dirs[p] = entry{name: p, typ: tar.TypeDir, mode: 0o755}
		}
		if e.typ == tar.TypeDir {
			dirs[name] = e
		}
	}
	var small []entry
	var big [][]entry
	for _, e := range byPath {
		if e.typ == tar.TypeReg && e.size >= bigFile {
			big = append(big, withParents([]entry{e}, dirs))
		} else if e.typ != tar.TypeDir {
			small = append(small, e)
		}
	}
	sort.Slice(big, func(i, j int) bool { return last(big[i]).name < last(big[j]).name })
	// The first layer holds every directory, so even an empty one (a Spec
	// with only /tmp) exists.
	for _, d := range dirs {
		small = append(small, d)
	}
	sortEntries(small)
	if len(small) == 0 && len(big) > 0 {
		// A Spec of big files only, like CoreDNS's: its layers are then
		// the very blobs another image holding the same file has.
		return big, nil
	}
	return append([][]entry{small}, big...), nil
}

func last(es []entry) entry { return es[len(es)-1] }

// withParents returns es with the directories above them, sorted.
func withParents(es []entry, dirs map[string]entry) []entry {
	seen := map[string]bool{}
	out := append([]entry(nil), es...)
	for _, e := range es {
		for p := path.Dir(e.name); p != "." && !seen[p]; p = path.Dir(p) {
			seen[p] = true
			out = append(out, dirs[p])
		}
	}
	sortEntries(out)
	return out
}

// sortEntries orders by name, which puts every directory before its
// contents (a parent's name is a prefix of its children's).
func sortEntries(es []entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
}

// tarMode turns permission and special bits into tar's mode field.
func tarMode(m os.FileMode, def os.FileMode) int64 {
	if m.Perm() == 0 && m&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 {
		m |= def
	}
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// layer is an uncompressed tar layer rendered from entries on demand: it
// is never held in memory, and each read renders it again from the
// sources, checked against the digest taken when it was made.
type layer struct {
	entries []entry
	digest  v1.Hash
	size    int64
}

var _ v1.Layer = (*layer)(nil)

func newLayer(es []entry) (*layer, error) {
	l := &layer{entries: es}
	h := sha256.New()
	n, err := l.render(h)
	if err != nil {
		return nil, err
	}
	l.size = n
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return l, nil
}

// render writes the layer's tar to w and returns its length.
func (l *layer) render(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, e := range l.entries {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: e.size,
			Linkname: e.link, ModTime: epoch,
		}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, fmt.Errorf("image file /%s: %w", e.name, err)
		}
		if err := e.copyTo(tw); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// copyTo writes a regular entry's content, failing when a source file's
// size changed since the layer was made (the digest would lie).
func (e entry) copyTo(w io.Writer) error {
	switch {
	case e.typ != tar.TypeReg:
		return nil
	case e.src == "":
		_, err := w.Write(e.data)
		return err
	}
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("image file /%s: %w", e.name, err)
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, e.size); err != nil {
		return fmt.Errorf("image file /%s: copying %s: %w (did it change while the image was built? build again)", e.name, e.src, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return fmt.Errorf("image file /%s: %s grew while the image was built; build again", e.name, e.src)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (l *layer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *layer) Size() (int64, error)                 { return l.size, nil }
func (l *layer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
func (l *layer) Compressed() (io.ReadCloser, error)   { return l.Uncompressed() }
func (l *layer) Uncompressed() (io.ReadCloser, error) { return l.open(), nil }

// open streams the layer through a pipe, ending in an error if what was
// rendered no longer matches the digest (a source changed meanwhile).
func (l *layer) open() io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		h := sha256.New()
		_, err := l.render(io.MultiWriter(pw, h))
		if err == nil && hex.EncodeToString(h.Sum(nil)) != l.digest.Hex {
			err = errChanged(l, h)
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func errChanged(l *layer, h hash.Hash) error {
	var names []string
	for _, e := range l.entries {
		if e.src != "" {
			names = append(names, e.src)
		}
	}
	return errors.New("layer " + l.digest.String() + " rendered as sha256:" + hex.EncodeToString(h.Sum(nil)) +
		": one of its sources changed while the image was written (" + strings.Join(names, ", ") + "); build again")
}
