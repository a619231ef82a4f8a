package kube

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile puts data at dir/name by write-then-rename, and only when the
// content differs: the kubelet's runtime watches the directory and
// reloads on every change, and must never read a half-written file. The
// temporary file sits in dir (a rename is atomic only within one file
// system) under a name the runtime ignores (it loads *.conf, *.conflist
// and *.json). It reports whether it wrote.
func WriteFile(dir, name string, data []byte) (bool, error) {
	path := filepath.Join(dir, name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("--cni-conf-dir %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp")
	if err != nil {
		return false, fmt.Errorf("--cni-conf-dir %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	// The rename itself survives a crash only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}
