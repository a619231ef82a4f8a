package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestInstallCNI(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	// The image's plugins are 0644 here on purpose: the copies must be 0755
	// whatever the source's mode or the umask.
	writeFiles(t, from, map[string]string{"duet": "duet v2", "duet-ipam": "ipam v2", "portmap": "portmap", "loopback": "loopback"}, 0o644)
	if err := os.Mkdir(filepath.Join(from, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Already on the host: an old duet, an identical loopback, another
	// vendor's plugin (left alone), and a temporary file of a killed run.
	writeFiles(t, to, map[string]string{"duet": "duet v1", "loopback": "loopback", "bridge": "bridge"}, 0o755)
	writeFiles(t, to, map[string]string{tmpPrefix + "duet-123": "half"}, 0o600)
	loopbackIno := inode(t, filepath.Join(to, "loopback"))

	// A kubelet that started the old duet still reads the whole old file:
	// the new one is a new inode, not the old one overwritten.
	running, err := os.Open(filepath.Join(to, "duet"))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()

	var out bytes.Buffer
	if err := installCNI(from, to, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"duet": "duet v2", "duet-ipam": "ipam v2", "portmap": "portmap", "loopback": "loopback", "bridge": "bridge"}
	entries, _ := os.ReadDir(to)
	if len(entries) != len(want) {
		t.Errorf("%s holds %d entries, want %d (temporary files left?): %v", to, len(entries), len(want), entries)
	}
	for name, body := range want {
		p := filepath.Join(to, name)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != body {
			t.Errorf("%s = %q, %v; want %q", p, got, err, body)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, %v; want 0755", p, fi.Mode(), err)
		}
	}
	old := make([]byte, 16)
	n, _ := running.ReadAt(old, 0)
	if string(old[:n]) != "duet v1" {
		t.Errorf("the running plugin's file now reads %q: it was overwritten in place, not replaced", old[:n])
	}
	if inode(t, filepath.Join(to, "loopback")) != loopbackIno {
		t.Error("an identical loopback was rewritten")
	}
	for _, line := range []string{"installed " + filepath.Join(to, "duet"), "unchanged " + filepath.Join(to, "loopback")} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}

	// Twice: nothing changes.
	before := map[string]uint64{}
	for name := range want {
		before[name] = inode(t, filepath.Join(to, name))
	}
	out.Reset()
	if err := installCNI(from, to, &out); err != nil {
		t.Fatal(err)
	}
	for name, ino := range before {
		if inode(t, filepath.Join(to, name)) != ino {
			t.Errorf("second run rewrote %s", name)
		}
	}
	if strings.Contains(out.String(), "installed") {
		t.Errorf("second run installed something:\n%s", out.String())
	}
}

func TestInstallCNIModeOnly(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	writeFiles(t, from, map[string]string{"duet": "same"}, 0o755)
	writeFiles(t, to, map[string]string{"duet": "same"}, 0o644) // not executable: the runtime could not run it
	if err := installCNI(from, to, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(to, "duet")); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
}

func TestInstallCNIErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	file := filepath.Join(dir, "file")
	withDir := filepath.Join(dir, "withdir")
	for _, d := range []string{empty, full, withDir, filepath.Join(withDir, "duet")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, full, map[string]string{"duet": "x"}, 0o755)
	writeFiles(t, dir, map[string]string{"file": "x"}, 0o644)
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		name, from, to string
		want           []string // in the message: the path and the fix
	}{
		{"no source", missing, full, []string{"--from " + missing, "no such file", "duet's image"}},
		{"empty source", empty, full, []string{"--from " + empty, "no files to install"}},
		{"no destination", full, missing, []string{"--to " + missing, "no such file", "hostPath volume of /opt/cni/bin"}},
		{"destination a file", full, file, []string{"--to " + file, "not a directory"}},
		{"directory in the way", full, withDir, []string{filepath.Join(withDir, "duet") + ": is a directory", "remove it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := installCNI(c.from, c.to, &bytes.Buffer{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
