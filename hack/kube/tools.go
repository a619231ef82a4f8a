//go:build tools

// Package kube pins the upstream Kubernetes commands, test binaries and
// CoreDNS that duet's kube lab builds (see build.sh). It is its own module so
// duet's go.mod stays free of k8s.io/kubernetes.
package kube

import (
	_ "github.com/coredns/coredns"
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/e2e"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
