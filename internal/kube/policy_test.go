package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/duetnet/duet/internal/policy"
)

// fakeSink records what each Sync is given; it fails while fail is set.
type fakeSink struct {
	syncs    chan []policy.PodRules
	inFlight atomic.Int32
	overlap  atomic.Bool
	mu       sync.Mutex
	fail     error
}

var _ PolicySink = (*fakeSink)(nil)

func newFakeSink() *fakeSink { return &fakeSink{syncs: make(chan []policy.PodRules, 1000)} }

func (s *fakeSink) Sync(_ context.Context, pods []policy.PodRules) error {
	if s.inFlight.Add(1) > 1 {
		s.overlap.Store(true)
	}
	defer s.inFlight.Add(-1)
	s.mu.Lock()
	err := s.fail
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.syncs <- slices.Clone(pods)
	return nil
}

func (s *fakeSink) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// waitSync waits (bounded, not timed) for a sync whose pods satisfy ok,
// and returns them by key.
func waitSync(t *testing.T, s *fakeSink, what string, ok func(map[string]policy.PodRules) bool) map[string]policy.PodRules {
	t.Helper()
	var last map[string]policy.PodRules
	deadline := time.After(10 * time.Second)
	for {
		select {
		case pods := <-s.syncs:
			last = map[string]policy.PodRules{}
			for _, p := range pods {
				last[p.Key()] = p
			}
			if ok(last) {
				return last
			}
		case <-deadline:
			t.Fatalf("no sync with %s; the last had %v", what, keys(last))
		}
	}
}

func keys(m map[string]policy.PodRules) []string {
	var out []string
	for k, v := range m {
		s := k
		if v.Ingress != nil {
			s += " in:" + strings.Join(v.Ingress.Policies, ",")
		}
		if v.Egress != nil {
			s += " out:" + strings.Join(v.Egress.Policies, ",")
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// isolatedBy says whether pod's ingress is isolated by exactly pols.
func isolatedBy(pods map[string]policy.PodRules, pod string, pols ...string) bool {
	p, ok := pods[pod]
	if !ok {
		return false
	}
	if p.Ingress == nil {
		return len(pols) == 0
	}
	return slices.Equal(p.Ingress.Policies, pols)
}

// allowsFrom says whether pod's ingress lets peer in on TCP port (a pod
// no policy isolates lets everything in).
func allowsFrom(pods map[string]policy.PodRules, pod, peer string, port uint16) bool {
	p := pods[pod]
	ok, _ := p.Ingress.Allows(netip.MustParseAddr(peer), policy.TCP, port)
	return ok
}

func kpod(ns, name, node string, lbl map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}, Spec: corev1.PodSpec{NodeName: node}}
	p.Status.Phase = corev1.PodRunning
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}
	return p
}

func kns(name string, lbl map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl}}
}

// allowFrom selects app=web and lets peers with role=role in on TCP port.
func allowFrom(ns, name, role string, port int32) *netv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(port)
	return &netv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: netv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Ingress: []netv1.NetworkPolicyIngressRule{{
			From:  []netv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": role}}}},
			Ports: []netv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
		}},
	}}
}

// badBlock selects app=web and allows a CIDR that does not parse; the API
// server would refuse it, the fake clientset does not.
func badBlock(ns, name string) *netv1.NetworkPolicy {
	return &netv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: netv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Ingress:     []netv1.NetworkPolicyIngressRule{{From: []netv1.NetworkPolicyPeer{{IPBlock: &netv1.IPBlock{CIDR: "2001:db8::/129"}}}}},
	}}
}

// logBuffer is a log sink safe for the runner's goroutine and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	client *fake.Clientset
	sink   *fakeSink
	events *record.FakeRecorder
	logs   *logBuffer
	pol    *Policies
	ctx    context.Context
}

func startPolicies(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := newHarness(objs...)
	h.start(t)
	return h
}

func newHarness(objs ...runtime.Object) *harness {
	return &harness{client: fake.NewClientset(objs...), sink: newFakeSink(), events: record.NewFakeRecorder(100), logs: &logBuffer{}}
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	h.pol, err = NewPolicies(h.client, PolicyConfig{Node: "node1", Sink: h.sink, Events: h.events, Log: log, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan struct{})
	go func() { h.pol.Run(ctx, 5*time.Second); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if h.sink.overlap.Load() {
			t.Error("two syncs in flight at once")
		}
	})
}

// TestPolicies: through client-go's fake clientset, the sink gets this
// node's pods (not another node's, not host-network ones) with the rules
// of the policies that select them, again after each change; a policy
// duet cannot render is logged once, recorded as an Event, and the
// others still apply.
func TestPolicies(t *testing.T) {
	web := kpod("prod", "web", "node1", map[string]string{"app": "web"}, "fd00:10:1::10", "10.1.0.10")
	web.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	client := kpod("prod", "client", "node1", map[string]string{"role": "client"}, "fd00:10:1::20", "10.1.0.20")
	remote := kpod("prod", "remote", "node2", map[string]string{"app": "web"}, "fd00:10:2::10", "10.2.0.10")
	host := kpod("prod", "host", "node1", map[string]string{"app": "web"}, "fd00:ff::1")
	host.Spec.HostNetwork = true
	far := kpod("far", "web", "node2", map[string]string{"app": "web"}, "fd00:10:2::30")
	h := startPolicies(t, kns("prod", nil), kns("far", nil), web, client, remote, host, far, allowFrom("prod", "allow-client", "client", 80))
	ctx := h.ctx

	got := waitSync(t, h.sink, "prod/web isolated by prod/allow-client", func(m map[string]policy.PodRules) bool {
		return isolatedBy(m, "prod/web", "prod/allow-client")
	})
	if _, ok := got["prod/client"]; !ok || len(got) != 2 {
		t.Errorf("synced %v, want this node's prod/client and prod/web only", keys(got))
	}
	if !allowsFrom(got, "prod/web", "fd00:10:1::20", 80) || !allowsFrom(got, "prod/web", "10.1.0.20", 80) || allowsFrom(got, "prod/web", "fd00:10:1::20", 81) {
		t.Errorf("prod/web: %v", got["prod/web"].Ingress)
	}
	objs, _ := h.pol.pods.List(labels.Everything())
	for _, o := range objs {
		if len(o.ManagedFields) != 0 {
			t.Errorf("the cache keeps managedFields of %s", o.Name)
		}
	}

	// A bad policy: reported, and the good one still applies.
	if _, err := h.client.NetworkingV1().NetworkPolicies("prod").Create(ctx, badBlock("prod", "broken"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = waitSync(t, h.sink, "prod/web isolated by both policies", func(m map[string]policy.PodRules) bool {
		return isolatedBy(m, "prod/web", "prod/allow-client", "prod/broken")
	})
	if !allowsFrom(got, "prod/web", "fd00:10:1::20", 80) {
		t.Errorf("prod/allow-client no longer applies: %v", got["prod/web"].Ingress)
	}
	select {
	case e := <-h.events.Events:
		for _, w := range []string{"Warning", "RuleNotRendered", "spec.ingress[0].from[0].ipBlock.cidr", "node1"} {
			if !strings.Contains(e, w) {
				t.Errorf("event %q lacks %q", e, w)
			}
		}
	default:
		t.Error("no Event for prod/broken")
	}
	// The same problem in a namespace with no pod here: logged, no Event.
	if _, err := h.client.NetworkingV1().NetworkPolicies("far").Create(ctx, badBlock("far", "broken"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, h.logs, "policy=far/broken")
	// And prod/broken changing (still broken) logs nothing new.
	b := badBlock("prod", "broken")
	b.Labels = map[string]string{"touched": "yes"}
	b.Spec.Ingress = append(b.Spec.Ingress, netv1.NetworkPolicyIngressRule{From: []netv1.NetworkPolicyPeer{{IPBlock: &netv1.IPBlock{CIDR: "2001:db8:1::/48"}}}})
	if _, err := h.client.NetworkingV1().NetworkPolicies("prod").Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync(t, h.sink, "prod/broken's second rule", func(m map[string]policy.PodRules) bool {
		ok, _ := m["prod/web"].Ingress.Allows(netip.MustParseAddr("2001:db8:1::1"), policy.TCP, 1)
		return isolatedBy(m, "prod/web", "prod/allow-client", "prod/broken") && ok
	})
	if n := strings.Count(h.logs.String(), "policy=prod/broken"); n != 1 {
		t.Errorf("prod/broken's problem logged %d times, want once:\n%s", n, h.logs)
	}
	if e := len(h.events.Events); e != 0 {
		t.Errorf("%d more events, want none (far has no pod on node1; prod/broken's is known)", e)
	}

	// What duetctl policy show prints, from the last compile.
	pp, err := h.pol.Pod("prod", "web")
	if err != nil {
		t.Fatal(err)
	}
	text := pp.String()
	for _, w := range []string{"pod prod/web: fd00:10:1::10, 10.1.0.10\n", "ingress: isolated by prod/allow-client, prod/broken\n",
		"prod/allow-client ingress[0]: from pods role=client", "enforced here, on node node1", "problem: networkpolicy prod/broken: spec.ingress[0].from[0].ipBlock.cidr"} {
		if !strings.Contains(text, w) {
			t.Errorf("Pod(prod/web) lacks %q:\n%s", w, text)
		}
	}
	if pp, _ := h.pol.Pod("prod", "remote"); pp.Here || pp.Node != "node2" || !strings.Contains(pp.String(), "runs on node node2") {
		t.Errorf("Pod(prod/remote): %+v", pp)
	}
	if pp, _ := h.pol.Pod("prod", "host"); pp.Here || pp.Rules != nil || !strings.Contains(pp.Explain, "on the host's network") {
		t.Errorf("Pod(prod/host): %+v", pp)
	}

	// A peer's labels change: it is no longer let in.
	c2 := client.DeepCopy()
	c2.Labels = map[string]string{"role": "other"}
	if _, err := h.client.CoreV1().Pods("prod").Update(ctx, c2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync(t, h.sink, "prod/client no longer a peer", func(m map[string]policy.PodRules) bool {
		return isolatedBy(m, "prod/web", "prod/allow-client", "prod/broken") && !allowsFrom(m, "prod/web", "fd00:10:1::20", 80)
	})

	// Deletes.
	if err := h.client.NetworkingV1().NetworkPolicies("prod").Delete(ctx, "allow-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync(t, h.sink, "prod/allow-client gone", func(m map[string]policy.PodRules) bool { return isolatedBy(m, "prod/web", "prod/broken") })
	if err := h.client.NetworkingV1().NetworkPolicies("prod").Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync(t, h.sink, "prod/web no longer isolated", func(m map[string]policy.PodRules) bool { return isolatedBy(m, "prod/web") })
	waitLog(t, h.logs, "NetworkPolicy problem gone")
	if err := h.client.CoreV1().Pods("prod").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync(t, h.sink, "prod/web gone", func(m map[string]policy.PodRules) bool { _, ok := m["prod/web"]; return !ok })
}

// TestPoliciesTombstone: a pod deleted while the watch was down (the
// informer learns of it from the relist, as a tombstone) leaves the
// synced state.
func TestPoliciesTombstone(t *testing.T) {
	web := kpod("prod", "web", "node1", map[string]string{"app": "web"}, "fd00:10:1::10")
	db := kpod("prod", "db", "node1", map[string]string{"app": "web"}, "fd00:10:1::11")
	h := newHarness(kns("prod", nil), web, db, allowFrom("prod", "allow-client", "client", 80))
	watchers := make(chan *watch.RaceFreeFakeWatcher, 10)
	h.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewRaceFreeFake()
		watchers <- w
		return true, w, nil
	})
	h.start(t)
	waitSync(t, h.sink, "both pods", func(m map[string]policy.PodRules) bool {
		return isolatedBy(m, "prod/web", "prod/allow-client") && isolatedBy(m, "prod/db", "prod/allow-client")
	})
	var w *watch.RaceFreeFakeWatcher
	select {
	case w = <-watchers:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer never watched pods")
	}
	// The API server forgets prod/web; the watch does not say so, and then
	// expires, so the informer lists again.
	if err := h.client.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), "prod", "web"); err != nil {
		t.Fatal(err)
	}
	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	waitSync(t, h.sink, "prod/web gone", func(m map[string]policy.PodRules) bool {
		_, ok := m["prod/web"]
		return !ok && isolatedBy(m, "prod/db", "prod/allow-client")
	})
	waitLog(t, h.logs, "deleted while the watch was down")
	if !strings.Contains(h.logs.String(), "key=prod/web") {
		t.Errorf("the tombstone's key is not logged:\n%s", h.logs)
	}
}

// TestPoliciesRetry: a sync the kernel refuses is retried without any
// change, and logged once however often it fails.
func TestPoliciesRetry(t *testing.T) {
	web := kpod("prod", "web", "node1", map[string]string{"app": "web"}, "fd00:10:1::10")
	h := startPolicies(t, kns("prod", nil), web, allowFrom("prod", "allow-client", "client", 80))
	waitSync(t, h.sink, "the first sync", func(m map[string]policy.PodRules) bool { return isolatedBy(m, "prod/web", "prod/allow-client") })
	h.sink.setFail(errors.New("table inet duet-policy: nft: Operation not permitted"))
	if err := h.client.NetworkingV1().NetworkPolicies("prod").Delete(h.ctx, "allow-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, h.logs, "cannot enforce NetworkPolicy on this node; retrying")
	if pp, err := h.pol.Pod("prod", "web"); err != nil || !strings.Contains(pp.String(), "the last sync failed") {
		t.Errorf("Pod(prod/web) during failures: %v %v", pp, err)
	}
	if err := h.pol.SyncError(); err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Errorf("SyncError during failures: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // a few retries (MaxBackoff 200 ms)
	h.sink.setFail(nil)
	waitSync(t, h.sink, "the retry", func(m map[string]policy.PodRules) bool { return isolatedBy(m, "prod/web") })
	waitLog(t, h.logs, "NetworkPolicy synced again")
	if err := h.pol.SyncError(); err != nil {
		t.Errorf("SyncError after the retry succeeded: %v", err)
	}
	if n := strings.Count(h.logs.String(), "cannot enforce NetworkPolicy"); n != 1 {
		t.Errorf("the failure logged %d times, want once", n)
	}
}

// TestPodSlim: the cache keeps what policy reads, and the kubelet's
// status rewrites compare equal.
func TestPodSlim(t *testing.T) {
	p := kpod("prod", "web", "node1", map[string]string{"app": "web"}, "fd00:10:1::10", "10.1.0.10")
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "v"}}
	s0, _ := slimPolicyInput(p.DeepCopy())
	s := s0.(*corev1.Pod)
	if s.ManagedFields != nil || s.Annotations != nil || s.Spec.Volumes != nil || s.Spec.Containers[0].Env != nil {
		t.Errorf("slim keeps too much: %+v", s)
	}
	if s.Name != "web" || s.Spec.NodeName != "node1" || s.Labels["app"] != "web" || len(s.Status.PodIPs) != 2 || s.Spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("slim loses what policy reads: %+v", s)
	}
	hb := p.DeepCopy()
	hb.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	hb.ResourceVersion = "2"
	s1, _ := slimPolicyInput(hb)
	if podChanged(s, s1.(*corev1.Pod)) {
		t.Error("a condition rewrite counts as a change")
	}
	moved := p.DeepCopy()
	moved.Status.PodIPs = moved.Status.PodIPs[:1]
	relabelled := p.DeepCopy()
	relabelled.Labels = map[string]string{"app": "db"}
	for _, c := range []*corev1.Pod{moved, relabelled} {
		s2, _ := slimPolicyInput(c)
		if !podChanged(s, s2.(*corev1.Pod)) {
			t.Errorf("no change seen: %+v", s2)
		}
	}
}

func waitLog(t *testing.T, logs *logBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(logs.String(), want) {
			return
		}
	}
	t.Fatalf("the log never said %q:\n%s", want, logs)
}
