package kube

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/duetnet/duet/internal/policy"
	"github.com/duetnet/duet/internal/policy/netpol"
)

// PolicySink is where Policies puts the rules of this node's pods, the
// whole set each time: *policynft.Syncer in duetd (one nftables
// transaction per call, nothing run when nothing changed), a fake in
// tests. Calls never overlap.
type PolicySink interface {
	Sync(ctx context.Context, pods []policy.PodRules) error
}

// Eventer records an Event on an API object. client-go's
// record.EventRecorder has it, and so has record.FakeRecorder.
type Eventer interface {
	Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any)
}

// PolicyConfig is what Policies needs besides the client.
type PolicyConfig struct {
	// Node is this node's name: its pods (spec.nodeName) are the ones
	// whose rules go to Sink.
	Node string
	Sink PolicySink
	// Events, when set, gets a Warning on a NetworkPolicy that has a
	// part duet cannot render, from the nodes that host a pod of its
	// namespace.
	Events Eventer
	Log    *slog.Logger
	// MinInterval is the least time between two syncs, so that bursts
	// coalesce (default 10 ms); MaxBackoff bounds the wait before a
	// failed sync is retried (default 30 s).
	MinInterval, MaxBackoff time.Duration
}

// Policies is the NetworkPolicy controller: informers on NetworkPolicy,
// Pod and Namespace objects, and one coalescing runner that, after any
// change, compiles the whole cluster's policies (netpol.Compile over
// what the informers hold) and hands this node's pods' rules to the
// sink. It is a source of desired state and nothing more: what the kernel
// holds is the sink's business. Construct it with NewPolicies; Run runs
// it.
type Policies struct {
	factory   informers.SharedInformerFactory
	informers []cache.SharedIndexInformer
	pols      netlisters.NetworkPolicyLister
	pods      corelisters.PodLister
	nss       corelisters.NamespaceLister
	cfg       PolicyConfig
	log       *slog.Logger
	run       *runner

	// The runner's own: what was logged and evented, the last failure.
	logged, evented map[string]bool
	failing         string

	mu   sync.Mutex
	last *compiled // nil before the first compile
}

// compiled is one compile's outcome, for Pod.
type compiled struct {
	res      policy.Result
	problems []netpol.Problem
	local    map[string]bool // this node's pods, by "ns/name"
	at       time.Time
	syncErr  error
}

// NewPolicies takes the client and starts nothing.
//
// There is no resync (0): the runner reads the whole cache whenever
// something changes, and a resync changes nothing. The transform drops
// managedFields, and from Pods what policy does not read
// (slimPolicyInput): every node caches every pod.
func NewPolicies(client kubernetes.Interface, cfg PolicyConfig) (*Policies, error) {
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 10 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slimPolicyInput))
	p := &Policies{
		factory: f,
		pols:    f.Networking().V1().NetworkPolicies().Lister(),
		pods:    f.Core().V1().Pods().Lister(),
		nss:     f.Core().V1().Namespaces().Lister(),
		cfg:     cfg,
		log:     cfg.Log,
		logged:  map[string]bool{},
		evented: map[string]bool{},
	}
	p.run = newRunner(p.sync, cfg.MinInterval, cfg.MaxBackoff, p.syncFailed)
	for _, inf := range []struct {
		kind     string
		informer cache.SharedIndexInformer
	}{
		{"NetworkPolicies", f.Networking().V1().NetworkPolicies().Informer()},
		{"Pods", f.Core().V1().Pods().Informer()},
		{"Namespaces", f.Core().V1().Namespaces().Informer()},
	} {
		if err := inf.informer.SetWatchErrorHandler(p.watchError(inf.kind)); err != nil {
			return nil, err
		}
		if _, err := inf.informer.AddEventHandler(p.policyHandler(inf.kind)); err != nil {
			return nil, err
		}
		p.informers = append(p.informers, inf.informer)
	}
	return p, nil
}

// Run starts the informers, waits for their first lists (nothing is
// synced from a half-listed cluster: a deny-all policy seen before the
// policy that opens a port would cut traffic off), then syncs after
// every change until ctx is done. The table is left as it is on return:
// the pods keep their policy while duetd restarts. Run waits at most
// shutdownWait for the informers to stop (see Nodes.Shutdown).
func (p *Policies) Run(ctx context.Context, shutdownWait time.Duration) {
	p.factory.Start(ctx.Done())
	defer p.shutdown(shutdownWait)
	synced := make([]cache.InformerSynced, len(p.informers))
	for i, inf := range p.informers {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	p.run.Mark()
	p.run.Loop(ctx)
}

func (p *Policies) shutdown(wait time.Duration) {
	done := make(chan struct{})
	go func() { p.factory.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		p.log.Info("not waiting longer for the NetworkPolicy informers to stop", "waited", wait)
	}
}

// list is everything the informers hold, as the compiler takes it.
func (p *Policies) list() ([]*netv1.NetworkPolicy, []*corev1.Pod, []*corev1.Namespace, error) {
	pols, err := p.pols.List(labels.Everything())
	if err != nil {
		return nil, nil, nil, err
	}
	pods, err := p.pods.List(labels.Everything())
	if err != nil {
		return nil, nil, nil, err
	}
	nss, err := p.nss.List(labels.Everything())
	if err != nil {
		return nil, nil, nil, err
	}
	return pols, pods, nss, nil
}

// sync is one pass of the runner: compile this node's pods, sync them,
// report problems.
func (p *Policies) sync(ctx context.Context) error {
	pols, pods, nss, err := p.list()
	if err != nil {
		return err
	}
	local := map[string]bool{}
	localNS := map[string]bool{}
	for _, pod := range pods {
		if pod.Spec.NodeName == p.cfg.Node && !pod.Spec.HostNetwork {
			local[pod.Namespace+"/"+pod.Name] = true
			localNS[pod.Namespace] = true
		}
	}
	// Only this node's pods are compiled (every pod is still a peer): the
	// cost of a sync follows the policies selecting pods here, not the
	// cluster's.
	res, problems := netpol.CompileFor(pols, pods, nss, func(ns, name string) bool { return local[ns+"/"+name] })
	mine := res.Pods
	p.report(problems, localNS)
	err = p.cfg.Sink.Sync(ctx, mine)
	p.mu.Lock()
	first := p.last == nil
	p.last = &compiled{res: res, problems: problems, local: local, at: time.Now(), syncErr: err}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	switch {
	case p.failing != "":
		p.log.Info("NetworkPolicy synced again", "pods-here", len(mine), "policies", len(pols))
	case first:
		p.log.Info("NetworkPolicy synced", "pods-here", len(mine), "policies", len(pols), "pods", len(pods))
	default:
		p.log.Debug("NetworkPolicy synced", "pods-here", len(mine), "policies", len(pols))
	}
	p.failing = ""
	return nil
}

// syncFailed logs a failed sync once per distinct error.
func (p *Policies) syncFailed(err error, retry time.Duration) {
	if err.Error() == p.failing {
		return
	}
	p.failing = err.Error()
	p.log.Warn("cannot enforce NetworkPolicy on this node; retrying", "err", err, "retry-in", retry)
}

// report logs each problem once while it lasts, and records it as an
// Event on its policy, from nodes that host a pod of the policy's
// namespace (the others render nothing of it). A problem that goes away
// and comes back is reported again.
func (p *Policies) report(problems []netpol.Problem, localNS map[string]bool) {
	now := make(map[string]bool, len(problems))
	for _, pr := range problems {
		key := pr.Error()
		now[key] = true
		if !p.logged[key] {
			p.log.Warn("NetworkPolicy rule not rendered: it allows nothing; the rest of the policy and other policies apply",
				"policy", pr.Policy, "field", pr.Field, "problem", pr.Msg)
		}
		ns, name, _ := strings.Cut(pr.Policy, "/")
		if p.cfg.Events == nil || p.evented[key] || !localNS[ns] {
			continue
		}
		pol, err := p.pols.NetworkPolicies(ns).Get(name)
		if err != nil {
			continue
		}
		p.cfg.Events.Eventf(pol, corev1.EventTypeWarning, "RuleNotRendered",
			"duet cannot render %s (%s): that rule allows nothing on node %s; the rest of the policy applies", pr.Field, pr.Msg, p.cfg.Node)
		p.evented[key] = true
	}
	for key := range p.logged {
		if !now[key] {
			p.log.Info("NetworkPolicy problem gone", "problem", key)
		}
	}
	for key := range p.evented {
		if !now[key] {
			delete(p.evented, key)
		}
	}
	p.logged = now
}

func (p *Policies) watchError(kind string) cache.WatchErrorHandler {
	var last string // one reflector calls it, from one goroutine
	return func(_ *cache.Reflector, err error) {
		if err.Error() != last {
			last = err.Error()
			p.log.Warn("cannot list or watch "+kind+" in the Kubernetes API; retrying (RBAC: list, watch)", "err", err)
		}
	}
}
