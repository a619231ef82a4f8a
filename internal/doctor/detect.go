package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Kind is what a document is, recognised from its content.
type Kind string

// The kinds of document the doctor knows.
const (
	KindUnknown      Kind = ""
	KindDockerDaemon Kind = "docker-daemon" // daemon.json, or a dockerd command line
	KindCompose      Kind = "compose"
	KindKubeadm      Kind = "kubeadm"    // ClusterConfiguration, or a kubeadm init command line
	KindKubeProxy    Kind = "kube-proxy" // KubeProxyConfiguration
	KindKubernetes   Kind = "kubernetes" // any other object with apiVersion and kind
	KindCalicoPool   Kind = "calico-ippool"
	KindCNI          Kind = "cni" // a conflist or a single network configuration
	KindFlannel      Kind = "flannel"
)

// Doc is one document of a file: a YAML file may hold many.
type Doc struct {
	Kind Kind
	Root *yaml.Node
}

// File is a parsed input file.
type File struct {
	Name string
	Docs []Doc
	// Findings are parse problems (INPUT001), with the line.
	Findings []Finding
}

// Parse recognises the kind of every document in data and parses it. It
// never fails: malformed input becomes an INPUT001 finding with the line.
func Parse(name string, data []byte) (f *File) {
	f = &File{Name: name}
	defer func() {
		if r := recover(); r != nil && !panicTrace { // a parser bug must not crash the doctor
			f.Docs = nil
			f.Findings = []Finding{internalError(name, r)}
		}
	}()
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return f
	case trimmed[0] == '{' || trimmed[0] == '[':
		root, err := parseJSON(data)
		if err == nil {
			f.Docs = append(f.Docs, Doc{Kind: detect(root), Root: root})
			return f
		}
		if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
			if docs, yerr := parseYAML(data); yerr == nil && len(docs) > 0 && docs[0].Root.Kind == yaml.MappingNode {
				f.Docs = docs // YAML in flow style: {a: b}
				return f
			}
		}
		f.Findings = append(f.Findings, inputError(name, errLine(err), "is not valid JSON: "+err.Error()))
		return f
	}
	docs, err := parseYAML(data)
	mappings, known := false, false
	for _, d := range docs {
		mappings = mappings || d.Root.Kind == yaml.MappingNode
		known = known || d.Kind != KindUnknown
	}
	if !known { // not YAML, or YAML by accident: a script or notes?
		if cmds := parseCommandLines(data); len(cmds) > 0 {
			f.Docs = cmds
			return f
		}
	}
	f.Docs = docs
	if err != nil && (mappings || looksLikeYAML(name, data)) {
		f.Findings = append(f.Findings, inputError(name, errLine(err), "is not valid YAML: "+err.Error()))
	}
	return f
}

var yamlKeyRE = regexp.MustCompile(`^(---|[A-Za-z_][\w.-]*:(\s|$))`)

// looksLikeYAML says whether a file that does not parse was meant to be
// YAML (and not a script or notes): by its name, or a first line that is a
// key or a document start.
func looksLikeYAML(name string, data []byte) bool {
	if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
		return true
	}
	for _, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return yamlKeyRE.MatchString(line)
		}
	}
	return false
}

// parseYAML decodes every document of a YAML stream, up to the first
// error.
func parseYAML(data []byte) ([]Doc, error) {
	var docs []Doc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; i < 10000; i++ {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return docs, err
		}
		if root := deref(&n); root != nil && root.Tag != "!!null" {
			docs = append(docs, Doc{Kind: detect(root), Root: root})
		}
	}
	return docs, nil
}

// detect recognises one document by its keys.
func detect(root *yaml.Node) Kind {
	if root == nil || root.Kind != yaml.MappingNode {
		return KindUnknown
	}
	api, _ := str(get(root, "apiVersion"))
	kind, _ := str(get(root, "kind"))
	switch {
	case kind == "ClusterConfiguration" && strings.HasPrefix(api, "kubeadm.k8s.io/"):
		return KindKubeadm
	case kind == "KubeProxyConfiguration":
		return KindKubeProxy
	case kind == "IPPool" && strings.Contains(api, "projectcalico.org/"):
		return KindCalicoPool
	case api != "" && kind != "":
		return KindKubernetes
	case get(root, "plugins") != nil && (get(root, "cniVersion") != nil || get(root, "name") != nil):
		return KindCNI
	case get(root, "type") != nil && (get(root, "cniVersion") != nil || get(root, "ipam") != nil):
		return KindCNI
	case get(root, "services") != nil && get(root, "services").Kind == yaml.MappingNode:
		return KindCompose
	case get(root, "Network") != nil || get(root, "IPv6Network") != nil || get(root, "EnableIPv6") != nil:
		return KindFlannel
	}
	for _, k := range dockerKeys {
		if get(root, k) != nil {
			return KindDockerDaemon
		}
	}
	return KindUnknown
}

// dockerKeys are daemon.json keys; one is enough to recognise the file.
var dockerKeys = []string{"ipv6", "fixed-cidr-v6", "ip6tables", "default-address-pools", "userland-proxy",
	"fixed-cidr", "bip", "iptables", "ip-forward", "ip-masq", "experimental", "live-restore", "storage-driver",
	"log-driver", "log-opts", "data-root", "registry-mirrors", "insecure-registries", "dns", "exec-opts", "mtu"}

var lineRE = regexp.MustCompile(`line (\d+)`)

func errLine(err error) int {
	if se, ok := err.(*syntaxError); ok {
		return se.line
	}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// internalError turns a panic into a finding: the doctor must never crash
// on its input. The fuzz test fails on any such finding.
func internalError(name string, r any) Finding {
	return newFinding(LayerInput, "INPUT001", name, 0, "", fmt.Sprintf("%s %v", internalPrefix, r),
		"a bug in the doctor, not in the file", "report it with the file attached")
}

// panicTrace lets a test see a panic's stack instead of a finding.
var panicTrace = os.Getenv("DOCTOR_PANIC") != ""

const internalPrefix = "the doctor failed on this file (internal error):"

func inputError(name string, line int, msg string) Finding {
	return newFinding(LayerInput, "INPUT001", name, line, "", "the file "+msg,
		"the doctor cannot check what it cannot parse, and neither can the program that reads this file",
		"fix the syntax at the line given (for YAML, check the indentation and that tabs are not used)")
}
