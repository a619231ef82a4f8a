package kube

import (
	"fmt"
	"net/http"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// API is the API server duetd talks to, and the last failure talking to
// it: client-go's reflector retries a refused connection inside its own
// loop without telling its error handler, so the transport is where the
// reason a list never arrives can be seen.
type API struct {
	// Host is the server's URL, for messages.
	Host string

	mu   sync.Mutex
	last error
}

// LastError is the last request's failure, or nil if it succeeded.
func (a *API) LastError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *API) record(err error) {
	a.mu.Lock()
	a.last = err
	a.mu.Unlock()
}

type recorder struct {
	api  *API
	next http.RoundTripper
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	switch {
	case err != nil:
		r.api.record(err)
	case resp.StatusCode >= 400:
		r.api.record(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
	default:
		r.api.record(nil)
	}
	return resp, err
}

// Client returns a clientset for the API server, from the kubeconfig file
// at path, or, when path is empty, from the pod's service account (how
// duetd runs from its DaemonSet). It makes no request: an API server that
// is down is the informer's to retry, not a reason to exit.
func Client(path string) (kubernetes.Interface, *API, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, nil, fmt.Errorf("--kubeconfig is not set and duetd is not running in a pod (%v): pass --kubeconfig PATH, or run duetd from its DaemonSet (deploy/duet.yaml)", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	api := &API{Host: cfg.Host}
	cfg.UserAgent = "duetd"
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return recorder{api: api, next: rt} })
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	return c, api, nil
}
