package docker

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// BusyboxImage is the image the lab, the tests and the benchmark run:
// made on this machine, since there is no registry to pull from.
const BusyboxImage = "duet-busybox:latest"

// BusyboxPath is Debian's busybox-static.
const BusyboxPath = "/bin/busybox"

// EnsureImage makes image from a static busybox (docker import of a
// one-binary root filesystem with every applet linked), unless Docker
// has it already.
func EnsureImage(image string) error {
	if exec.Command("docker", "image", "inspect", image).Run() == nil {
		return nil
	}
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w (install Debian's busybox-static)", BusyboxPath, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			return fmt.Errorf("%s is dynamically linked and cannot run alone in an image: install Debian's busybox-static", BusyboxPath)
		}
	}
	f.Close()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return err
	}
	list, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "tmp/", "proc/", "sys/", "dev/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
			return err
		}
	}
	passwd := "root:x:0:0:root:/:/bin/sh\n"
	if err := tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, passwd); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	cmd := exec.Command("docker", "import", "--change", "ENV PATH=/bin", "-", image)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.New("docker import: " + strings.TrimSpace(string(out)))
	}
	return nil
}
