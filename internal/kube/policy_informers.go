package kube

import (
	"maps"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The policy informers' cache holds every pod of the cluster on every
// node (a peer's address can sit anywhere), so it keeps only what
// netpol.Compile reads.

// slimPolicyInput is the policy informers' transform: managedFields go
// from every object, and a Pod is cut down to what policy reads (its
// labels, node, host networking, phase, addresses and container ports):
// the kubelet's frequent status rewrites then compare equal and wake
// nothing (podChanged). duetd never writes these objects back. Anything
// else, a tombstone included, passes through.
func slimPolicyInput(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: p.Labels},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, c := range p.Spec.Containers {
		s.Spec.Containers = append(s.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
	}
	return s, nil
}

// podChanged says whether a Pod update can change any pod's rules. Pods
// are slim (slimPolicyInput), so this is everything but the version.
func podChanged(old, cur *corev1.Pod) bool {
	return !maps.Equal(old.Labels, cur.Labels) || !reflect.DeepEqual(old.Spec, cur.Spec) || !reflect.DeepEqual(old.Status, cur.Status)
}

// policyHandler marks the runner dirty on every change that can move a
// rule, and logs deletes missed while a watch was down (tombstones).
func (p *Policies) policyHandler(kind string) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.run.Mark() },
		UpdateFunc: func(old, cur any) {
			switch o := old.(type) {
			case *corev1.Pod:
				if c, ok := cur.(*corev1.Pod); ok && !podChanged(o, c) {
					return
				}
			case *corev1.Namespace:
				// Only labels matter: namespaceSelectors read them.
				if c, ok := cur.(*corev1.Namespace); ok && maps.Equal(o.Labels, c.Labels) {
					return
				}
			case *netv1.NetworkPolicy:
				// Only the spec matters (a relist replays every object).
				if c, ok := cur.(*netv1.NetworkPolicy); ok && reflect.DeepEqual(o.Spec, c.Spec) {
					return
				}
			}
			p.run.Mark()
		},
		DeleteFunc: func(obj any) {
			// The object is already gone from the lister, which is all
			// the runner reads; a tombstone (the delete was missed while
			// the watch was down, and found by the relist) only says so
			// later.
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				p.log.Debug("deleted while the watch was down", "kind", kind, "key", t.Key)
			}
			p.run.Mark()
		},
	}
}
