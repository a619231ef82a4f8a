package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/duetnet/duet/internal/kube"
	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policynft"
)

// registerPolicyFlag is --network-policy, which Kubernetes mode reads.
func registerPolicyFlag(fs *flag.FlagSet, enabled *bool) {
	fs.BoolVar(enabled, "network-policy", false, "enforce NetworkPolicy (networking.k8s.io/v1) on this node's pods, in nftables table inet duet-policy, from the API's NetworkPolicy, Pod and Namespace objects; "+
		"off by default for now, so clusters and CI keep today's behaviour (nothing policed) until the upstream Netpol e2e suite has been run against duet; with --kubernetes")
}

// policyController runs kube.Policies with the host's nftables as its
// sink and the API's Events for its problems.
type policyController struct {
	pol    *kube.Policies
	events record.EventBroadcaster
	cancel context.CancelFunc
	done   chan struct{}
}

// startPolicy starts the NetworkPolicy controller for node; stop ends
// it, leaving the table as it is (the pods keep their policy while
// duetd restarts).
func startPolicy(ctx context.Context, log *slog.Logger, client kubernetes.Interface, node string) (*policyController, error) {
	ctx, cancel := context.WithCancel(ctx)
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	pol, err := kube.NewPolicies(client, kube.PolicyConfig{
		Node:   node,
		Sink:   &nftPolicy{},
		Events: events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "duetd", Host: node}),
		Log:    log.With("controller", "networkpolicy"),
	})
	if err != nil {
		cancel()
		events.Shutdown()
		return nil, err
	}
	c := &policyController{pol: pol, events: events, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		pol.Run(ctx, time.Second)
	}()
	log.Info("NetworkPolicy controller started: this node's pods are policed once the API has listed policies, pods and namespaces", "table", "inet "+policynft.Table)
	return c, nil
}

func (c *policyController) stop() {
	c.cancel()
	<-c.done
	c.events.Shutdown()
}

// syncError is the policy controller's last sync error; nil without
// --network-policy (c nil).
func (c *policyController) syncError() error {
	if c == nil {
		return nil
	}
	return c.pol.SyncError()
}

// routes adds GET /policy to duetd's socket; without --network-policy
// (c nil) it answers why there is nothing to show.
func (c *policyController) routes(mux *http.ServeMux) {
	var src podPolicies
	if c != nil {
		src = c.pol
	}
	mux.Handle("/policy", policyHandler(src))
}

// podPolicies is what /policy reads: *kube.Policies.
type podPolicies interface {
	Pod(ns, name string) (kube.PodPolicy, error)
}

var _ podPolicies = (*kube.Policies)(nil)

// policyHandler answers GET /policy?pod=NS/NAME with what the last
// compile made of the pod: text, or JSON with format=json.
func policyHandler(src podPolicies) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		if src == nil {
			http.Error(w, "this duetd does not enforce NetworkPolicy: run it with --kubernetes --network-policy", http.StatusNotFound)
			return
		}
		ns, name, ok := strings.Cut(r.URL.Query().Get("pod"), "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			http.Error(w, "give ?pod=NAMESPACE/NAME", http.StatusBadRequest)
			return
		}
		pp, err := src.Pod(ns, name)
		if errors.Is(err, kube.ErrNotSynced) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(pp)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, pp.String())
	})
}

// nftPolicy is the controller's sink: table inet duet-policy in the
// host's nftables through knftables, made at the first sync (knftables.New
// runs nft to check it works; a failure there is retried like any other).
type nftPolicy struct {
	syncer *policynft.Syncer
}

var (
	_ kube.PolicySink = (*nftPolicy)(nil)
	_ kube.PolicySink = (*policynft.Syncer)(nil)
)

func (n *nftPolicy) Sync(ctx context.Context, pods []policy.PodRules) error {
	if n.syncer == nil {
		nft, err := nftTable(policynft.Table)
		if err != nil {
			return err
		}
		n.syncer = policynft.NewSyncer(nft)
	}
	return n.syncer.Sync(ctx, pods)
}
