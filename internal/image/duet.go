package image

import (
	"fmt"
	"os"
	"path/filepath"
)

// DuetRef is the name deploy/duet.yaml gives duet's image.
const DuetRef = "docker.io/duetnet/duet:dev"

// duetCNIDir is where the DaemonSet's install-cni init container copies
// the plugins from (duetctl install-cni --from).
const duetCNIDir = "/opt/duet/cni"

// Duet returns the spec of duet's own image from the binaries make build
// leaves in binDir: duetd (the entrypoint) and duetctl in /usr/local/bin,
// the CNI plugins the node needs in /opt/duet/cni (duet and duet-ipam, and
// upstream's portmap for hostPort and loopback for the pod's lo), and the
// host's nft with its libraries, which duetd runs through knftables.
func Duet(binDir, ref string) (Spec, error) {
	var files []File
	bins := []struct{ name, dst string }{
		{"duetd", "/usr/local/bin/duetd"},
		{"duetctl", "/usr/local/bin/duetctl"},
		{"duet", duetCNIDir + "/duet"},
		{"duet-ipam", duetCNIDir + "/duet-ipam"},
		{"portmap", duetCNIDir + "/portmap"},
		{"loopback", duetCNIDir + "/loopback"},
	}
	for _, b := range bins {
		src, err := duetBinary(binDir, b.name)
		if err != nil {
			return Spec{}, err
		}
		files = append(files, File{Path: b.dst, Src: src, Mode: 0o755})
	}
	nft, err := HostBinary("/usr/sbin/nft", "/usr/sbin/nft")
	if err != nil {
		return Spec{}, fmt.Errorf("%w (apt-get install nftables)", err)
	}
	files = append(files, nft...)
	files = append(files, File{Path: "/tmp", Mode: os.ModeDir | os.ModeSticky | 0o777})
	return Spec{
		Refs:       []string{ref},
		Files:      files,
		Entrypoint: []string{"/usr/local/bin/duetd"},
	}, nil
}

// duetBinary finds one of duet's binaries in binDir, or says how to make it.
func duetBinary(binDir, name string) (string, error) {
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: run `make build` (it builds duet's commands, duet-pause, portmap and loopback into bin/), or pass the directory that holds them", p)
	}
	return p, nil
}
