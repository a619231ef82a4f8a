// Package deploy holds the manifest users apply to install duet in a
// Kubernetes cluster (`kubectl apply -f deploy/duet.yaml`), and Lab, which
// rewrites it for duet's kube lab, where several nodes share one host's
// file system.
//
// The manifest is decoded strictly into k8s.io/api types, so a misspelt
// field fails the tests here rather than being dropped by the API server.
package deploy

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Manifest is deploy/duet.yaml: every object duet needs in a cluster,
// as multi-document YAML for kubectl apply.
//
//go:embed duet.yaml
var Manifest []byte

// Names of the objects in Manifest that other code refers to.
const (
	Namespace     = "kube-system"
	DaemonSetName = "duet"
	ConfigMapName = "duet-config"
	// AgentContainer is the DaemonSet's duetd container.
	AgentContainer = "duetd"
)

// decode splits a multi-document manifest and decodes each document
// strictly (unknown or duplicate fields are errors) into its k8s.io/api
// type, chosen by apiVersion and kind. Empty documents are skipped.
func decode(manifest []byte) ([]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []any
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if tm == (metav1.TypeMeta{}) {
			if len(stripComments(doc)) == 0 {
				continue
			}
			return nil, fmt.Errorf("document %d: no apiVersion and kind", i)
		}
		obj, err := newObject(tm)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
}

// newObject returns a pointer to the type of the kinds duet's manifest
// may hold.
func newObject(tm metav1.TypeMeta) (any, error) {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q kind %q: not a kind duet's manifest uses", tm.APIVersion, tm.Kind)
}

// stripComments drops lines that are only a YAML comment, so a document
// of comments alone counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// encode renders objects as multi-document YAML for kubectl apply. The
// typed objects' zero status and null creationTimestamps are left out:
// they would only clutter the last-applied annotation.
func encode(objs []any) ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range objs {
		j, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, err
		}
		delete(m, "status")
		y, err := yaml.Marshal(dropNulls(m))
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// dropNulls removes null values from decoded JSON. Empty maps stay: some
// mean something (emptyDir: {}).
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(e)
		}
	case []any:
		for i, e := range v {
			v[i] = dropNulls(e)
		}
	}
	return v
}
