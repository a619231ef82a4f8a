package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client returns a clientset for the API server, from the kubeconfig file
// at path, or, when path is empty, from the pod's service account (how
// duetd runs from its DaemonSet). It makes no request: an API server that
// is down is the informer's to retry, not a reason to exit.
func Client(path string) (kubernetes.Interface, string, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, "", fmt.Errorf("--kubeconfig is not set and duetd is not running in a pod (%v): pass --kubeconfig PATH, or run duetd from its DaemonSet (deploy/duet.yaml)", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, "", fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	cfg.UserAgent = "duetd"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	return c, cfg.Host, nil
}
