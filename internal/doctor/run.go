package doctor

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// maxFileSize bounds what the doctor reads: configurations are small.
const maxFileSize = 8 << 20

// CheckPaths reads every file and directory (recursively) and checks each
// document it recognises. Files named directly that are not recognised get
// an INPUT002 hint; in a directory they are skipped silently, as are
// binary, oversized and template files. The error is for unreadable input
// only (a missing path, no permission): malformed content is a finding.
func CheckPaths(paths []string) ([]Finding, error) {
	var files []*File
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			found, err := walkDir(p)
			if err != nil {
				return nil, err
			}
			files = append(files, found...)
			continue
		}
		data, err := readFile(p)
		if err != nil {
			return nil, err
		}
		f := Parse(p, data)
		if len(f.Findings) == 0 && recognised(f) == 0 {
			f.Findings = append(f.Findings, newFinding(LayerInput, "INPUT002", p, 0, "",
				"the doctor does not recognise this file",
				"it knows daemon.json, Compose files, Kubernetes manifests, kubeadm and kube-proxy configurations, CNI conflists, Calico IPPools, Flannel net-conf.json, and dockerd or kubeadm init command lines",
				"check that it is one of those; a Kubernetes object needs apiVersion and kind"))
		}
		files = append(files, f)
	}
	return CheckFiles(files), nil
}

// walkDir parses the files under dir that are configurations, or meant to
// be (a .yaml that does not parse is reported).
func walkDir(dir string) ([]*File, error) {
	var files []*File
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if info, err := d.Info(); err != nil || !info.Mode().IsRegular() || info.Size() > maxFileSize {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0 {
			return nil // binary
		}
		f := Parse(path, data)
		if len(f.Findings) > 0 && (!structured(path, data) || bytes.Contains(data, []byte("{{"))) {
			f.Findings = nil // not a configuration file at all, or a template (Helm)
		}
		if len(f.Findings) > 0 || recognised(f) > 0 {
			files = append(files, f)
		}
		return nil
	})
	return files, err
}

func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for a configuration file", path, st.Size())
	}
	return os.ReadFile(path)
}

// structured says whether a file's name (or, for .conf, its content)
// promises JSON or YAML, so a parse error in a directory walk is worth
// reporting.
func structured(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json", ".yaml", ".yml", ".conflist":
		return true
	case ".conf":
		return bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
	}
	return false
}

func recognised(f *File) int {
	n := 0
	for _, d := range f.Docs {
		if d.Kind != KindUnknown {
			n++
		}
	}
	return n
}

// CheckData checks one file's content; the name is used in findings.
func CheckData(name string, data []byte) []Finding { return CheckFiles([]*File{Parse(name, data)}) }

// CheckFiles checks parsed files together: a cluster configuration in one
// (kubeadm) informs the checks of Services in another.
func CheckFiles(files []*File) []Finding {
	cl := clusterOf(files)
	out := []Finding{}
	for _, f := range files {
		out = append(out, f.Findings...)
		r := &reporter{file: f.Name}
		func() {
			defer func() {
				if p := recover(); p != nil && !panicTrace {
					r.out = append(r.out, internalError(f.Name, p))
				}
			}()
			for _, d := range f.Docs {
				checkDoc(r, d, cl)
			}
		}()
		out = append(out, r.finish()...)
	}
	Sort(out)
	return out
}

func checkDoc(r *reporter, d Doc, cl *cluster) {
	switch d.Kind {
	case KindDockerDaemon:
		r.layer = LayerDocker
		checkDocker(r, d.Root)
	case KindCompose:
		r.layer = LayerCompose
		checkCompose(r, d.Root)
	case KindKubeadm:
		r.layer = LayerKubeadm
		checkKubeadm(r, d.Root)
	case KindKubeProxy:
		r.layer = LayerKubeadm
		checkKubeProxy(r, d.Root, cl)
	case KindKubernetes:
		r.layer = LayerKubernetes
		checkKube(r, d.Root, cl)
	case KindCalicoPool:
		r.layer = LayerCNI
		checkCalicoPool(r, d.Root)
	case KindCNI:
		r.layer = LayerCNI
		checkCNI(r, d.Root)
	case KindFlannel:
		r.layer = LayerCNI
		checkFlannel(r, d.Root)
	}
}

// reporter collects one file's findings.
type reporter struct {
	file  string
	layer Layer
	out   []Finding
	// Hand-picked ULA prefixes, reported once per file (ULA001).
	ulas     []string
	ulaLine  int
	ulaLayer Layer
}

func (r *reporter) add(code string, line int, object, what, why, fix string) {
	r.out = append(r.out, newFinding(r.layer, code, r.file, line, object, what, why, fix))
}

// prefix notes a prefix the file uses, for the ULA001 hint.
func (r *reporter) prefix(p netip.Prefix, line int) {
	if !nonRandomULA(p) || contains(r.ulas, p.String()) {
		return
	}
	if len(r.ulas) == 0 {
		r.ulaLine, r.ulaLayer = line, r.layer
	}
	r.ulas = append(r.ulas, p.String())
}

func (r *reporter) finish() []Finding {
	if len(r.ulas) > 0 {
		what := fmt.Sprintf("ULA prefix %s was picked by hand, not at random", r.ulas[0])
		if len(r.ulas) > 1 {
			what = fmt.Sprintf("ULA prefixes %s were picked by hand, not at random", strings.Join(r.ulas, ", "))
		}
		r.out = append(r.out, newFinding(r.ulaLayer, "ULA001", r.file, r.ulaLine, "",
			what,
			"RFC 4193 asks for a random 40-bit Global ID so that networks joined later (VPNs, mergers, peered clusters) do not collide; fd00::/16 and fc00::/8 examples are copied everywhere",
			"generate one: printf 'fd%02x:%02x%02x:%02x%02x::/48\\n' $(od -An -N5 -tu1 /dev/urandom), and carve your subnets from it"))
	}
	return r.out
}
