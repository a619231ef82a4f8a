package image

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
)

// HostBinary returns the Files that make a host binary run inside an
// image: the binary itself at dst, and every shared library `ldd src`
// lists, with the dynamic loader, at the very paths ldd printed, which
// are where the loader looks without an ld.so.cache (the image has none).
// Symlinks are followed, so each library is a plain file at the name the
// binary asks for. A static binary gives just itself.
//
// Libraries a program opens at run time with dlopen (glibc's NSS modules
// before 2.34, OpenSSL engines) do not show in ldd: add those by hand.
func HostBinary(src, dst string) ([]File, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("host binary %s: %w (install it on the build host)", src, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("host binary %s is not a regular file", src)
	}
	files := []File{{Path: dst, Src: src, Mode: fi.Mode().Perm()}}
	out, err := exec.Command("ldd", src).CombinedOutput()
	if err != nil {
		// ldd exits 1 for static binaries; anything else is a real failure.
		if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
			return files, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s (ldd comes with libc-bin)", src, err, strings.TrimSpace(string(out)))
	}
	libs, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", src, err)
	}
	for _, l := range libs {
		files = append(files, File{Path: l, Src: l, Mode: 0o755})
	}
	return files, nil
}

// parseLdd returns the absolute library paths in ldd's output, in order:
//
//	linux-vdso.so.1 (0x00007ffd...)             the kernel's, skipped
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)         the loader
//	libfoo.so.1 => not found                    an error: it cannot run
func parseLdd(out string) ([]string, error) {
	var libs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		var p string
		if soname, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("library %s not found on this host; install its package", strings.TrimSpace(soname))
			}
			p, _, _ = strings.Cut(target, " (")
		} else {
			p, _, _ = strings.Cut(line, " (")
		}
		p = strings.TrimSpace(p)
		if !path.IsAbs(p) { // linux-vdso.so.1 and similar
			continue
		}
		if !seen[p] {
			seen[p] = true
			libs = append(libs, p)
		}
	}
	return libs, sc.Err()
}
