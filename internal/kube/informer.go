package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Nodes follows the cluster's Node objects through a shared informer and
// signals every change that can move a route. Construct it with
// NewNodes; Start starts it.
type Nodes struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   listers.NodeLister
	changed  chan struct{}
	api      *API
	log      *slog.Logger

	mu      sync.Mutex
	lastErr error // the last list or watch failure, while not synced
}

// NewNodes takes the client and starts nothing. api names the API server
// in messages, and tells why it does not answer.
//
// There is no resync (0): a resync replays the cache to the handlers, and
// the agent polls on its own interval anyway. The transform drops what
// duetd never reads, before the cache keeps it: managedFields, and the
// node's list of images (often the biggest part of a Node); duetd never
// writes a Node back, so nothing is lost.
func NewNodes(client kubernetes.Interface, api *API, log *slog.Logger) (*Nodes, error) {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	n := &Nodes{
		factory: f,
		lister:  f.Core().V1().Nodes().Lister(),
		changed: make(chan struct{}, 1),
		api:     api,
		log:     log,
	}
	n.informer = f.Core().V1().Nodes().Informer()
	// Replaces client-go's default handler (which logs through klog): the
	// reason is kept for the agent's status and /healthz until the cache
	// is synced, and logged once per distinct message.
	if err := n.informer.SetWatchErrorHandler(n.watchError); err != nil {
		return nil, err
	}
	_, err := n.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { n.signal() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			c, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || Relevant(o, c) {
				n.signal()
			}
		},
		DeleteFunc: func(obj any) {
			// A delete missed while the watch was down arrives as a
			// tombstone holding the last known object.
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if node, ok := obj.(*corev1.Node); ok {
				n.log.Info("node deleted from the Kubernetes API; its routes go", "node", node.Name)
			}
			n.signal()
		},
	})
	return n, err
}

// slim is the informer's transform (see NewNodes). It may be handed a
// tombstone, which it passes through.
func slim(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	if node, ok := obj.(*corev1.Node); ok {
		node.Status.Images = nil
	}
	return obj, nil
}

// Relevant says whether a Node update can change what duetd programs: its
// InternalIP addresses or its pod ranges. The kubelet rewrites its Node's
// status (conditions, heartbeat times) often, and each rewrite need not
// wake every node's agent.
func Relevant(old, cur *corev1.Node) bool {
	op, _ := PodCIDRs(old)
	cp, _ := PodCIDRs(cur)
	return !slices.Equal(Addrs(old), Addrs(cur)) || !slices.Equal(op, cp)
}

// signal coalesces: one pending signal stands for any number of changes,
// since a sync reads the whole cache.
func (n *Nodes) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

func (n *Nodes) watchError(_ *cache.Reflector, err error) {
	n.mu.Lock()
	same := n.lastErr != nil && n.lastErr.Error() == err.Error()
	n.lastErr = err
	n.mu.Unlock()
	if !same {
		n.log.Warn("cannot list or watch Nodes in the Kubernetes API; retrying", "server", n.api.Host, "err", err)
	}
}

// Changed signals (buffer one, coalescing) after a relevant Node change.
func (n *Nodes) Changed() <-chan struct{} { return n.changed }

// Start runs the informer until ctx is done; it returns at once.
func (n *Nodes) Start(ctx context.Context) { n.factory.Start(ctx.Done()) }

// WaitForSync waits up to d for the first list, so that the agent's first
// sync, right after start, does not fail for want of an answer that was
// milliseconds away. It reports whether the cache is synced.
func (n *Nodes) WaitForSync(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return cache.WaitForCacheSync(ctx.Done(), n.informer.HasSynced)
}

// Shutdown waits for the informer's goroutines after Start's ctx is done,
// at most wait: while the API server refuses connections, client-go's
// watch-list backs off (up to half a minute) without looking at the
// context, and a duetd told to stop must not outlive the DaemonSet's
// grace period for it. What is left is stopped by the process exiting.
func (n *Nodes) Shutdown(wait time.Duration) {
	done := make(chan struct{})
	go func() { n.factory.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		n.log.Info("not waiting longer for the Kubernetes informer to stop", "waited", wait)
	}
}

// Nodes returns the cached Node objects, shared with the cache (read
// them, never change them), or why there are none yet.
func (n *Nodes) Nodes() ([]*corev1.Node, error) {
	if !n.informer.HasSynced() {
		n.mu.Lock()
		err := n.lastErr
		n.mu.Unlock()
		if e := n.api.LastError(); e != nil {
			err = e // the transport's is the more recent
		}
		reason := "no answer yet"
		if err != nil {
			reason = err.Error()
		}
		return nil, fmt.Errorf("waiting for the Kubernetes API at %s to list Nodes (%s): duetd keeps retrying; check that the API server is up and reachable from this node, and --kubeconfig or the pod's service account (RBAC: get, list, watch nodes)", n.api.Host, reason)
	}
	return n.lister.List(labels.Everything())
}
