// Package doctor checks every layer of an IPv6 (dual-stack) container
// setup and says, for each problem, what is wrong, why it matters and how
// to fix it: the live host (sysctls, routes, NDP proxy, masquerade, MTU),
// Docker's daemon.json, Compose files, Kubernetes manifests, kubeadm and
// kube-proxy configurations, CNI conflists, Calico IP pools and duet's own
// configuration.
//
// Every check is a pure function over parsed documents (yaml.Node trees,
// for JSON too, so every finding has a line) or over HostFacts; only
// gather.go touches the system, by reading /proc/sys and running ip, nft
// and iptables-save. Codes are stable: a code never changes its meaning or
// its severity.
package doctor

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Severity says how bad a finding is. Only errors make the doctor fail.
type Severity int

// Severities, least severe first.
const (
	Hint Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "hint"
}

// MarshalJSON writes the severity as its name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity name.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	for _, v := range []Severity{Hint, Warning, Error} {
		if v.String() == name {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown severity %q", name)
}

// Layer is the part of the stack a finding is about.
type Layer string

// Layers, in the order the table shows them: from the host up.
const (
	LayerInput      Layer = "input"
	LayerHost       Layer = "host"
	LayerDocker     Layer = "docker"
	LayerCompose    Layer = "compose"
	LayerKubeadm    Layer = "kubeadm"
	LayerKubernetes Layer = "kubernetes"
	LayerCNI        Layer = "cni"
)

var layerOrder = []Layer{LayerInput, LayerHost, LayerDocker, LayerCompose, LayerKubeadm, LayerKubernetes, LayerCNI}

func layerRank(l Layer) int {
	for i, o := range layerOrder {
		if o == l {
			return i
		}
	}
	return len(layerOrder)
}

// Finding is one problem: where it is, what is wrong, why it matters and
// how to fix it.
type Finding struct {
	Layer    Layer    `json:"layer"`
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	// Object names the thing at fault: "network frontend", "Service
	// default/web", "interface eth0".
	Object string `json:"object,omitempty"`
	What   string `json:"what"`
	Why    string `json:"why"`
	Fix    string `json:"fix"`
}

// Location is "file:line", "file", or "" for the live host.
func (f Finding) Location() string {
	switch {
	case f.File != "" && f.Line > 0:
		return fmt.Sprintf("%s:%d", f.File, f.Line)
	case f.File != "":
		return f.File
	}
	return ""
}

// newFinding fills in the severity from the check's code; layer and place
// come from the caller.
func newFinding(layer Layer, code, file string, line int, object, what, why, fix string) Finding {
	return Finding{Layer: layer, Severity: severityOf(code), Code: code, File: file, Line: line, Object: object, What: what, Why: why, Fix: fix}
}

// Sort orders findings by layer (host first), file, line and code, so the
// output is stable.
func Sort(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if ra, rb := layerRank(a.Layer), layerRank(b.Layer); ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Code < b.Code
	})
}

// HasErrors says whether any finding is an error: the doctor's exit status.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}
